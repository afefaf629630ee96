//! Billing rests on evidence the server observes. A clinic that requires
//! relay-observed evidence gets relay-only consultations; two scripted
//! WebSockets that only send `stats` (no WebRTC at all) never establish
//! two-way media there and the consultation is not billable, while a real
//! relay-only call is, with its line saying `relay_observed`.

use crate::common;

use std::time::Duration as StdDuration;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_domain::{BillingDecision, Evidence, EvidencePolicy, NotBillableReason};
use konsult_store::clinics::ClinicUpdate;

async fn require_relay_evidence(app: &TestApp, fx: &ClinicFixture) {
    app.state
        .store
        .update_clinic(
            fx.clinic,
            fx.therapist,
            ClinicUpdate {
                evidence_policy: Some(EvidencePolicy::RelayObserved),
                ..ClinicUpdate::default()
            },
            app.now(),
        )
        .await
        .unwrap();
}

fn flowing(bytes: u64, sent: u64) -> String {
    format!(
        r#"{{"type":"stats","connection_state":"connected","selected_candidate_type":"relay","bytes_received":{bytes},"frames_received":{f},"audio_packets_received":{f},"bytes_sent":{sent}}}"#,
        f = bytes / 100
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_only_clients_are_not_billable_when_relay_evidence_is_required() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    require_relay_evidence(&app, &fx).await;
    // The policy makes the consultation relay-only whatever was asked.
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let (mut patient, pw, mut therapist, tw) = into_call(&app, &fx, &b).await;
    assert_eq!(
        pw.candidate_policy,
        konsult_protocol::CandidatePolicy::RelayOnly
    );
    assert_eq!(
        tw.candidate_policy,
        konsult_protocol::CandidatePolicy::RelayOnly
    );

    // Perfectly consistent, growing counters for twice the evidence span.
    for i in 1..=8u64 {
        send(&mut therapist, flowing(i * 50_000, i * 52_000)).await;
        send(&mut patient, flowing(i * 50_000, i * 52_000)).await;
        tokio::time::sleep(StdDuration::from_millis(500)).await;
    }
    send(&mut therapist, r#"{"type":"leave"}"#).await;
    expect(&mut therapist, "bye").await;
    let seen = loop {
        let m = recv_json(&mut patient).await;
        if m["type"] == "bye" {
            break m;
        }
        assert_ne!(
            m["type"], "media_established",
            "scripted stats are no evidence"
        );
    };
    assert_eq!(seen["reason"], "ended_by_therapist");
    wait_for_events(&app, &fx, &b, &["patient_waiting", "admitted", "ended"]).await;
    let c = stored(&app, &fx, &b).await;
    assert_eq!(c.two_way_at, None);
    assert_eq!(c.two_way_evidence, None);

    let done = app
        .state
        .store
        .complete(fx.clinic, fx.therapist, b.consultation, &note(), app.now())
        .await
        .unwrap();
    assert_eq!(
        done.decision,
        BillingDecision::NotBillable(NotBillableReason::NoTwoWayMedia)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_relay_only_call_is_billed_on_relay_observed_evidence() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Syd").await;
    require_relay_evidence(&app, &fx).await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let mut call = start_call(&app, &fx, &b).await;
    let (t, p) = call.until_media().await;
    assert_two_way("therapist", &t);
    assert_two_way("patient", &p);
    wait_for_events(
        &app,
        &fx,
        &b,
        &["patient_waiting", "admitted", "two_way_established"],
    )
    .await;
    let c = stored(&app, &fx, &b).await;
    assert_eq!(c.two_way_evidence, Some(Evidence::RelayObserved));
    call.end().await;
    let done = app
        .state
        .store
        .complete(fx.clinic, fx.therapist, b.consultation, &note(), app.now())
        .await
        .unwrap();
    let BillingDecision::Billable(line) = done.decision else {
        panic!("{:?}", done.decision)
    };
    assert_eq!(line.evidence, Evidence::RelayObserved);
    let exported = app
        .state
        .store
        .billing_lines(
            fx.clinic,
            fx.therapist,
            line.calendar_day,
            line.calendar_day,
            konsult_store::billing::PeriodBy::Service,
            app.now(),
        )
        .await
        .unwrap();
    assert_eq!(exported[0].evidence, Evidence::RelayObserved);
    app.stop().await;
}

fn note() -> konsult_domain::JournalNote {
    konsult_domain::JournalNote::parse(konsult_domain::JournalNoteDraft {
        evaluation: Some("Øvelserne virker; fortsæt.".into()),
        ..Default::default()
    })
    .unwrap()
}
