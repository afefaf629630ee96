//! Two-way media: established once per call, on evidence the rules accept
//! (`konsult_domain::evidence`): consistent client reports over the minimum
//! span, or media the relay observed. Committed before anyone hears of it.

mod common;

use common::*;
use konsult_domain::EvidenceRules;
use konsult_protocol::{CandidateType, ClientMessage, ConnectionState, Role, ServerBody, Stats};
use konsult_signal::{CallEvent, Config, Evidence, EvidencePolicy, ObservedFlow};
use std::time::Duration;

const RULES: EvidenceRules = EvidenceRules {
    min_span: Duration::from_secs(10),
    min_packets: 50,
};

fn harness() -> Harness {
    Harness::with_config(Config {
        evidence: RULES,
        ..Config::default()
    })
}

fn stats(bytes: u64, frames: u64, audio: u64) -> ClientMessage {
    ClientMessage::Stats(Stats {
        connection_state: ConnectionState::Connected,
        selected_candidate_type: Some(CandidateType::Relay),
        bytes_received: bytes,
        frames_received: frames,
        audio_packets_received: audio,
        bytes_sent: None,
    })
}

fn flow(packets: u64, span_s: u64) -> ObservedFlow {
    ObservedFlow {
        packets,
        bytes: packets * 1000,
        span: Duration::from_secs(span_s),
    }
}

/// Both sides report growing counters every 2 s for `secs`.
fn report_for(h: &mut Harness, t: konsult_signal::ConnId, p: konsult_signal::ConnId, secs: u64) {
    report_from(h, t, p, 1, secs);
}

/// Like [`report_for`], continuing a series at report `from`.
fn report_from(
    h: &mut Harness,
    t: konsult_signal::ConnId,
    p: konsult_signal::ConnId,
    from: u64,
    secs: u64,
) {
    for i in from..from + secs / 2 {
        h.send(t, &stats(i * 10_000, i * 30, i * 100));
        h.send(p, &stats(i * 9_000, i * 30, i * 100));
        h.advance_pinging(Duration::from_secs(2), &[]);
    }
}

#[test]
fn established_once_when_both_sides_receive_media_for_the_minimum_span() {
    let mut h = harness();
    let (t, p) = h.admitted_pair();
    h.send(t, &stats(5_000, 30, 100));
    h.send(t, &stats(9_000, 60, 200));
    h.send(p, &stats(4_000, 0, 80));
    assert!(
        h.take(t).is_empty() && h.take(p).is_empty(),
        "a moment of media is not a conversation"
    );
    assert!(h.take_events().is_empty());
    assert!(!h.room().unwrap().two_way_established);

    report_for(&mut h, t, p, 12);
    assert_eq!(h.take_one(t).body, ServerBody::MediaEstablished {});
    assert_eq!(h.take_one(p).body, ServerBody::MediaEstablished {});
    assert_eq!(
        h.take_events(),
        [CallEvent::TwoWayEstablished {
            evidence: Evidence::ClientReported
        }]
    );
    assert!(h.room().unwrap().two_way_established);

    report_for(&mut h, t, p, 4);
    assert!(h.take(t).is_empty() && h.take(p).is_empty(), "only once");
    assert!(h.take_events().is_empty());
}

#[test]
fn empty_or_unconnected_stats_are_no_evidence() {
    let mut h = harness();
    let (t, p) = h.admitted_pair();
    for _ in 0..10 {
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
                bytes_sent: None,
            }),
        );
        h.advance_pinging(Duration::from_secs(2), &[]);
    }
    assert!(h.take_events().is_empty());
    assert!(h.take(t).is_empty());
}

#[test]
fn a_receiver_that_claims_more_than_was_sent_is_no_evidence() {
    let mut h = harness();
    let (t, p) = h.admitted_pair();
    for i in 1..=8 {
        let sent = ClientMessage::Stats(Stats {
            bytes_sent: Some(i * 1_000),
            ..match stats(i * 10_000, i * 30, i * 100) {
                ClientMessage::Stats(s) => s,
                _ => unreachable!(),
            }
        });
        h.send(t, &sent);
        h.send(p, &stats(i * 5_000_000, i * 30, i * 100));
        h.advance_pinging(Duration::from_secs(2), &[]);
    }
    assert!(h.take_events().is_empty(), "p received 40 MB of 8 kB");
}

#[test]
fn a_new_call_needs_new_evidence() {
    let mut h = harness();
    let (t, p) = h.admitted_pair();
    report_for(&mut h, t, p, 12);
    assert_eq!(h.take_events().len(), 1);
    h.send(p, &ClientMessage::Leave {});
    let p2 = h.join(Role::Patient);
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    h.take_events();
    h.take(t);
    report_for(&mut h, t, p2, 6);
    assert!(
        h.take_events().is_empty(),
        "six seconds of this call are not enough"
    );
    report_from(&mut h, t, p2, 4, 8);
    assert_eq!(
        h.take_events(),
        [CallEvent::TwoWayEstablished {
            evidence: Evidence::ClientReported
        }]
    );
}

#[test]
fn established_is_replayed_to_a_resuming_side() {
    let mut h = harness();
    let (t, p) = h.admitted_pair();
    report_for(&mut h, t, p, 10);
    h.take(p);
    let resume = h.resume_for(p);
    h.disconnect(p);
    h.send(t, &stats(500_000, 900, 900));
    h.send(t, &stats(600_000, 1000, 1000));
    h.advance_pinging(Duration::from_secs(2), &[t]);
    // The patient's last report before the drop plus the therapist's are
    // enough: the patient hears of it on resume.
    h.send(t, &stats(700_000, 1100, 1100));
    let established = h.room().unwrap().two_way_established;
    let p2 = h.join_resume(Role::Patient, resume);
    let types = h.types(p2);
    assert_eq!(types[0], "welcome");
    assert_eq!(
        types.contains(&"media_established"),
        established,
        "{types:?}"
    );
}

#[test]
fn relay_observed_media_establishes_and_upgrades_client_evidence() {
    let mut h = harness();
    let (t, p) = h.admitted_pair();
    h.relay_media(flow(40, 12), flow(500, 12));
    assert!(h.take_events().is_empty(), "too few packets one way");
    report_for(&mut h, t, p, 12);
    assert_eq!(
        h.take_events(),
        [CallEvent::TwoWayEstablished {
            evidence: Evidence::ClientReported
        }]
    );
    h.take(t);
    h.take(p);
    assert_eq!(h.hub.rooms_awaiting_relay_evidence(), [CONSULTATION]);
    h.relay_media(flow(600, 12), flow(500, 12));
    h.commit_all();
    assert_eq!(
        h.take_events(),
        [CallEvent::TwoWayEstablished {
            evidence: Evidence::RelayObserved
        }]
    );
    assert!(h.take(t).is_empty(), "media_established once per call");
    assert!(h.hub.rooms_awaiting_relay_evidence().is_empty());
    assert_eq!(h.room().unwrap().evidence, Some(Evidence::RelayObserved));
}

#[test]
fn under_the_relay_policy_stats_alone_never_establish() {
    let mut h = harness();
    h.evidence_policy = EvidencePolicy::RelayObserved;
    let (t, p) = h.admitted_pair();
    report_for(&mut h, t, p, 40);
    assert!(h.take_events().is_empty(), "scripted stats are no evidence");
    assert!(h.take(t).is_empty());
    h.relay_media(flow(600, 12), flow(500, 12));
    h.commit_all();
    assert_eq!(
        h.take_events(),
        [CallEvent::TwoWayEstablished {
            evidence: Evidence::RelayObserved
        }]
    );
    assert_eq!(h.types(t), ["media_established"]);
    assert_eq!(h.types(p), ["media_established"]);
}
