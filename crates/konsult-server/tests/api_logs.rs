//! The logs of a full scenario carry ids, never names, CPR numbers,
//! contact data or journal text. (Own test binary: it installs the global
//! log subscriber with an in-memory sink.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_of_a_full_scenario_hold_no_personal_data() {
    // Everything, down to debug, from every crate that is not silenced.
    std::env::set_var("RUST_LOG", "debug");
    let sink = Sink::default();
    let writer = sink.clone();
    konsult_server::telemetry::init(move || writer.clone());

    let app = TestApp::spawn(Db::Sqlite).await;
    let client = app
        .setup_clinic("Logklinik", "123456", "log@klinik.dk")
        .await;
    let clinic = client.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patient = client
        .post_ok("/api/patients", json!({"name": "Lone Logfri", "cpr": "050505-1234", "phone": "+45 22 33 44 55", "email": "lone@logfri.dk"}), StatusCode::CREATED)
        .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    client
        .post_ok(
            &format!("/api/patients/{pid}/visits"),
            json!({"at": app.now() - Duration::days(1)}),
            StatusCode::CREATED,
        )
        .await;
    let course = client
        .post_ok(
            &format!("/api/patients/{pid}/courses"),
            json!({"speciale": 51, "referral_date": "2026-11-01"}),
            StatusCode::CREATED,
        )
        .await;
    let cid = course["id"].as_str().unwrap().to_owned();
    client
        .post_ok(&format!("/api/courses/{cid}/assessments"), json!({"cognitively_able": true, "technically_able": true, "clinically_relevant": true, "patient_safe": true, "patient_prefers_video": true}), StatusCode::CREATED)
        .await;
    let start = app.now() + Duration::hours(1);
    let scheduled = client
        .post_ok(
            "/api/consultations",
            json!({"patient_id": pid, "course_id": cid, "start": start, "length_minutes": 30}),
            StatusCode::CREATED,
        )
        .await;
    let id = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    simulate_call(&app, &clinic, &id, start, true).await;
    let mut note = journal();
    note["journal"]["evaluation"] = json!("Smerter i venstre skulder ved løft");
    client
        .post_ok(
            &format!("/api/consultations/{id}/complete"),
            note,
            StatusCode::OK,
        )
        .await;
    client.get_ok(&format!("/api/patients/{pid}")).await;
    // Failures are logged too.
    client
        .post(
            "/api/patients",
            json!({"name": "Lone Logfri", "cpr": "999999-9999"}),
        )
        .await;
    Client::new(&app.base)
        .post(
            "/api/login",
            json!({"email": "log@klinik.dk", "password": "Lone Logfri forkert"}),
        )
        .await;
    // Each request has an id of the server's own: in the response, and in
    // the span of every line the request logs. One a client sends is
    // neither kept nor logged.
    let refused = reqwest::Client::new()
        .post(format!("{}/api/login", app.base))
        .header("x-request-id", "spoofed-by-the-client")
        .json(&json!({"email": "log@klinik.dk", "password": "endnu en forkert"}))
        .send()
        .await
        .unwrap();
    let request_id = refused
        .headers()
        .get("x-request-id")
        .expect("every response carries its request id")
        .to_str()
        .unwrap()
        .to_owned();
    uuid::Uuid::parse_str(&request_id).expect("the server's own id, a UUID");
    app.stop().await;

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains(&request_id) && l.contains("login refused"))
        .unwrap_or_else(|| panic!("no refusal of request {request_id}:\n{logs}"));
    assert!(line.contains("route=\"/api/login\""), "{line}");
    assert!(!logs.contains("spoofed-by-the-client"), "{logs}");
    assert!(
        logs.contains(&id),
        "the consultation id is logged (so the sink works):\n{logs}"
    );
    for secret in [
        "Lone",
        "Logfri",
        "050505",
        "22 33 44 55",
        "lone@logfri.dk",
        "log@klinik.dk",
        "skulder",
        "999999",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} appears in the logs:\n{logs}"
        );
    }
}
