//! A secretary books and sees the day but never sees clinical data: no
//! journal note, assessment, visit, safety confirmation, export or access
//! log, no completion and no call; a consultation always has a clinician.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn secretary_books_but_sees_no_clinical_data(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio Nord", "123456", "admin@k.dk").await;
    let me = admin.get_ok("/api/me").await;
    let admin_id = me["therapist_id"].as_str().unwrap().to_owned();
    let created = admin
        .post_ok(
            "/api/therapists",
            json!({"name": "Sara Sekretær", "email": "sara@k.dk",
                   "password": "sekretaer-lang-kode", "role": "secretary"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(created["role"], "secretary");
    let secretary_id = created["id"].as_str().unwrap().to_owned();
    let p = eligible_patient(&app, &admin, "Ane").await;
    let sara = Client::new(&app.base);
    sara.login("sara@k.dk", "sekretaer-lang-kode").await;
    assert_eq!(sara.get_ok("/api/me").await["role"], "secretary");

    // Booking: a clinician must run it.
    let start = app.now() + Duration::minutes(30);
    let body = |therapist: Option<&str>| {
        json!({"patient_id": p.patient_id, "course_id": p.course_id, "start": start,
               "length_minutes": 30, "therapist_id": therapist})
    };
    let (status, problem) = sara.post("/api/consultations", body(None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["code"], "therapist_required");
    let (status, problem) = sara
        .post("/api/consultations", body(Some(&secretary_id)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["code"], "not_a_clinician");
    let booked = sara
        .post_ok(
            "/api/consultations",
            body(Some(&admin_id)),
            StatusCode::CREATED,
        )
        .await;
    let id = booked["consultation"]["id"].as_str().unwrap().to_owned();
    // The day, the link again, the patient's list of consultations.
    let day = sara.get_ok("/api/consultations").await;
    assert_eq!(day[0]["id"], id.as_str());
    sara.get_ok(&format!("/api/consultations/{id}/link")).await;
    sara.get_ok(&format!("/api/patients/{}/consultations", p.patient_id))
        .await;

    // No clinical data, no call.
    let forbidden = [
        (Method::GET, format!("/api/consultations/{id}/journal")),
        (Method::POST, format!("/api/consultations/{id}/complete")),
        (Method::POST, format!("/api/consultations/{id}/safety")),
        (
            Method::GET,
            format!("/api/courses/{}/assessments", p.course_id),
        ),
        (
            Method::POST,
            format!("/api/courses/{}/assessments", p.course_id),
        ),
        (
            Method::POST,
            format!("/api/assessments/{}/revoke", p.assessment_id),
        ),
        (
            Method::POST,
            format!("/api/patients/{}/visits", p.patient_id),
        ),
        (
            Method::GET,
            format!("/api/patients/{}/export", p.patient_id),
        ),
        (
            Method::GET,
            format!("/api/patients/{}/access-log", p.patient_id),
        ),
    ];
    for (method, path) in forbidden {
        let body = (method == Method::POST).then(|| json!({}));
        let (status, problem) = sara.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
        assert_eq!(problem["errors"][0]["code"], "clinicians_only", "{path}");
        assert!(problem["errors"][0]["da"]
            .as_str()
            .unwrap()
            .contains("sekretær"));
    }
    // Nor can a secretary open the call.
    let login = reqwest::Client::new()
        .post(format!("{}/api/login", app.base))
        .json(&json!({"email": "sara@k.dk", "password": "sekretaer-lang-kode"}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut ws = common::signal::connect(&app, Some(&cookie)).await;
    common::signal::join_refused(
        &mut ws,
        common::signal::therapist_hello(id.parse().unwrap()),
        "forbidden",
    )
    .await;
    app.stop().await;
}
on_both_databases!(
    secretary_books_and_sees_the_day_only,
    super::secretary_books_but_sees_no_clinical_data
);
