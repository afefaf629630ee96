//! The patient's WebSocket is cut in the middle of a call (no close frame,
//! as when a phone switches networks). Meanwhile the therapist restarts
//! ICE; its offer waits in the patient's replay buffer. The patient
//! reconnects with its resume token and `last_seq`, gets `welcome` with
//! `resumed: true` and the missed offer, answers it, and media goes on over
//! the renegotiated connection. The therapist is never told the patient
//! left, and the store records no end.

use crate::common;

use std::time::Duration as StdDuration;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_peer::ConnectionState;
use konsult_protocol::ServerBody;

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("an offer carries an ICE ufrag")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_patient_socket_resumes_and_the_call_goes_on() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), false).await;
    let mut call = start_call(&app, &fx, &b).await;
    let (_, p1) = call.until_media().await;
    print_figures("resume patient before the cut", &p1);
    let offers_before = call.p.received_sdp.len();
    let first_ufrag = ufrag(&call.p.received_sdp[0]);

    // The patient's socket dies; the therapist restarts ICE meanwhile.
    call.p.cut();
    for message in call.therapist.restart_ice().await.unwrap() {
        konsult_peer::SignalTransport::send(&mut call.t, message)
            .await
            .unwrap();
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;

    // The patient comes back within the grace period.
    let resume_hello = patient_hello(&b.token);
    let welcome = call
        .p
        .resume(&app, &resume_hello, &call.pw.resume_token)
        .await;
    assert!(welcome.resumed, "a resume within the grace period");
    assert!(welcome.resume_token.ct_eq(&call.pw.resume_token));

    let (t2, p2) = call.run_for(StdDuration::from_secs(8)).await;
    print_figures("resume patient after the resume", &p2);
    // The missed restart offer was replayed and answered: new ICE
    // credentials, and media still flowing.
    let offers: Vec<&String> = call.p.received_sdp[offers_before..].iter().collect();
    assert!(!offers.is_empty(), "the restart offer was replayed");
    assert_ne!(ufrag(offers[0]), first_ufrag, "a restart offer");
    assert_eq!(call.therapist.ice_restarts(), 1);
    assert_eq!(
        call.therapist.peer().connection_state(),
        ConnectionState::Connected
    );
    assert_eq!(
        call.patient.peer().connection_state(),
        ConnectionState::Connected
    );
    assert!(
        p2.received.video.frames > p1.received.video.frames + 10,
        "video kept coming to the patient: {p1:#?} then {p2:#?}"
    );
    assert!(t2.received.audio.packets > 0);
    // Nobody was told the patient left, and nothing ended.
    assert!(!call
        .t
        .received
        .iter()
        .any(|m| matches!(m.body, ServerBody::PeerLeft { .. })));
    wait_for_events(
        &app,
        &fx,
        &b,
        &["patient_waiting", "admitted", "two_way_established"],
    )
    .await;

    call.end().await;
    wait_for_events(&app, &fx, &b, &WHOLE_CALL).await;
    app.stop().await;
}
