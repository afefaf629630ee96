//! A connection silent for longer than the heartbeat timeout is treated as
//! dropped: it is closed and its participant enters the grace period.

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Role};
use konsult_signal::{CloseReason, Config, Presence};
use std::time::Duration;

#[test]
fn silent_connection_is_closed_and_may_resume() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let joined_at = h.now;
    assert_eq!(
        h.hub.poll_timeout(),
        Some(joined_at + Duration::from_secs(30)),
        "the heartbeat deadline is the next timer"
    );
    // The therapist pings, the patient is silent.
    h.advance_pinging(secs(29), &[t]);
    assert!(h.take_closes().is_empty());
    h.advance_pinging(secs(2), &[t]);
    assert_eq!(h.take_closes(), [(p, CloseReason::HeartbeatTimeout)]);
    assert!(matches!(
        h.room().unwrap().patient,
        Some(Presence::Disconnected { .. })
    ));
    assert!(h.take(t).is_empty(), "the peer waits for the grace period");

    // The patient reconnects and resumes.
    let resume = h.resume_for(p);
    h.disconnect(p);
    let p2 = h.join_resume(Role::Patient, resume);
    assert_eq!(h.types(p2), ["welcome"]);
    assert!(h.take(t).is_empty());
}

#[test]
fn then_the_grace_period_runs_out() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.advance_pinging(secs(61), &[t]);
    assert_eq!(h.take_closes(), [(p, CloseReason::HeartbeatTimeout)]);
    assert_eq!(h.types(t), ["peer_left"]);
}

#[test]
fn any_frame_counts_as_a_sign_of_life() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    for _ in 0..5 {
        h.advance(secs(20));
        // Not a valid message, but the connection is alive.
        h.send_raw(p, "{}");
    }
    assert!(h.take_closes().is_empty());
}

#[test]
fn pinging_clients_are_never_closed() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.advance_pinging(secs(600), &[t, p]);
    assert!(h.take_closes().is_empty());
    h.send(t, &ClientMessage::IceRestart {});
    assert_eq!(h.types(p), ["ice_restart"]);
}

#[test]
fn the_timeout_is_configurable() {
    let mut h = Harness::with_config(Config {
        heartbeat_timeout: secs(5),
        ..Config::default()
    });
    let p = h.join(Role::Patient);
    h.advance(secs(5));
    assert_eq!(h.take_closes(), [(p, CloseReason::HeartbeatTimeout)]);
}

#[test]
fn a_closed_connection_without_disconnect_is_forgotten() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    h.advance(secs(30));
    assert_eq!(h.take_closes(), [(p, CloseReason::HeartbeatTimeout)]);
    // The pump never reports the disconnect; the core still cleans up.
    h.advance(secs(60));
    assert_eq!(h.hub.connection_count(), 0);
    assert!(h.room().is_none());
}
