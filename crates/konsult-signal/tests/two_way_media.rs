//! Two-way media: when both sides report received media, the call is
//! established (once), the evidence billing needs.

mod common;

use common::*;
use konsult_protocol::{CandidateType, ClientMessage, ConnectionState, Role, ServerBody, Stats};
use konsult_signal::RoomEvent;

fn stats(bytes: u64, frames: u64, audio: u64) -> ClientMessage {
    ClientMessage::Stats(Stats {
        connection_state: ConnectionState::Connected,
        selected_candidate_type: Some(CandidateType::Relay),
        bytes_received: bytes,
        frames_received: frames,
        audio_packets_received: audio,
    })
}

#[test]
fn established_once_when_both_sides_receive_media() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.send(t, &stats(5_000, 30, 100));
    h.send(t, &stats(9_000, 60, 200));
    assert!(
        h.take(t).is_empty() && h.take(p).is_empty(),
        "one side is not enough"
    );
    assert!(h.take_events().is_empty());
    assert!(!h.room().unwrap().two_way_established);

    h.send(p, &stats(4_000, 0, 80));
    assert_eq!(h.take_one(t).body, ServerBody::MediaEstablished {});
    assert_eq!(h.take_one(p).body, ServerBody::MediaEstablished {});
    assert_eq!(h.take_events(), [RoomEvent::TwoWayEstablished]);
    assert!(h.room().unwrap().two_way_established);

    h.send(p, &stats(8_000, 10, 160));
    h.send(t, &stats(12_000, 90, 300));
    assert!(h.take(t).is_empty() && h.take(p).is_empty(), "only once");
    assert!(h.take_events().is_empty());
}

#[test]
fn empty_or_unconnected_stats_are_no_evidence() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.send(t, &stats(5_000, 30, 100));
    h.send(p, &stats(0, 0, 0));
    h.send(p, &stats(100, 0, 0));
    h.send(
        p,
        &ClientMessage::Stats(Stats {
            connection_state: ConnectionState::Connecting,
            selected_candidate_type: None,
            bytes_received: 100,
            frames_received: 5,
            audio_packets_received: 5,
        }),
    );
    assert!(h.take_events().is_empty());
    assert!(h.take(t).is_empty());
}

#[test]
fn a_new_call_needs_new_evidence() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.send(t, &stats(1, 1, 0));
    h.send(p, &stats(1, 1, 0));
    assert_eq!(h.take_events(), [RoomEvent::TwoWayEstablished]);
    h.send(p, &ClientMessage::Leave {});
    let p2 = h.join(Role::Patient);
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    h.take_events();
    h.take(t);
    h.send(p2, &stats(1, 1, 0));
    assert!(
        h.take_events().is_empty(),
        "the therapist has not reported yet in this call"
    );
    h.send(t, &stats(1, 1, 0));
    assert_eq!(h.take_events(), [RoomEvent::TwoWayEstablished]);
}

#[test]
fn established_is_replayed_to_a_resuming_side() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.send(p, &stats(1, 1, 1));
    let resume = h.resume_for(p);
    h.disconnect(p);
    h.send(t, &stats(1, 1, 1));
    let p2 = h.join_resume(Role::Patient, resume);
    assert_eq!(h.types(p2), ["welcome", "media_established"]);
}
