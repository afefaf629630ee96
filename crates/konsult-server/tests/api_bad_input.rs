//! Bad input gets a clear problem-details error and changes nothing.

use crate::common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn patients(client: &Client) -> Value {
    client.get_ok("/api/patients").await
}

async fn bad_input(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio", "123456", "admin@fysio.dk").await;
    let p = eligible_patient(&app, &admin, "Bo Bad").await;
    let before = patients(&admin).await;
    let raw = |body: &'static str, content_type: &'static str| {
        let req = admin
            .http
            .post(format!("{}/api/patients", app.base))
            .header("x-csrf-token", admin.csrf_token())
            .header("content-type", content_type)
            .body(body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            let body: Value = res.json().await.unwrap();
            (status, ct, body)
        }
    };
    // Malformed JSON, wrong types, unknown fields, wrong content type.
    for (body, ct) in [
        ("{\"name\": ", "application/json"),
        ("{\"name\": 42}", "application/json"),
        ("{\"name\": \"X\", \"is_admin\": true}", "application/json"),
        ("name=X", "application/x-www-form-urlencoded"),
        ("[]", "application/json"),
    ] {
        let (status, content_type, problem) = raw(body, ct).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{body}: {status}"
        );
        assert_eq!(content_type, "application/problem+json");
        assert!(problem["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:konsult:problem:"));
        assert!(problem["detail"].is_string(), "{problem}");
    }
    // Invalid values.
    for body in [
        json!({"name": ""}),
        json!({"name": "X", "cpr": "321299-1234"}),
        json!({"name": "X", "phone": "12"}),
        json!({"name": "X", "email": "nope"}),
    ] {
        let (status, problem) = admin.post("/api/patients", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
    }
    // Oversized body.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(300 * 1024));
    let res = admin
        .http
        .post(format!("{}/api/patients", app.base))
        .header("x-csrf-token", admin.csrf_token())
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert!(
        res.status() == StatusCode::BAD_REQUEST || res.status() == StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        res.status()
    );
    // Ids that are not ids, or unknown.
    assert_eq!(
        admin.get("/api/patients/not-a-uuid").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin
            .get(&format!("/api/patients/{}", uuid::Uuid::new_v4()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Unknown speciale, unknown structured course, course before referral.
    let pid = &p.patient_id;
    for body in [
        json!({"speciale": 53, "referral_date": "2026-11-01"}),
        json!({"speciale": 51, "structured": "nonsense", "referral_date": "2026-11-01"}),
    ] {
        assert_eq!(
            admin
                .post(&format!("/api/patients/{pid}/courses"), body)
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
    }
    let (status, problem) = admin
        .post(
            &format!("/api/patients/{pid}/courses"),
            json!({"speciale": 62, "structured": "sklerose", "referral_date": "2026-11-01"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "sp. 62 needs a diagnosis group: {problem}"
    );
    // A structured course of the other speciale.
    let (status, _) = admin
        .post(
            &format!("/api/patients/{pid}/courses"),
            json!({"speciale": 51, "structured": "parkinson", "referral_date": "2026-11-01"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Scheduling nonsense.
    for body in [
        json!({"patient_id": pid, "course_id": p.course_id, "start": "2026-11-25T10:00:00Z", "length_minutes": 0}),
        json!({"patient_id": pid, "course_id": p.course_id, "start": "2020-01-01T10:00:00Z", "length_minutes": 30}),
        json!({"patient_id": pid, "course_id": p.course_id, "start": "tomorrow", "length_minutes": 30}),
    ] {
        assert_eq!(
            admin.post("/api/consultations", body.clone()).await.0,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    // A bad fee table is refused, naming the rows, and the old one stays.
    let table_before = admin.get_ok("/api/clinic/fee-table").await;
    let res = admin
        .http
        .put(format!("{}/api/clinic/fee-table", app.base))
        .header("x-csrf-token", admin.csrf_token())
        .header("content-type", "application/toml")
        .body("[[rows]]\nkind = \"individual_video\"\nservice_number = \"0131\"\nspeciale = 53\nvalid_from = 2024-01-01\nfee_ore = -5\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = res.json().await.unwrap();
    assert!(problem.to_string().contains("row 1"), "{problem}");
    assert_eq!(admin.get_ok("/api/clinic/fee-table").await, table_before);

    // Without the CSRF token, or without a session, nothing happens.
    let no_csrf = admin
        .http
        .post(format!("{}/api/patients", app.base))
        .json(&json!({"name": "CSRF"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let anonymous = Client::new(&app.base);
    assert_eq!(
        anonymous
            .post("/api/patients", json!({"name": "Anon"}))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anonymous.get("/api/patients").await.0,
        StatusCode::UNAUTHORIZED
    );
    // An expired session.
    app.set_now(app.now() + chrono::Duration::hours(13));
    assert_eq!(admin.get("/api/patients").await.0, StatusCode::UNAUTHORIZED);
    app.set_now(common::t0());

    assert_eq!(patients(&admin).await, before, "nothing changed");
    // A client that keeps guessing is refused, even with the right
    // password, once its budget of failures is spent.
    let stranger = Client::new(&app.base);
    for n in 0..10 {
        assert_eq!(
            stranger
                .post(
                    "/api/login",
                    json!({"email": format!("guess{n}@fysio.dk"), "password": "wrong password"})
                )
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        stranger
            .post(
                "/api/login",
                json!({"email": "admin@fysio.dk", "password": "correct horse battery"})
            )
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.stop().await;
}

on_both_databases!(bad_input_changes_nothing, super::bad_input);
