//! Protocol version 2: participants by id. A room of a therapist and
//! several patients: each is admitted on its own, sees only what it may
//! (a waiting patient sees no other patient), negotiates with each partner
//! by `to` and `from`, and has its own two-way evidence. Version 1 clients
//! keep their two-participant room.

mod common;

use common::*;
use konsult_protocol::{
    ErrorCode, ParticipantInfo, ParticipantState, Role, ServerBody, ServerMessage,
    PROTOCOL_VERSION, PROTOCOL_VERSION_2,
};
use konsult_signal::{CallEvent, ConnId, Evidence};
use serde_json::json;
use uuid::Uuid;

const V2: u32 = PROTOCOL_VERSION_2;

fn therapist() -> Uuid {
    participant_id(Role::Therapist)
}

/// Two patients' ids, the first smaller than the second.
fn patients() -> (Uuid, Uuid) {
    (Uuid::from_u128(0xa1), Uuid::from_u128(0xb2))
}

fn joined(m: &ServerMessage) -> ParticipantInfo {
    match &m.body {
        ServerBody::ParticipantJoined { participant } => *participant,
        other => panic!("expected participant_joined, got {other:?}"),
    }
}

fn left(m: &ServerMessage) -> Uuid {
    match &m.body {
        ServerBody::ParticipantLeft { participant } => *participant,
        other => panic!("expected participant_left, got {other:?}"),
    }
}

fn error_code(m: &ServerMessage) -> ErrorCode {
    match &m.body {
        ServerBody::Error(e) => e.code,
        other => panic!("expected error, got {other:?}"),
    }
}

/// Therapist `to`-admits `patient` and the check passes.
fn admit(h: &mut Harness, t: ConnId, patient: Uuid) {
    h.send_json(t, json!({"type": "admit", "to": patient}));
    h.answer_check(Ok(()));
}

/// A version 2 group: therapist and two waiting patients, messages read.
fn group(h: &mut Harness) -> (ConnId, ConnId, ConnId) {
    let (a, b) = patients();
    let t = h.join_as(Role::Therapist, therapist(), V2);
    let pa = h.join_as(Role::Patient, a, V2);
    let pb = h.join_as(Role::Patient, b, V2);
    for c in [t, pa, pb] {
        h.take(c);
    }
    (t, pa, pb)
}

#[test]
fn the_therapist_sees_everyone_waiting_and_a_patient_only_the_therapist() {
    let mut h = Harness::new();
    let (a, b) = patients();
    let t = h.join_as(Role::Therapist, therapist(), V2);
    let welcome = h.take_one(t);
    let ServerBody::Welcome(w) = welcome.body else {
        panic!("{welcome:?}")
    };
    assert_eq!(w.version, V2);
    assert_eq!(w.participant, Some(therapist()));
    assert_eq!(w.participants, Some(vec![]));

    let pa = h.join_as(Role::Patient, a, V2);
    let pb = h.join_as(Role::Patient, b, V2);
    let to_therapist = h.take(t);
    let waiting: Vec<_> = to_therapist.iter().map(joined).collect();
    assert_eq!(
        waiting.iter().map(|p| (p.id, p.state)).collect::<Vec<_>>(),
        [
            (a, ParticipantState::Waiting),
            (b, ParticipantState::Waiting)
        ]
    );
    assert!(waiting.iter().all(|p| !p.polite && p.role == Role::Patient));

    // The second patient's welcome names the therapist only, not the
    // other patient waiting.
    let msgs = h.take(pb);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!("{msgs:?}")
    };
    let roster: Vec<_> = w.participants.clone().unwrap();
    assert_eq!(roster.len(), 1);
    assert_eq!(
        (roster[0].id, roster[0].role),
        (therapist(), Role::Therapist)
    );
    assert!(roster[0].polite, "a patient is polite to the therapist");
    assert_eq!(msgs[1].body.type_name(), "waiting");
    assert!(h.types(pa).iter().all(|t| *t != "participant_joined"));
}

#[test]
fn patients_are_admitted_one_by_one_and_meet_in_the_call() {
    let mut h = Harness::new();
    let (a, b) = patients();
    let (t, pa, pb) = group(&mut h);

    admit(&mut h, t, a);
    let to_a = h.take(pa);
    assert_eq!(to_a[0].body.type_name(), "admitted");
    assert_eq!(joined(&to_a[1]).id, therapist());
    assert_eq!(joined(&to_a[1]).state, ParticipantState::Admitted);
    assert_eq!(to_a.len(), 2, "the waiting patient is not shown");
    let to_t = h.take(t);
    assert_eq!(
        (joined(&to_t[0]).id, joined(&to_t[0]).state),
        (a, ParticipantState::Admitted)
    );
    assert!(h.take(pb).is_empty(), "the other patient hears nothing");
    assert_eq!(h.room().unwrap().participants.len(), 3);

    admit(&mut h, t, b);
    let to_b = h.take(pb);
    assert_eq!(to_b[0].body.type_name(), "admitted");
    let met: Vec<_> = to_b[1..].iter().map(joined).collect();
    assert_eq!(
        met.iter().map(|p| p.id).collect::<Vec<_>>(),
        [therapist(), a]
    );
    // Of two patients the one with the greater id is polite.
    assert!(met[1].polite, "b > a: b is polite towards a");
    let to_a = h.take(pa);
    assert_eq!(joined(&to_a[0]).id, b);
    assert!(!joined(&to_a[0]).polite);
    assert_eq!(joined(&h.take_one(t)).id, b);
    assert_eq!(
        h.take_events()
            .iter()
            .filter(|e| **e == CallEvent::Admitted)
            .count(),
        2
    );
}

#[test]
fn negotiation_goes_to_the_named_participant_with_the_senders_id() {
    let mut h = Harness::new();
    let (a, b) = patients();
    let (t, pa, pb) = group(&mut h);
    admit(&mut h, t, a);
    for c in [t, pa, pb] {
        h.take(c);
    }
    // A patient still waiting cannot be negotiated with.
    h.send_json(pa, json!({"type": "ice_restart", "to": b}));
    assert_eq!(error_code(&h.take_one(pa)), ErrorCode::WrongState);
    assert!(h.take(pb).is_empty());

    admit(&mut h, t, b);
    for c in [t, pa, pb] {
        h.take(c);
    }
    h.send_json(pa, json!({"type": "ice_restart", "to": b}));
    let m = h.take_one(pb);
    assert_eq!((m.body.type_name(), m.sender), ("ice_restart", Some(a)));
    assert!(h.take(t).is_empty(), "only the named participant hears it");

    h.send_json(pb, json!({"type": "ice_restart", "to": therapist()}));
    let m = h.take_one(t);
    assert_eq!(m.sender, Some(b));

    // Version 2 must say whom a negotiation message is for.
    h.send_json(pa, json!({"type": "ice_restart"}));
    assert_eq!(error_code(&h.take_one(pa)), ErrorCode::InvalidFields);
    // Nobody by that id is in the call.
    h.send_json(pa, json!({"type": "ice_restart", "to": Uuid::from_u128(9)}));
    assert_eq!(error_code(&h.take_one(pa)), ErrorCode::WrongState);

    // Chat goes to everyone in the call, with the sender's id.
    h.send_json(t, json!({"type": "chat", "text": "Hej begge"}));
    for p in [pa, pb] {
        let m = h.take_one(p);
        assert_eq!((m.body.type_name(), m.sender), ("chat", Some(therapist())));
    }
}

#[test]
fn two_way_media_is_established_per_patient() {
    let mut h = Harness::with_config(konsult_signal::Config {
        evidence: konsult_domain::EvidenceRules {
            min_span: std::time::Duration::from_secs(10),
            min_packets: 50,
        },
        ..konsult_signal::Config::default()
    });
    let (a, b) = patients();
    let (t, pa, pb) = group(&mut h);
    admit(&mut h, t, a);
    admit(&mut h, t, b);
    for c in [t, pa, pb] {
        h.take(c);
    }
    h.take_events();
    // Growing counters every 2 s, as a browser's getStats gives them.
    let flowing = |i: u64, to: Uuid| {
        json!({
            "type": "stats",
            "to": to,
            "connection_state": "connected",
            "bytes_received": i * 10_000,
            "frames_received": i * 30,
            "audio_packets_received": i * 100,
        })
    };
    for i in 1..=10 {
        h.send_json(t, flowing(i, a));
        h.send_json(pa, flowing(i, therapist()));
        // What b says of a is no evidence of anything.
        h.send_json(pb, flowing(i, a));
        h.advance_pinging(std::time::Duration::from_secs(2), &[t, pa, pb]);
    }
    assert_eq!(
        h.take_events(),
        [CallEvent::TwoWayEstablished {
            evidence: Evidence::ClientReported
        }]
    );
    let room = h.room().unwrap();
    let evidence = |id| {
        room.participants
            .iter()
            .find(|p| p.id == id)
            .unwrap()
            .evidence
    };
    assert_eq!(evidence(a), Some(Evidence::ClientReported));
    assert_eq!(evidence(b), None, "b's media was never shown");
    let to_t: Vec<_> = h.take(t);
    let established: Vec<_> = to_t
        .iter()
        .filter(|m| m.body.type_name() == "media_established")
        .map(|m| m.sender)
        .collect();
    assert_eq!(established, [Some(a)]);
    let to_a: Vec<_> = h.take(pa);
    assert!(to_a
        .iter()
        .any(|m| m.body.type_name() == "media_established" && m.sender == Some(therapist())));
    assert!(h
        .take(pb)
        .iter()
        .all(|m| m.body.type_name() != "media_established"));
}

#[test]
fn a_patient_who_leaves_is_gone_for_everyone_and_the_others_stay() {
    let mut h = Harness::new();
    let (a, b) = patients();
    let (t, pa, pb) = group(&mut h);
    admit(&mut h, t, a);
    admit(&mut h, t, b);
    for c in [t, pa, pb] {
        h.take(c);
    }
    h.send_json(pa, json!({"type": "leave"}));
    assert_eq!(left(&h.take_one(t)), a);
    assert_eq!(left(&h.take_one(pb)), a);
    let room = h.room().unwrap();
    assert_eq!(room.participants.len(), 2);
    // b's call goes on.
    h.send_json(pb, json!({"type": "ice_restart", "to": therapist()}));
    assert_eq!(h.take_one(t).sender, Some(b));
}

#[test]
fn a_therapist_gone_past_grace_sends_every_patient_back_to_waiting() {
    let mut h = Harness::new();
    let (a, b) = patients();
    let (t, pa, pb) = group(&mut h);
    admit(&mut h, t, a);
    admit(&mut h, t, b);
    for c in [t, pa, pb] {
        h.take(c);
    }
    h.disconnect(t);
    h.advance_pinging(
        konsult_signal::Config::default().resume_grace + std::time::Duration::from_secs(1),
        &[pa, pb],
    );
    for p in [pa, pb] {
        let msgs = h.take(p);
        assert_eq!(left(&msgs[0]), therapist());
        assert_eq!(msgs[1].body.type_name(), "waiting");
    }
    let room = h.room().unwrap();
    assert!(room
        .participants
        .iter()
        .all(|p| p.admission == konsult_signal::AdmissionState::Waiting));
}

#[test]
fn version_1_keeps_its_room_of_two() {
    let (a, b) = patients();
    // A version 1 therapist: a second patient cannot join.
    let mut h = Harness::new();
    let t = h.join_as(Role::Therapist, therapist(), PROTOCOL_VERSION);
    h.join_as(Role::Patient, a, V2);
    h.take(t);
    let pb = h.join_as(Role::Patient, b, V2);
    assert_eq!(error_code(&h.take_one(pb)), ErrorCode::WrongState);
    assert_eq!(h.room().unwrap().participants.len(), 2);

    // A version 1 patient cannot join a room of two patients.
    let mut h = Harness::new();
    h.join_as(Role::Therapist, therapist(), V2);
    h.join_as(Role::Patient, a, V2);
    let pb = h.join_as(Role::Patient, b, PROTOCOL_VERSION);
    assert_eq!(error_code(&h.take_one(pb)), ErrorCode::VersionMismatch);

    // Version 1 never names a participant.
    let mut h = Harness::new();
    let (t, _) = h.admitted_pair();
    h.send_json(t, json!({"type": "ice_restart", "to": a}));
    assert_eq!(error_code(&h.take_one(t)), ErrorCode::InvalidFields);
}

#[test]
fn a_version_2_pair_works_with_a_version_1_partner() {
    let mut h = Harness::new();
    let (a, _) = patients();
    let t = h.join_as(Role::Therapist, therapist(), V2);
    let pa = h.join_as(Role::Patient, a, PROTOCOL_VERSION);
    h.take(pa);
    assert_eq!(joined(&h.take(t)[1]).id, a);
    admit(&mut h, t, a);
    assert_eq!(h.types(pa), ["admitted", "peer_joined"]);
    assert_eq!(joined(&h.take_one(t)).state, ParticipantState::Admitted);
    // The version 1 side says nothing of whom; the version 2 side does.
    h.send_json(pa, json!({"type": "ice_restart"}));
    assert_eq!(h.take_one(t).sender, Some(a));
    h.send_json(t, json!({"type": "ice_restart", "to": a}));
    let m = h.take_one(pa);
    assert_eq!((m.body.type_name(), m.sender), ("ice_restart", None));
}
