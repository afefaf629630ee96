//! Relay-only consultations: no host, srflx, prflx or mDNS candidate and no
//! client address ever reaches the peer, whatever the client sends.

mod common;

use common::*;
use konsult_protocol::{
    CandidateLine, CandidatePolicy, ClientMessage, IceCandidate, Role, ServerBody,
};
use serde_json::json;

const HOST: &str = "candidate:842163049 1 udp 1677729535 192.168.1.20 54321 typ host generation 0 ufrag EEtu network-id 1";
const SRFLX: &str = "candidate:3471623853 1 udp 2122260223 198.51.100.9 61665 typ srflx raddr 192.168.1.20 rport 54321 generation 0";
const PRFLX: &str = "candidate:3 1 udp 1845501695 10.1.2.3 40000 typ prflx raddr 0.0.0.0 rport 0";
const MDNS: &str = "candidate:1 1 udp 2122260223 3f2a6c1e-1d2b-4c5e-9a7b-0c1d2e3f4a5b.local 60000 typ host generation 0";
const RELAY: &str = "candidate:1853887674 1 udp 33562367 203.0.113.5 50000 typ relay raddr 198.51.100.9 rport 61665 generation 0";
/// The patient's own socket announced as a relay candidate.
const OWN_AS_RELAY: &str =
    "candidate:7 1 udp 33562367 198.51.100.9 61665 typ relay raddr 192.168.1.20 rport 54321";
const LEAKS: [&str; 7] = [
    "192.168.1.20",
    "198.51.100.9",
    "10.1.2.3",
    ".local",
    "typ host",
    "54321",
    "54322",
];

fn offer_sdp(eol: &str) -> String {
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 192.168.1.20",
        "s=-",
        "t=0 0",
        "m=audio 54321 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 198.51.100.9",
        "a=rtcp:54322 IN IP4 198.51.100.9",
        &format!("a={HOST}"),
        &format!("a={SRFLX}"),
        &format!("a={PRFLX}"),
        &format!("a={MDNS}"),
        &format!("a={OWN_AS_RELAY}"),
        &format!("a={RELAY}"),
        "a=end-of-candidates",
        "a=mid:0",
        "",
    ]
    .join(eol)
}

fn candidate(line: &str) -> ClientMessage {
    ClientMessage::Candidate(IceCandidate {
        candidate: CandidateLine::parse(line.to_string()).unwrap(),
        sdp_mid: Some(konsult_protocol::Mid::parse("0".into()).unwrap()),
        sdp_m_line_index: Some(0),
        username_fragment: None,
    })
}

#[test]
fn welcome_announces_relay_only() {
    let mut h = Harness::relay_only();
    let p = h.join(Role::Patient);
    let ServerBody::Welcome(w) = &h.take(p)[0].body else {
        panic!()
    };
    assert_eq!(w.candidate_policy, CandidatePolicy::RelayOnly);
}

#[test]
fn sdp_in_offer_and_answer_keeps_only_relay_candidates() {
    for eol in ["\r\n", "\n"] {
        let mut h = Harness::relay_only();
        let (t, p) = h.admitted_pair();
        h.send(
            t,
            &ClientMessage::Offer {
                sdp: sdp(&offer_sdp(eol)),
            },
        );
        let ServerBody::Offer { sdp: got } = h.take_one(p).body else {
            panic!()
        };
        h.send(
            p,
            &ClientMessage::Answer {
                sdp: sdp(&offer_sdp(eol)),
            },
        );
        let ServerBody::Answer { sdp: got_answer } = h.take_one(t).body else {
            panic!()
        };
        for out in [got.as_str(), got_answer.as_str()] {
            for leak in LEAKS {
                assert!(!out.contains(leak), "{leak} leaked through:\n{out}");
            }
            assert!(out.contains("203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0"));
            assert!(out.contains("a=end-of-candidates"));
            assert!(out.contains("a=mid:0"));
            assert_eq!(out.matches("a=candidate:").count(), 1);
            assert_eq!(out.contains('\r'), eol == "\r\n");
        }
    }
}

#[test]
fn a_relay_handed_to_a_participant_counts_as_a_relay_of_its_room() {
    // In a cluster each participant gets its own node's relay, which the
    // room's node is not configured with: that relay's candidates pass,
    // in this room only; a relay nobody was handed still does not.
    let patients_relay =
        "candidate:9 1 udp 33562367 198.51.100.77 50000 typ relay raddr 0.0.0.0 rport 0 generation 0";
    let nobodys_relay =
        "candidate:9 1 udp 33562367 198.51.100.78 50000 typ relay raddr 0.0.0.0 rport 0 generation 0";
    let mut h = Harness::relay_only();
    h.turn_urls.insert(
        Role::Patient,
        vec!["turn:198.51.100.77:3478?transport=udp".into()],
    );
    let (t, p) = h.admitted_pair();
    h.send(p, &candidate(patients_relay));
    let ServerBody::Candidate(c) = h.take_one(t).body else {
        panic!()
    };
    assert_eq!(c.candidate.as_str(), patients_relay);
    h.send(p, &candidate(nobodys_relay));
    h.send(t, &candidate(nobodys_relay));
    assert!(h.take(t).is_empty() && h.take(p).is_empty());

    let mut other = Harness::relay_only();
    other.consultation = uuid::Uuid::new_v4();
    let (t, p) = other.admitted_pair();
    other.send(p, &candidate(patients_relay));
    assert!(other.take(t).is_empty(), "another room was not handed it");
}

#[test]
fn trickled_non_relay_candidates_are_dropped_silently() {
    let mut h = Harness::relay_only();
    let (t, p) = h.admitted_pair();
    for line in [HOST, SRFLX, PRFLX, MDNS, OWN_AS_RELAY] {
        h.send(t, &candidate(line));
        h.send(t, &candidate(&format!("a={line}")));
    }
    assert!(h.take(p).is_empty(), "nothing relayed");
    assert!(
        h.take(t).is_empty(),
        "and no error: an honest browser may gather them"
    );

    h.send(t, &candidate(RELAY));
    let ServerBody::Candidate(c) = h.take_one(p).body else {
        panic!()
    };
    assert_eq!(
        c.candidate.as_str(),
        "candidate:1853887674 1 udp 33562367 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0 generation 0"
    );
    assert_eq!(c.sdp_m_line_index, Some(0));
}

#[test]
fn garbage_candidates_are_dropped_in_relay_only() {
    let mut h = Harness::relay_only();
    let (t, p) = h.admitted_pair();
    h.send_json(
        t,
        json!({"type": "candidate", "candidate": "candidate:x y z 192.168.1.20 typ relay"}),
    );
    assert!(h.take(p).is_empty());
}

#[test]
fn the_stricter_policy_wins() {
    let mut h = Harness::new();
    let t = h.join_full(Role::Therapist, CandidatePolicy::All, None);
    let p = h.join_full(Role::Patient, CandidatePolicy::RelayOnly, None);
    assert_eq!(
        h.room().unwrap().candidate_policy,
        CandidatePolicy::RelayOnly
    );
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    h.take(p);
    h.send(t, &candidate(HOST));
    assert!(h.take(p).is_empty());
}

#[test]
fn policy_all_passes_everything_unchanged() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let original = offer_sdp("\r\n");
    h.send(
        t,
        &ClientMessage::Offer {
            sdp: sdp(&original),
        },
    );
    let ServerBody::Offer { sdp: got } = h.take_one(p).body else {
        panic!()
    };
    assert_eq!(got.as_str(), original);
    h.send(t, &candidate(HOST));
    let ServerBody::Candidate(c) = h.take_one(p).body else {
        panic!()
    };
    assert_eq!(c.candidate.as_str(), HOST);
}
