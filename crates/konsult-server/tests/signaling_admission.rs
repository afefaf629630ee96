//! The waiting room through the real server: a patient waits, the
//! therapist admits after the store re-checked eligibility, both report
//! media, the therapist ends the call, and every step lands in the store as
//! a call event (no addresses, no SDP). An assessment revoked, or the
//! patient's link closed, while the patient waits stops the admission,
//! naming the reason.

use crate::common;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_domain::{ConsultationState, JournalNote, JournalNoteDraft};

/// A `stats` report of media flowing, `bytes` received so far.
fn flowing(bytes: u64) -> String {
    format!(
        r#"{{"type":"stats","connection_state":"connected","selected_candidate_type":"host","bytes_received":{bytes},"frames_received":30,"audio_packets_received":100}}"#
    )
}

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
    // Reports of growing counters over the evidence span (2 s in tests).
    send(&mut therapist, flowing(5_000)).await;
    send(&mut patient, flowing(5_000)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    send(&mut therapist, flowing(90_000)).await;
    send(&mut patient, flowing(90_000)).await;
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
    wait_for_events(&app, &fx, &b, &WHOLE_CALL).await;
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
    let (mut patient, _, mut therapist, _) = into_waiting(&app, &fx, &b).await;

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
async fn admission_is_refused_when_the_patient_s_link_closed_while_waiting() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    // The therapist joins after the patient (and has no link window of
    // its own): the patient's window still holds at admission.
    let (mut patient, _, mut therapist, _) = into_waiting(&app, &fx, &b).await;

    app.set_now(b.closes_at + Duration::seconds(1));
    send(&mut therapist, r#"{"type":"admit"}"#).await;
    let error = expect_error(&mut therapist, "not_eligible").await;
    assert_eq!(error["failures"], serde_json::json!(["window_closed"]));
    let denied = expect(&mut patient, "denied").await;
    assert_eq!(denied["failures"], serde_json::json!(["window_closed"]));
    expect_close(&mut patient, 4002).await;
    wait_for_events(&app, &fx, &b, &["patient_waiting", "patient_left_waiting"]).await;
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

#[tokio::test]
async fn media_state_is_relayed_only_to_a_client_that_asked_for_it() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let with_features = |hello: String| {
        let mut v: serde_json::Value = serde_json::from_str(&hello).unwrap();
        v["features"] = serde_json::json!(["media_state"]);
        v.to_string()
    };

    // The patient's client asks for media_state; the therapist's does not
    // (a client written before the message existed).
    let mut patient = connect(&app, None).await;
    join(&mut patient, with_features(patient_hello(&b.token))).await;
    expect(&mut patient, "waiting").await;
    let mut therapist = connect(&app, Some(&fx.cookie)).await;
    join(&mut therapist, therapist_hello(b.id())).await;
    expect(&mut therapist, "patient_waiting").await;
    send(&mut therapist, r#"{"type":"admit"}"#).await;
    expect(&mut patient, "admitted").await;
    expect(&mut patient, "peer_joined").await;
    expect(&mut therapist, "peer_joined").await;

    send(
        &mut therapist,
        r#"{"type":"media_state","audio":false,"video":true}"#,
    )
    .await;
    let state = expect(&mut patient, "media_state").await;
    assert_eq!(
        (
            state["from"].as_str(),
            &state["audio"],
            &state["video"],
            &state["screen"]
        ),
        (
            Some("therapist"),
            &serde_json::json!(false),
            &serde_json::json!(true),
            &serde_json::json!(false)
        )
    );
    // The patient's state is dropped for the therapist; the next thing the
    // therapist sees is the chat line sent after it.
    send(
        &mut patient,
        r#"{"type":"media_state","audio":true,"video":false}"#,
    )
    .await;
    send(&mut patient, r#"{"type":"chat","text":"Hej"}"#).await;
    assert_eq!(recv_json(&mut therapist).await["type"], "chat");
}
