//! The waiting room through the real server: a patient waits, the
//! therapist admits after the store re-checked eligibility, both report
//! media, the therapist ends the call, and every step lands in the store as
//! a call event (no addresses, no SDP). An assessment revoked while the
//! patient waits stops the admission, naming the reason.

mod common;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_domain::{ConsultationState, JournalNote, JournalNoteDraft};

const FLOWING: &str = r#"{"type":"stats","connection_state":"connected","selected_candidate_type":"host","bytes_received":5000,"frames_received":30,"audio_packets_received":100}"#;

#[tokio::test]
async fn waiting_admitted_two_way_and_ended_are_recorded_in_order() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;

    let mut patient = connect(&app, None).await;
    let pw = join(&mut patient, patient_hello(&b.token)).await;
    assert_eq!(expect(&mut patient, "waiting").await["seq"], 1);
    wait_for_events(&app, &fx, &b, &["patient_waiting"]).await;
    assert_eq!(
        stored(&app, &fx, &b).await.state,
        ConsultationState::Waiting
    );

    let mut therapist = connect(&app, Some(&fx.cookie)).await;
    let tw = join(&mut therapist, therapist_hello(b.id())).await;
    assert!(tw.peer_present);
    expect(&mut therapist, "patient_waiting").await;
    // Nothing is relayed before admission.
    send(&mut patient, r#"{"type":"offer","sdp":"v=0\r\n"}"#).await;
    expect_error(&mut patient, "wrong_state").await;

    send(&mut therapist, r#"{"type":"admit"}"#).await;
    expect(&mut patient, "admitted").await;
    assert_eq!(
        expect(&mut patient, "peer_joined").await["role"],
        "therapist"
    );
    assert_eq!(
        expect(&mut therapist, "peer_joined").await["role"],
        "patient"
    );
    wait_for_events(&app, &fx, &b, &["patient_waiting", "admitted"]).await;
    let c = stored(&app, &fx, &b).await;
    assert_eq!(c.state, ConsultationState::InCall);
    assert_eq!(c.started_at, Some(app.now()));
    assert_eq!(c.two_way_at, None);

    // Call messages are relayed now; both report media.
    send(&mut patient, r#"{"type":"chat","text":"Hej!"}"#).await;
    let chat = expect(&mut therapist, "chat").await;
    assert_eq!(
        (chat["from"].as_str(), chat["text"].as_str()),
        (Some("patient"), Some("Hej!"))
    );
    send(&mut therapist, FLOWING).await;
    send(&mut patient, FLOWING).await;
    expect(&mut therapist, "media_established").await;
    expect(&mut patient, "media_established").await;
    wait_for_events(
        &app,
        &fx,
        &b,
        &["patient_waiting", "admitted", "two_way_established"],
    )
    .await;
    assert!(stored(&app, &fx, &b).await.two_way_at.is_some());

    // The therapist ends the consultation.
    send(&mut therapist, r#"{"type":"leave"}"#).await;
    assert_eq!(expect(&mut therapist, "bye").await["reason"], "left");
    expect_close(&mut therapist, 1000).await;
    assert_eq!(expect(&mut patient, "peer_left").await["role"], "therapist");
    assert_eq!(
        expect(&mut patient, "bye").await["reason"],
        "ended_by_therapist"
    );
    expect_close(&mut patient, 1000).await;
    wait_for_events(
        &app,
        &fx,
        &b,
        &[
            "patient_waiting",
            "admitted",
            "two_way_established",
            "ended",
        ],
    )
    .await;
    let c = stored(&app, &fx, &b).await;
    assert_eq!(c.state, ConsultationState::Ended);
    assert!(c.ended_at.is_some());

    // The link is spent; the therapist cannot reopen the room either.
    let mut again = connect(&app, None).await;
    join_refused(&mut again, patient_hello(&b.token), "link_expired").await;
    let mut again = connect(&app, Some(&fx.cookie)).await;
    join_refused(&mut again, therapist_hello(b.id()), "wrong_state").await;

    // With two-way media on record, completing it is billable.
    let note = JournalNote::parse(JournalNoteDraft {
        evaluation: Some("Bedre bevægelighed.".into()),
        ..JournalNoteDraft::default()
    })
    .unwrap();
    let done = app
        .state
        .store
        .complete(fx.clinic, fx.therapist, b.consultation, &note, app.now())
        .await
        .unwrap();
    assert!(done.line_id.is_some(), "{:?}", done.decision);
    // Distinct resume tokens per participant.
    assert!(!pw.resume_token.ct_eq(&tw.resume_token));
    app.stop().await;
}

#[tokio::test]
async fn admission_is_refused_when_the_assessment_was_revoked_meanwhile() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    let mut therapist = connect(&app, Some(&fx.cookie)).await;
    join(&mut therapist, therapist_hello(b.id())).await;
    expect(&mut therapist, "patient_waiting").await;

    app.state
        .store
        .revoke_assessment(fx.clinic, fx.therapist, b.assessment, app.now())
        .await
        .unwrap();
    send(&mut therapist, r#"{"type":"admit"}"#).await;

    let error = expect_error(&mut therapist, "not_eligible").await;
    assert_eq!(error["failures"], serde_json::json!(["assessment_revoked"]));
    assert_eq!(expect(&mut therapist, "peer_left").await["role"], "patient");
    let denied = expect(&mut patient, "denied").await;
    assert_eq!(denied["reason"], "not_eligible");
    assert_eq!(
        denied["failures"],
        serde_json::json!(["assessment_revoked"])
    );
    expect_close(&mut patient, 4002).await;

    // The patient left the waiting room; no call started.
    wait_for_events(&app, &fx, &b, &["patient_waiting", "patient_left_waiting"]).await;
    let c = stored(&app, &fx, &b).await;
    assert_eq!(c.state, ConsultationState::Open);
    assert_eq!(c.started_at, None);
    // The therapist's connection stays usable.
    send(&mut therapist, r#"{"type":"ping"}"#).await;
    expect(&mut therapist, "pong").await;
    app.stop().await;
}

#[tokio::test]
async fn a_patient_who_leaves_the_waiting_room_can_come_back() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    send(&mut patient, r#"{"type":"leave"}"#).await;
    expect(&mut patient, "bye").await;
    expect_close(&mut patient, 1000).await;
    wait_for_events(&app, &fx, &b, &["patient_waiting", "patient_left_waiting"]).await;
    assert_eq!(stored(&app, &fx, &b).await.state, ConsultationState::Open);

    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    wait_for_events(
        &app,
        &fx,
        &b,
        &["patient_waiting", "patient_left_waiting", "patient_waiting"],
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_signaling_sockets_with_1001_and_stops_the_relay() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let mut patient = connect(&app, None).await;
    join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    assert!(app.state.signaling.turn().relay_addr().await.is_some());
    let state = app.state.clone();
    app.stop().await;
    // Going away: the client reconnects (to the restarted server).
    expect_close(&mut patient, 1001).await;
    assert_eq!(state.signaling.turn().relay_addr().await, None);
}
