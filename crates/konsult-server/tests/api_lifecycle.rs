//! Consultations whose call nobody will finish do not stay stuck: completing
//! one that is still in its call ends it (`closed_by_clinic`) and bills it
//! on the evidence recorded, and a restart settles what a crash left behind
//! with no saved room to resume (a call ends as `abandoned` with its
//! evidence kept; a waiting patient's consultation is open again and the
//! link still works).

use crate::common;

use chrono::Duration;
use common::*;
use konsult_domain::{CallEvent, ClinicId, ConsultationId, Evidence};
use reqwest::StatusCode;
use serde_json::Value;

const EMAIL: &str = "admin@livet.dk";

/// A consultation booked five minutes from now: (clinic, consultation, join token).
async fn booked(app: &TestApp, admin: &Client, name: &str) -> (ClinicId, ConsultationId, String) {
    let clinic: String = admin.get_ok("/api/me").await["clinic_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = eligible_patient(app, admin, name).await;
    let (status, scheduled) = schedule(admin, &p, app.now() + Duration::minutes(5)).await;
    assert_eq!(status, StatusCode::CREATED, "{scheduled}");
    let id: String = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    let token = scheduled["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    (
        ClinicId::from_uuid(clinic.parse().unwrap()),
        ConsultationId::from_uuid(id.parse().unwrap()),
        token,
    )
}

/// Records `events` as the signaling would, a second apart.
async fn record(app: &TestApp, clinic: ClinicId, id: ConsultationId, events: &[CallEvent]) {
    for (n, event) in events.iter().enumerate() {
        app.state
            .store
            .record_call_event(clinic, id, *event, app.now() + Duration::seconds(n as i64))
            .await
            .unwrap();
    }
}

const IN_CALL: [CallEvent; 3] = [
    CallEvent::PatientWaiting,
    CallEvent::Admitted,
    CallEvent::TwoWayEstablished {
        evidence: Evidence::RelayObserved,
    },
];

async fn consultation(admin: &Client, id: ConsultationId) -> Value {
    admin.get_ok(&format!("/api/consultations/{id}")).await
}

async fn last_event(
    app: &TestApp,
    clinic: ClinicId,
    id: ConsultationId,
) -> (String, Option<String>) {
    let (kind, detail, _) = app
        .state
        .store
        .call_events(clinic, id)
        .await
        .unwrap()
        .pop()
        .expect("events");
    (kind, detail)
}

async fn completing_in_call(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio Livet", "333333", EMAIL).await;
    let (clinic, id, _) = booked(&app, &admin, "Ida Igang").await;
    record(&app, clinic, id, &IN_CALL).await;
    assert_eq!(consultation(&admin, id).await["state"], "in_call");

    // The peers never come back; the therapist completes from the dashboard.
    let done = admin
        .post_ok(
            &format!("/api/consultations/{id}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    assert_eq!(done["billable"], true, "{done}");
    let completed = consultation(&admin, id).await;
    assert_eq!(completed["state"], "completed", "{completed}");
    assert_eq!(
        completed["two_way_evidence"], "relay_observed",
        "{completed}"
    );
    assert_eq!(
        last_event(&app, clinic, id).await,
        ("ended".into(), Some("closed_by_clinic".into()))
    );
    app.stop().await;
}

on_both_databases!(
    completing_a_consultation_still_in_its_call_ends_and_bills_it,
    super::completing_in_call
);

async fn restart_settles(db: Db) {
    let app = TestApp::spawn(db).await;
    let admin = app.setup_clinic("Fysio Livet", "333333", EMAIL).await;
    let (clinic, in_call, _) = booked(&app, &admin, "Ida Igang").await;
    let (_, waiting, token) = booked(&app, &admin, "Vera Venter").await;
    record(&app, clinic, in_call, &IN_CALL).await;
    record(&app, clinic, waiting, &[CallEvent::PatientWaiting]).await;

    // A crash left these with no saved room: nobody can resume them.
    let app = app.restart().await;
    let admin = Client::new(&app.base);
    admin.login(EMAIL, ADMIN_PASSWORD).await;

    let ended = consultation(&admin, in_call).await;
    assert_eq!(ended["state"], "ended", "{ended}");
    assert!(
        ended["two_way_at"].is_string(),
        "the evidence is kept: {ended}"
    );
    assert_eq!(
        last_event(&app, clinic, in_call).await,
        ("ended".into(), Some("abandoned".into()))
    );
    let done = admin
        .post_ok(
            &format!("/api/consultations/{in_call}/complete"),
            journal(),
            StatusCode::OK,
        )
        .await;
    assert_eq!(done["billable"], true, "{done}");

    assert_eq!(consultation(&admin, waiting).await["state"], "open");
    let (status, join) = Client::new(&app.base)
        .get(&format!("/api/join/{token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "the link still works: {join}");
    app.stop().await;
}

on_both_databases!(
    a_restart_settles_the_calls_a_crash_left_behind,
    super::restart_settles
);
