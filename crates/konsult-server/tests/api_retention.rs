//! Retention: journal notes are kept five years after the patient's last
//! entry, billing lines until five years after their financial year, call
//! events a year; the job enforces it. Erasure is refused while a journal
//! must be kept.

use crate::common;

use chrono::{Duration, TimeZone, Utc};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn retention(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio", "123456", "admin@fysio.dk").await;
    let clinic = admin.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let treated = eligible_patient(&app, &admin, "Tina Treated").await;
    let start = app.now() + Duration::hours(1);
    let (_, body) = schedule(&admin, &treated, start).await;
    let consultation = body["consultation"]["id"].as_str().unwrap().to_owned();
    simulate_call(&app, &clinic, &consultation, start, true).await;
    app.set_now(start + Duration::hours(1));
    admin
        .post_ok(
            &format!("/api/consultations/{consultation}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    let untreated = admin
        .post_ok(
            "/api/patients",
            json!({"name": "Ulla Unused", "phone": "12345678"}),
            StatusCode::CREATED,
        )
        .await;
    let untreated = untreated["id"].as_str().unwrap().to_owned();

    // Periods below the legal minimum are refused.
    let (status, _) = admin
        .call(
            Method::PUT,
            "/api/clinic",
            Some(json!({"retention": {"journal_years": 3, "billing_years": 5, "event_days": 365}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Erasure: allowed for the patient without a journal, not for the other.
    assert_eq!(
        admin
            .call(Method::DELETE, &format!("/api/patients/{untreated}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let erased = admin.get_ok(&format!("/api/patients/{untreated}")).await;
    assert_eq!(erased["name"], "");
    assert!(erased["phone"].is_null());
    let (status, problem) = admin
        .call(
            Method::DELETE,
            &format!("/api/patients/{}", treated.patient_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        problem["detail"].as_str().unwrap().contains("2031-11-25"),
        "{problem}"
    );

    let journal_path = format!("/api/consultations/{consultation}/journal");
    let run = |at| {
        app.set_now(at);
        konsult_server::jobs::run_retention(&app.state)
    };
    // Four years on: everything is kept (the events are a year old, though).
    run(Utc.with_ymd_and_hms(2030, 11, 25, 12, 0, 0).unwrap())
        .await
        .unwrap();
    admin.login("admin@fysio.dk", ADMIN_PASSWORD).await;
    assert_eq!(admin.get(&journal_path).await.0, StatusCode::OK);
    assert_eq!(
        admin
            .get_ok("/api/billing?from=2026-11-25&to=2026-11-25")
            .await["lines"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let events = app
        .state
        .store
        .call_events(
            konsult_domain::ClinicId::from_uuid(clinic.parse().unwrap()),
            konsult_domain::ConsultationId::from_uuid(consultation.parse().unwrap()),
        )
        .await
        .unwrap();
    assert!(events.is_empty(), "call events are kept a year");

    // Five years after the last entry: the journal goes; billing stays until
    // five years after the end of 2026.
    run(Utc.with_ymd_and_hms(2031, 11, 26, 12, 0, 0).unwrap())
        .await
        .unwrap();
    admin.login("admin@fysio.dk", ADMIN_PASSWORD).await;
    assert_eq!(admin.get(&journal_path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        admin
            .get_ok("/api/billing?from=2026-11-25&to=2026-11-25")
            .await["lines"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    run(Utc.with_ymd_and_hms(2031, 12, 31, 12, 0, 0).unwrap())
        .await
        .unwrap();
    admin.login("admin@fysio.dk", ADMIN_PASSWORD).await;
    assert_eq!(
        admin
            .get_ok("/api/billing?from=2026-11-25&to=2026-11-25")
            .await["lines"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    run(Utc.with_ymd_and_hms(2032, 1, 2, 12, 0, 0).unwrap())
        .await
        .unwrap();
    admin.login("admin@fysio.dk", ADMIN_PASSWORD).await;
    assert!(admin
        .get_ok("/api/billing?from=2026-11-25&to=2026-11-25")
        .await["lines"]
        .as_array()
        .unwrap()
        .is_empty());

    // Now the treated patient can be erased too; the audit chain still holds.
    assert_eq!(
        admin
            .call(
                Method::DELETE,
                &format!("/api/patients/{}", treated.patient_id),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let audit = admin.get_ok("/api/audit?limit=1000").await;
    assert_eq!(audit["chain"]["status"], "intact");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "patient.erase",
        "retention.journal_erased",
        "retention.billing_deleted",
    ] {
        assert!(actions.contains(&a), "{a} missing: {actions:?}");
    }
    app.stop().await;
}

on_both_databases!(retention_periods_are_enforced, super::retention);
