//! Breach support: one account opening many different patients' records
//! in a short time raises one structured alert in the log, with ids only.
//! (Own test binary: it installs the global log subscriber.)

use crate::common;

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

impl Sink {
    fn alerts(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains("unusual_access"))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn unusual_access_raises_an_alert() {
    let sink = Sink::default();
    let writer = sink.clone();
    konsult_server::telemetry::init_with_filter("info", move || writer.clone());

    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.alerts.unusual_access_patients = 3;
    settings.alerts.unusual_access_minutes = 10;
    let app = TestApp::spawn_with(settings, dir, t0()).await;
    let admin = app
        .setup_clinic("Fysio Alarm", "123456", "chef@alarm.dk")
        .await;
    let me = admin.get_ok("/api/me").await;
    let account = me["therapist_id"].as_str().unwrap().to_owned();
    let clinic = me["clinic_id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..8 {
        let p = admin
            .post_ok(
                "/api/patients",
                json!({"name": format!("Patient Nummer{i}")}),
                StatusCode::CREATED,
            )
            .await;
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    // The patient list is not "opening" records one by one.
    admin.get_ok("/api/patients").await;
    // Three patients, and one of them again: within the threshold.
    for id in [&ids[0], &ids[1], &ids[2], &ids[0]] {
        admin.get_ok(&format!("/api/patients/{id}")).await;
    }
    assert!(sink.alerts().is_empty(), "{:?}", sink.alerts());
    // The fourth different patient within ten minutes: one alert.
    app.set_now(app.now() + Duration::minutes(5));
    admin
        .get_ok(&format!("/api/patients/{}/export", ids[3]))
        .await;
    let alerts = sink.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let line = &alerts[0];
    assert!(line.contains("WARN"), "{line}");
    for needle in [
        "alert=\"unusual_access\"".to_owned(),
        format!("account={account}"),
        format!("clinic={clinic}"),
        "patients=4".to_owned(),
        "window_minutes=10".to_owned(),
        "threshold=3".to_owned(),
    ] {
        assert!(line.contains(&needle), "{needle} missing: {line}");
    }
    // No personal data: no name, no patient id.
    assert!(!line.contains("Nummer"), "{line}");
    assert!(ids.iter().all(|id| !line.contains(id.as_str())), "{line}");
    // Going on does not repeat the alert at once…
    admin.get_ok(&format!("/api/patients/{}", ids[4])).await;
    assert_eq!(sink.alerts().len(), 1);
    // …and outside the window the count starts again.
    app.set_now(app.now() + Duration::minutes(30));
    for id in &ids[5..8] {
        admin.get_ok(&format!("/api/patients/{id}")).await;
    }
    assert_eq!(sink.alerts().len(), 1, "{:?}", sink.alerts());
    app.stop().await;
}
