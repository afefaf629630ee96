//! The anonymous join-link endpoints cannot be used to grow the audit log
//! or to hammer the server: a patient's opening of the link is audited at
//! most once per ten minutes however often the page is loaded, and one
//! client gets 429 with `Retry-After` beyond its rate.

use crate::common;

use chrono::Duration;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn link_reads(admin: &Client) -> usize {
    let page = admin.get_ok("/api/audit?limit=1000").await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "consultation.read"
                && e["actor"].as_str().unwrap().starts_with("patient-link:")
        })
        .count()
}

async fn open(app: &TestApp, token: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let res = reqwest::get(format!("{}/api/join/{token}", app.base))
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

async fn opening_again_and_again(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Klinik", "123456", "admin@k.dk").await;
    let p = eligible_patient(&app, &admin, "Ane").await;
    let (status, body) = schedule(&admin, &p, app.now() + Duration::minutes(10)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();

    // Twenty opens at once (the burst): all answered, one audit entry.
    for _ in 0..20 {
        let (status, _, info) = open(&app, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(info["status"], "valid");
    }
    assert_eq!(link_reads(&admin).await, 1);
    // Beyond the burst: 429 with Retry-After, and nothing recorded.
    let (status, headers, problem) = open(&app, &token).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    let (status, _, _) = open(&app, "not-a-real-link").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "guessing links is limited too"
    );
    // The privacy notice names the clinic of a real link: limited as well.
    let res = reqwest::get(format!("{}/api/join/not-a-real-link/privacy", app.base))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(link_reads(&admin).await, 1);

    // Eleven minutes later an open is recorded again.
    app.set_now(app.now() + Duration::minutes(11));
    admin.login("admin@k.dk", ADMIN_PASSWORD).await;
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let (status, _, _) = open(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(link_reads(&admin).await, 2);
    app.stop().await;
}
on_both_databases!(
    opening_again_and_again_is_recorded_once_and_limited,
    super::opening_again_and_again
);

/// A link that no longer works names its clinic, and says when the clinic
/// cancelled.
async fn dead_links_say_whom_to_call(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio Nord", "123456", "admin@k.dk").await;
    let p = eligible_patient(&app, &admin, "Ane").await;
    let (_, body) = schedule(&admin, &p, app.now() + Duration::minutes(10)).await;
    let id = body["consultation"]["id"].as_str().unwrap().to_owned();
    let token = body["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    // Without a phone number the page can only name the clinic.
    let (_, _, info) = open(&app, &token).await;
    assert_eq!(info["status"], "valid");
    assert!(info["clinic_phone"].is_null());
    // A phone number that is not one is refused and changes nothing.
    let (status, problem) = admin
        .call(
            Method::PUT,
            "/api/clinic",
            Some(serde_json::json!({"phone": "ring os"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let clinic = admin.get_ok("/api/clinic").await;
    assert!(clinic["phone"].is_null());
    let (status, _) = admin
        .call(
            Method::PUT,
            "/api/clinic",
            Some(serde_json::json!({"phone": " 70 20 30 40 "})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, info) = open(&app, &token).await;
    assert_eq!(info["clinic_phone"], "70 20 30 40");
    admin
        .post_ok(
            &format!("/api/consultations/{id}/cancel"),
            serde_json::json!({}),
            StatusCode::OK,
        )
        .await;
    let (status, _, info) = open(&app, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["status"], "expired");
    assert_eq!(info["closed_as"], "cancelled");
    assert_eq!(info["clinic_name"], "Fysio Nord");
    assert_eq!(info["clinic_phone"], "70 20 30 40");
    assert!(info["therapist_name"].is_null() && info["start"].is_null());
    // A token never issued tells nothing.
    let (_, _, info) = open(&app, "never-issued").await;
    assert_eq!(info["status"], "unknown");
    assert!(info["clinic_name"].is_null() && info["clinic_phone"].is_null());
    // An empty phone removes it.
    let (status, _) = admin
        .call(
            Method::PUT,
            "/api/clinic",
            Some(serde_json::json!({"phone": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(admin.get_ok("/api/clinic").await["phone"].is_null());
    app.stop().await;
}
on_both_databases!(
    dead_links_say_whom_to_call,
    super::dead_links_say_whom_to_call
);
