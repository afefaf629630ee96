//! Revoking a join link (or issuing a new one, which revokes the old)
//! ends every connection that holds it at once, wherever it is: a patient
//! in the waiting room is turned away, a patient in a relay-only call is
//! told `bye` and its TURN allocation stops relaying within a second, while
//! the therapist stays. The old link cannot join again.

use crate::common;

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_link_evicts_a_waiting_holder() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let (mut patient, _, mut therapist, _) = into_waiting(&app, &fx, &b).await;

    let (status, _) = api(
        &app,
        &fx,
        Method::DELETE,
        &format!("/api/consultations/{}/link", b.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let denied = expect(&mut patient, "denied").await;
    assert_eq!(denied["reason"], "by_therapist");
    expect_close(&mut patient, 4002).await;
    expect(&mut therapist, "peer_left").await;
    // A stranger holding the withdrawn link cannot come back.
    let mut again = connect(&app, None).await;
    join_refused(&mut again, patient_hello(&b.token), "link_expired").await;
    wait_for_events(&app, &fx, &b, &["patient_waiting", "patient_left_waiting"]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reissuing_the_link_ends_an_in_call_holder_and_its_relay_within_a_second() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Syd").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let turn = app.state.signaling.turn();
    let mut call = start_call(&app, &fx, &b).await;
    call.until_media().await;
    assert!(turn.allocations_for(b.id()).await.unwrap() >= 2);

    let revoked_at = Instant::now();
    let (status, body) = api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/consultations/{}/link", b.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bye = call.p.wait_for("bye").await;
    assert!(matches!(
        bye.body,
        konsult_protocol::ServerBody::Bye {
            reason: konsult_protocol::ByeReason::EndedByTherapist
        }
    ));
    call.t.wait_for("peer_left").await;
    // The patient's relay stops within a second of the request: sample
    // what reaches the therapist and find the last packet.
    let mut last = call.therapist.report().await.received.video.packets;
    let mut last_change = revoked_at.elapsed();
    let sample_until = revoked_at + StdDuration::from_millis(2500);
    while Instant::now() < sample_until {
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        let now = call.therapist.report().await.received.video.packets;
        if now != last {
            last = now;
            last_change = revoked_at.elapsed();
        }
    }
    println!(
        "revocation: the last patient packet reached the therapist {} ms after the request",
        last_change.as_millis()
    );
    assert!(
        last_change < StdDuration::from_secs(1),
        "relayed media went on for {last_change:?}"
    );
    assert!(
        turn.allocations_for(b.id()).await.unwrap() >= 1,
        "the therapist keeps its allocation"
    );
    // The consultation goes on; the new link works.
    assert_eq!(
        stored(&app, &fx, &b).await.state,
        konsult_domain::ConsultationState::InCall
    );
    let url = body["join_url"].as_str().unwrap();
    let token = url.rsplit('/').next().unwrap();
    let mut fresh = connect(&app, None).await;
    join(&mut fresh, patient_hello(token)).await;
    expect(&mut fresh, "waiting").await;
    wait_for_events(
        &app,
        &fx,
        &b,
        &[
            "patient_waiting",
            "admitted",
            "two_way_established",
            "patient_left",
            "patient_waiting",
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technical_failure_ends_the_call_and_its_relay_and_stays_refused_after_a_restart() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Vest").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let other = book(&app, &fx, Duration::minutes(10), true).await;
    let turn = app.state.signaling.turn();
    let mut call = start_call(&app, &fx, &b).await;
    call.until_media().await;
    assert!(turn.allocations_for(b.id()).await.unwrap() >= 2);
    let patient_relay = call.pw.ice_servers[0].clone();

    // The therapist marks the call as failed from the dashboard while it
    // is still up: both sides are told, every allocation closes.
    let (status, body) = api(
        &app,
        &fx,
        Method::POST,
        &format!("/api/consultations/{}/technical-failure", b.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    call.p.wait_for("bye").await;
    call.t.wait_for("bye").await;
    let deadline = Instant::now() + StdDuration::from_secs(1);
    while turn.allocations_for(b.id()).await != Some(0) {
        assert!(Instant::now() < deadline, "allocations left after a second");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    call.therapist.close().await.unwrap();
    call.patient.close().await.unwrap();
    let relay = turn.relay_addr().await.unwrap();
    assert!(
        !allocates(relay, &patient_relay).await,
        "a closed consultation's credential"
    );

    // After a restart the relay still refuses the closed consultation's
    // credentials (they have not expired yet), and grants another's.
    let app = app.restart().await;
    let relay = app.state.signaling.turn().relay_addr().await.unwrap();
    assert!(
        !allocates(relay, &patient_relay).await,
        "the restart forgot the consultation is closed"
    );
    let mut patient = connect(&app, None).await;
    let open = join(&mut patient, patient_hello(&other.token))
        .await
        .ice_servers[0]
        .clone();
    assert!(
        allocates(relay, &open).await,
        "a live consultation's credential"
    );
    app.stop().await;
}
