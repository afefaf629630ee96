//! A patient's history and the join link shown again: the patient page
//! lists past and upcoming consultations with state, therapist, billing and
//! whether there is a journal note; the current link can be shown and sent
//! again without invalidating it, and never after it was replaced or the
//! consultation closed.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

async fn link_status(app: &TestApp, url: &str) -> String {
    let res = reqwest::get(format!("{}/api/join/{}", app.base, token_of(url)))
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    body["status"].as_str().unwrap().to_owned()
}

async fn history_and_link(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio Nord", "123456", "admin@k.dk").await;
    let clinic = admin.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = eligible_patient(&app, &admin, "Ane").await;
    let start = app.now() + Duration::minutes(10);
    let (status, booked) = schedule(&admin, &p, start).await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let id = booked["consultation"]["id"].as_str().unwrap().to_owned();
    let url = booked["join_url"].as_str().unwrap().to_owned();

    // Shown again: the same link, with the invitation, and it still works.
    let again = admin.get_ok(&format!("/api/consultations/{id}/link")).await;
    assert_eq!(again["join_url"], url.as_str());
    assert!(again["invitation_da"].as_str().unwrap().contains(&url));
    assert!(again["invite_ics"]
        .as_str()
        .unwrap()
        .contains("BEGIN:VCALENDAR"));
    assert_eq!(link_status(&app, &url).await, "valid");
    // Another clinic sees nothing.
    let other = app.setup_clinic("Fysio Syd", "654321", "syd@k.dk").await;
    let (status, _) = other.get(&format!("/api/consultations/{id}/link")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = other
        .get(&format!("/api/patients/{}/consultations", p.patient_id))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The history: upcoming, no billing yet, no journal.
    let history = admin
        .get_ok(&format!("/api/patients/{}/consultations", p.patient_id))
        .await;
    let item = &history[0];
    assert_eq!(item["consultation"]["id"], id.as_str());
    assert_eq!(item["consultation"]["state"], "scheduled");
    assert!(item["consultation"]["therapist_name"].is_string());
    assert!(item["billing"].is_null() && item["has_journal"] == false);

    // A new link replaces it: the old one is gone, the new one is shown.
    let fresh = admin
        .post_ok(
            &format!("/api/consultations/{id}/link"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    let shown = admin.get_ok(&format!("/api/consultations/{id}/link")).await;
    assert_eq!(shown["join_url"], fresh["join_url"]);
    assert_ne!(shown["join_url"], url.as_str());

    // The call and its completion: billed, with a journal note; no link.
    simulate_call(&app, &clinic, &id, start, true).await;
    app.set_now(start + Duration::minutes(30));
    admin
        .post_ok(
            &format!("/api/consultations/{id}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    let history = admin
        .get_ok(&format!("/api/patients/{}/consultations", p.patient_id))
        .await;
    let item = &history[0];
    assert_eq!(item["consultation"]["state"], "completed");
    assert_eq!(item["billing"]["billable"], true, "{item}");
    assert_eq!(item["has_journal"], true);
    let (status, _) = admin.get(&format!("/api/consultations/{id}/link")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a closed consultation has no link"
    );

    // Both reads are in the audit log.
    let audit = admin
        .call(Method::GET, "/api/audit?limit=1000", None)
        .await
        .1;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"consultation.link.read"), "{actions:?}");
    assert!(actions.contains(&"patient.consultations"), "{actions:?}");
    app.stop().await;
}
on_both_databases!(history_and_link_shown_again, super::history_and_link);
