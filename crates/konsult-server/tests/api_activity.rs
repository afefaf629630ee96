//! The dashboard notices a patient arriving: `GET
//! /api/consultations/activity` says who waits (clinic-wide and the
//! caller's own) and carries no patient data, so it adds nothing to the
//! audit log however often it is called; `…/activity/events` pushes the
//! same as server-sent events when something changes.

use crate::common;

use std::time::Instant;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_says_who_waits_without_patient_data_or_audit() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let audit_len = |v: &serde_json::Value| v["entries"].as_array().unwrap().len();
    let (_, before) = api(&app, &fx, Method::GET, "/api/audit?limit=1000", None).await;

    let (status, activity) = api(&app, &fx, Method::GET, "/api/consultations/activity", None).await;
    assert_eq!(status, StatusCode::OK, "{activity}");
    assert_eq!(activity["waiting"], 0);
    let item = &activity["consultations"][0];
    assert_eq!(item["state"], "scheduled");
    assert!(item.get("patient_id").is_none() && item.get("patient_name").is_none());

    // The patient enters the waiting room: the next poll says so.
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    let entered = Instant::now();
    loop {
        let (_, activity) = api(&app, &fx, Method::GET, "/api/consultations/activity", None).await;
        if activity["waiting"] == 1 {
            assert_eq!(activity["waiting_mine"], 1);
            assert_eq!(activity["consultations"][0]["state"], "waiting");
            break;
        }
        assert!(entered.elapsed().as_secs() < 2, "{activity}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!(
        "waiting shown {} ms after the patient entered",
        entered.elapsed().as_millis()
    );
    for _ in 0..20 {
        api(&app, &fx, Method::GET, "/api/consultations/activity", None).await;
    }
    let (_, after) = api(&app, &fx, Method::GET, "/api/audit?limit=1000", None).await;
    let new: Vec<_> = after["entries"].as_array().unwrap()[audit_len(&before)..]
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !new.iter().any(|a| a.starts_with("consultation.list")),
        "polling is not audited: {new:?}"
    );
    app.stop().await;
}

/// The day view (`GET /api/consultations`) shows patient names, so a
/// patient's access log says who saw them there, but once per viewer in
/// twelve hours: the dashboard reloads the list on every change, and a
/// reload writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_view_is_audited_once_per_viewer_not_per_reload() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    book(&app, &fx, Duration::minutes(5), true).await;
    let listed = |v: &serde_json::Value| {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "consultation.list")
            .count()
    };
    let (_, before) = api(&app, &fx, Method::GET, "/api/audit?limit=1000", None).await;
    for _ in 0..5 {
        let (status, day) = api(&app, &fx, Method::GET, "/api/consultations", None).await;
        assert_eq!(status, StatusCode::OK, "{day}");
        assert_eq!(day.as_array().map(Vec::len), Some(1), "{day}");
    }
    let (_, after) = api(&app, &fx, Method::GET, "/api/audit?limit=1000", None).await;
    assert_eq!(
        listed(&after) - listed(&before),
        1,
        "five reloads, one entry: {after}"
    );
    app.stop().await;
}

/// The next `activity` event of a server-sent event stream, as JSON.
async fn next_activity(res: &mut reqwest::Response, buf: &mut String) -> serde_json::Value {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let is_activity = block.lines().any(|l| l == "event: activity");
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            if is_activity {
                return serde_json::from_str(&data).unwrap();
            }
            continue;
        }
        let chunk = res.chunk().await.unwrap().expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_is_pushed_when_a_patient_arrives() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let other = clinic(&app, "Syd").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let http = reqwest::Client::new();
    let events = |fx: &ClinicFixture| {
        http.get(format!("{}/api/consultations/activity/events", app.base))
            .header("cookie", fx.cookie.clone())
            .send()
    };
    // Without a session: 401, no stream.
    let res = http
        .get(format!("{}/api/consultations/activity/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let mut res = events(&fx).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut buf = String::new();
    let first = next_activity(&mut res, &mut buf).await;
    assert_eq!(first["waiting"], 0);
    assert_eq!(first["consultations"][0]["state"], "scheduled");

    // Another clinic's booking is not this clinic's news.
    book(&app, &other, Duration::minutes(5), true).await;
    // The patient enters the waiting room: pushed, not polled.
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    let entered = Instant::now();
    let pushed = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        next_activity(&mut res, &mut buf),
    )
    .await
    .expect("pushed within 2 s");
    println!(
        "waiting pushed {} ms after the patient entered",
        entered.elapsed().as_millis()
    );
    assert_eq!(pushed["waiting"], 1, "{pushed}");
    assert_eq!(pushed["waiting_mine"], 1);
    assert_eq!(pushed["consultations"].as_array().unwrap().len(), 1);

    // A shutdown ends the stream instead of holding the server up.
    let stopping = Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed().as_secs() < 5,
        "stopped in {:?}",
        stopping.elapsed()
    );
}
