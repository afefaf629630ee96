//! Issue 11, "Danish everywhere": every refusal tells the user what
//! happened in Danish and English (`errors[].da` and `.en`, one item for a
//! problem with one message), while `type`, `status` and the English
//! `detail` stay what API integrators already read.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The one item of a problem with one message, checked to be bilingual
/// with the English as its `detail`.
fn only_item(problem: &Value) -> &Value {
    let items = problem["errors"].as_array().expect("errors");
    assert_eq!(items.len(), 1, "{problem}");
    let item = &items[0];
    let da = item["da"].as_str().unwrap();
    let en = item["en"].as_str().unwrap();
    assert!(!da.is_empty() && !en.is_empty() && da != en, "{problem}");
    assert_eq!(problem["detail"], item["en"], "{problem}");
    item
}

async fn refusals_are_told_in_danish(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio", "123456", "admin@fysio.dk").await;
    let p = eligible_patient(&app, &admin, "Bo Dansk").await;

    // Scheduling in the past.
    let (status, problem) = admin
        .post(
            "/api/consultations",
            json!({"patient_id": p.patient_id, "course_id": p.course_id,
                   "start": app.now() - Duration::days(2), "length_minutes": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["type"], "urn:konsult:problem:bad_request");
    assert_eq!(
        problem["detail"],
        "a consultation cannot be scheduled in the past"
    );
    let item = only_item(&problem);
    assert_eq!(item["code"], "scheduled_in_past");
    assert_eq!(
        item["da"],
        "En konsultation kan ikke planlægges i fortiden."
    );

    // A phone number that is not one.
    let (status, problem) = admin
        .post("/api/patients", json!({"name": "Ida", "phone": "12"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let item = only_item(&problem);
    assert_eq!(item["code"], "invalid_phone");
    assert_eq!(
        item["da"],
        "Telefonnummeret skal have mindst 8 cifre (mellemrum og + foran er tilladt)."
    );

    // A field the API does not know, named as sent in both languages.
    let (status, problem) = admin
        .post("/api/patients", json!({"name": "Ida", "is_admin": true}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let item = only_item(&problem);
    assert_eq!(item["code"], "unknown_field");
    assert_eq!(item["da"], "Feltet \"is_admin\" kendes ikke her.");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("unknown field `is_admin`"));

    // A conflict the store reports in English: a taken e-mail address.
    let account = json!({"name": "Anna", "email": "anna@fysio.dk",
                         "password": "a long enough password", "role": "therapist"});
    admin
        .post_ok("/api/therapists", account.clone(), StatusCode::CREATED)
        .await;
    let (status, problem) = admin.post("/api/therapists", account).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:konsult:problem:conflict");
    let item = only_item(&problem);
    assert_eq!(item["code"], "email_taken");
    assert_eq!(
        item["da"],
        "Der findes allerede en bruger med denne e-mailadresse i klinikken."
    );
    assert!(problem["detail"].as_str().unwrap().contains("e-mail"));

    // A refusal the store names by code keeps its type and gets Danish.
    let start = app.now() + Duration::hours(2);
    let body = json!({"patient_id": p.patient_id, "course_id": p.course_id,
                      "start": start, "length_minutes": 30});
    admin
        .post_ok("/api/consultations", body.clone(), StatusCode::CREATED)
        .await;
    let (status, problem) = admin.post("/api/consultations", body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:konsult:problem:overlapping_consultation"
    );
    let item = only_item(&problem);
    assert_eq!(item["code"], "overlapping_consultation");
    assert!(item["da"]
        .as_str()
        .unwrap()
        .starts_with("Patienten har allerede en videokonsultation"));

    // Not found, not logged in, not allowed.
    let (status, problem) = admin
        .get(&format!("/api/patients/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(only_item(&problem)["da"], "Patienten findes ikke.");
    let anonymous = Client::new(&app.base);
    let (status, problem) = anonymous.get("/api/patients").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(only_item(&problem)["code"], "unauthorized");
    let (status, problem) = admin
        .http
        .post(format!("{}/api/patients", app.base))
        .json(&json!({"name": "Uden token"}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let problem: Value = problem.json().await.unwrap();
    assert_eq!(only_item(&problem)["code"], "csrf");

    // A fee table's problems, one item each, in Danish without English.
    let (status, problem) = admin
        .call(Method::PUT, "/api/clinic", Some(json!({"phone": "12"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(only_item(&problem)["code"], "invalid_phone");
    let res = admin
        .http
        .put(format!("{}/api/clinic/fee-table", app.base))
        .header("x-csrf-token", admin.csrf_token())
        .header("content-type", "application/toml")
        .body(
            "[[rows]]\nkind = \"individual_video\"\nservice_number = \"0131\"\nspeciale = 51\n\
             valid_from = 2024-01-01\nfee_ore = -5\n\
             [[rows]]\nkind = \"individual_video\"\nservice_number = \"0131\"\nspeciale = 51\n\
             valid_from = 2024-06-01\nfee_ore = 30000\n",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = res.json().await.unwrap();
    let items = problem["errors"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{problem}");
    assert!(
        items[0]["da"]
            .as_str()
            .unwrap()
            .contains("række 1 (0131 individuel videokonsultation, sp. 51, 01.01.2024–)"),
        "{problem}"
    );
    assert!(
        items[0]["da"]
            .as_str()
            .unwrap()
            .contains("honoraret skal være over 0 kr"),
        "{problem}"
    );
    assert!(
        items[1]["da"]
            .as_str()
            .unwrap()
            .contains("gælder begge på samme dag"),
        "{problem}"
    );
    for item in items {
        for english in ["row", "fee must", "overlap"] {
            assert!(
                !item["da"].as_str().unwrap().contains(english),
                "English in the Danish: {problem}"
            );
        }
    }
    app.stop().await;
}

on_both_databases!(
    refusals_are_told_in_danish_and_english,
    super::refusals_are_told_in_danish
);
