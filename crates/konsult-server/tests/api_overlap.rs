//! Pressing "Planlæg" twice made two consultations for one patient at the
//! same time. A consultation that overlaps another of the same patient that
//! is not over is refused (409 `overlapping_consultation`) unless the caller
//! says `allow_overlap`; two presses at once make one.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

fn request(
    p: &EligiblePatient,
    start: chrono::DateTime<chrono::Utc>,
    allow: Option<bool>,
) -> serde_json::Value {
    let mut body = json!({"patient_id": p.patient_id, "course_id": p.course_id, "start": start, "length_minutes": 30});
    if let Some(allow) = allow {
        body["allow_overlap"] = json!(allow);
    }
    body
}

async fn overlapping_consultations(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Klinik", "123456", "admin@k.dk").await;
    let p = eligible_patient(&app, &admin, "Ane").await;
    let start = app.now() + Duration::hours(2);
    let first = admin
        .post_ok(
            "/api/consultations",
            request(&p, start, None),
            StatusCode::CREATED,
        )
        .await;
    // Fifteen minutes later overlaps the first half hour.
    let (status, body) = admin
        .post(
            "/api/consultations",
            request(&p, start + Duration::minutes(15), None),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "urn:konsult:problem:overlapping_consultation");
    // Right after it does not; a deliberate overlap is allowed.
    admin
        .post_ok(
            "/api/consultations",
            request(&p, start + Duration::minutes(30), None),
            StatusCode::CREATED,
        )
        .await;
    let allowed = admin
        .post_ok(
            "/api/consultations",
            request(&p, start + Duration::minutes(15), Some(true)),
            StatusCode::CREATED,
        )
        .await;
    // Cancelled consultations no longer block their time.
    for c in [&first, &allowed] {
        let id = c["consultation"]["id"].as_str().unwrap();
        admin
            .post_ok(
                &format!("/api/consultations/{id}/cancel"),
                json!({}),
                StatusCode::OK,
            )
            .await;
    }
    admin
        .post_ok(
            "/api/consultations",
            request(&p, start, None),
            StatusCode::CREATED,
        )
        .await;
    // Two presses at once, at a new time: one consultation.
    let later = start + Duration::hours(3);
    let admin = std::sync::Arc::new(admin);
    let presses: Vec<_> = (0..2)
        .map(|_| {
            let admin = admin.clone();
            let body = request(&p, later, None);
            tokio::spawn(async move { admin.post("/api/consultations", body).await.0 })
        })
        .collect();
    let mut created = 0;
    for press in presses {
        let status = press.await.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "{status}"
        );
        created += usize::from(status == StatusCode::CREATED);
    }
    assert_eq!(created, 1);
    app.stop().await;
}
on_both_databases!(
    an_overlapping_consultation_is_refused_unless_allowed,
    super::overlapping_consultations
);
