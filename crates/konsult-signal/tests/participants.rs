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

/// A restart takes each patient back where it stood: the admitted one in
/// the call with its evidence, the waiting one still waiting.
#[test]
fn a_restart_keeps_each_patients_admission() {
    let mut h = Harness::new();
    let (a, b) = patients();
    let (t, _, _) = group(&mut h);
    admit(&mut h, t, a);
    let record = h.saved.clone().expect("the room was saved");
    h.hub = konsult_signal::Hub::new(konsult_signal::Config::default());
    h.hub
        .restore(h.now, CONSULTATION, &record, h.context.clone())
        .unwrap();
    let room = h.room().unwrap();
    let admission = |id| {
        room.participants
            .iter()
            .find(|p| p.id == id)
            .unwrap()
            .admission
    };
    assert_eq!(admission(a), konsult_signal::AdmissionState::Admitted);
    assert_eq!(admission(b), konsult_signal::AdmissionState::Waiting);
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

mod random_groups {
    //! Property test: random sessions of a therapist and three patients,
    //! all speaking version 2 (joins and resumes, messages to random
    //! participants, drops, admission answers, commits held back, clock
    //! steps). Whatever happens: nothing is sent after a close and sequence
    //! numbers grow; nobody hears of an admission, two-way media or the end
    //! before its write is committed; a patient never learns of another
    //! patient who waits; negotiation and chat reach a participant only
    //! from one it was told is in the call with it, and a patient only while
    //! it is in the call; and in the end the hub is empty.

    use super::*;
    use konsult_protocol::{ByeReason, Resume};
    use konsult_signal::{Output, WriteId};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    /// Participant 0 is the therapist; 1 to 3 are patients.
    const PEOPLE: usize = 4;

    fn id(who: usize) -> Uuid {
        if who == 0 {
            therapist()
        } else {
            Uuid::from_u128(0xa0 + who as u128)
        }
    }

    #[derive(Debug, Clone)]
    enum Act {
        Join { who: usize, resume: bool },
        Msg { who: usize, kind: u8, to: usize },
        Disconnect { who: usize },
        Advance { millis: u32 },
        Check { ok: bool },
        Commit { writes: u8 },
        Relay,
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            3 => (0..PEOPLE, any::<bool>()).prop_map(|(who, resume)| Act::Join { who, resume }),
            12 => (0..PEOPLE, kind(), 0..PEOPLE).prop_map(|(who, kind, to)| Act::Msg { who, kind, to }),
            1 => (0..PEOPLE).prop_map(|who| Act::Disconnect { who }),
            3 => (0u32..3_000).prop_map(|millis| Act::Advance { millis }),
            1 => (0u32..40_000).prop_map(|millis| Act::Advance { millis }),
            3 => prop_oneof![4 => Just(true), 1 => Just(false)].prop_map(|ok| Act::Check { ok }),
            4 => (1u8..4).prop_map(|writes| Act::Commit { writes }),
            1 => Just(Act::Relay),
        ]
    }

    /// Message kinds of [`message`], admissions and negotiation often,
    /// leaving seldom (it ends a participant's part).
    fn kind() -> impl Strategy<Value = u8> {
        prop_oneof![
            6 => Just(0u8),
            1 => Just(1u8),
            3 => 2u8..6,
            2 => Just(6u8),
            2 => Just(7u8),
            1 => Just(8u8),
            1 => Just(9u8),
        ]
    }

    fn message(kind: u8, to: Uuid, step: u64) -> serde_json::Value {
        match kind {
            0 => json!({"type": "admit", "to": to}),
            1 => json!({"type": "deny", "to": to}),
            2 => json!({"type": "offer", "sdp": "v=0\r\n", "to": to}),
            3 => json!({"type": "answer", "sdp": "v=0\r\n", "to": to}),
            4 => {
                json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 203.0.113.1 5 typ relay", "to": to})
            }
            5 => json!({"type": "ice_restart", "to": to}),
            6 => {
                json!({"type": "stats", "connection_state": "connected", "bytes_received": 10 + step * 1000,
                        "frames_received": 1 + step, "audio_packets_received": 1, "to": to})
            }
            7 => json!({"type": "chat", "text": "hej"}),
            8 => json!({"type": "leave"}),
            _ => json!({"type": "ping"}),
        }
    }

    /// What a connection's own stream has told it.
    #[derive(Debug, Clone, Default)]
    struct View {
        /// A patient: admitted (in the call).
        in_call: bool,
        /// Participants it was told are in the call with it.
        partners: BTreeSet<Uuid>,
    }

    #[derive(Default)]
    struct Checker {
        who: BTreeMap<ConnId, usize>,
        views: BTreeMap<ConnId, View>,
        /// Each participant's latest connection that got a welcome.
        latest: BTreeMap<usize, ConnId>,
        closed: BTreeSet<ConnId>,
        last_seq: BTreeMap<ConnId, u64>,
        seen: usize,
        unacked: BTreeMap<WriteId, Vec<CallEvent>>,
        committed: BTreeSet<&'static str>,
        /// The connection whose resumed welcome was the last output: the
        /// messages to it that follow directly are replays of what was
        /// released before (possibly while it was away), which a later
        /// durable write of another patient does not hold back.
        replaying: Option<ConnId>,
        /// Whether the message being checked is such a replay.
        replay: bool,
    }

    impl Checker {
        fn announced(&self, code: &str, what: &str) -> Result<(), TestCaseError> {
            let pending = self.unacked.values().flatten().any(|e| e.code() == code);
            prop_assert!(
                self.replay || !pending,
                "{what} sent before {code} was committed"
            );
            prop_assert!(
                self.committed.contains(code),
                "{what} sent without a committed {code}"
            );
            Ok(())
        }

        fn check(&mut self, h: &Harness) -> Result<(), TestCaseError> {
            for output in &h.log[self.seen..] {
                self.replay =
                    matches!(output, Output::Send { conn, .. } if self.replaying == Some(*conn));
                if !self.replay {
                    self.replaying = None;
                }
                match output {
                    Output::Send { conn, message } => {
                        prop_assert!(!self.closed.contains(conn), "send after close to {conn}");
                        if message.seq > 0 {
                            let last = self.last_seq.entry(*conn).or_insert(0);
                            prop_assert!(message.seq > *last, "seq went back on {conn}");
                            *last = message.seq;
                        }
                        let who = self.who[conn];
                        let patient = who != 0;
                        if let ServerBody::Welcome(w) = &message.body {
                            // A resumed connection continues its
                            // participant's stream.
                            let carried = match self.latest.get(&who) {
                                Some(previous) if w.resumed => self.views[previous].clone(),
                                _ => View::default(),
                            };
                            self.views.insert(*conn, carried);
                            if w.resumed {
                                self.replaying = Some(*conn);
                            }
                            self.latest.insert(who, *conn);
                            if patient {
                                for p in w.participants.iter().flatten() {
                                    prop_assert!(
                                        p.role == Role::Therapist
                                            || p.state == ParticipantState::Admitted,
                                        "a patient's roster shows a waiting patient"
                                    );
                                }
                            }
                            continue;
                        }
                        let view = self.views.entry(*conn).or_default();
                        match &message.body {
                            ServerBody::Admitted {} => {
                                self.announced("admitted", "admitted")?;
                                self.views.get_mut(conn).unwrap().in_call = true;
                            }
                            ServerBody::Waiting {}
                            | ServerBody::Denied(_)
                            | ServerBody::Bye { .. } => {
                                // `waiting` ends every peer connection.
                                *view = View::default();
                            }
                            ServerBody::ParticipantJoined { participant } => {
                                prop_assert_ne!(participant.id, id(who), "told about itself");
                                if patient {
                                    prop_assert!(
                                        participant.role == Role::Therapist
                                            || participant.state == ParticipantState::Admitted,
                                        "a patient learnt of a waiting patient"
                                    );
                                    prop_assert!(
                                        view.in_call,
                                        "a waiting patient learnt of someone joining"
                                    );
                                }
                                if participant.state == ParticipantState::Admitted {
                                    view.partners.insert(participant.id);
                                    self.announced("admitted", "participant_joined (admitted)")?;
                                } else {
                                    view.partners.remove(&participant.id);
                                }
                            }
                            ServerBody::ParticipantLeft { participant } => {
                                view.partners.remove(participant);
                            }
                            ServerBody::MediaEstablished {} => {
                                self.announced("two_way_established", "media_established")?;
                            }
                            body @ (ServerBody::Offer { .. }
                            | ServerBody::Answer { .. }
                            | ServerBody::Candidate(_)
                            | ServerBody::EndOfCandidates(_)
                            | ServerBody::IceRestart {}
                            | ServerBody::Chat { .. }) => {
                                let sender = message.sender;
                                prop_assert!(
                                    sender.is_some_and(|s| view.partners.contains(&s)),
                                    "{} from {sender:?}, not a partner of {who} ({:?})",
                                    body.type_name(),
                                    view.partners
                                );
                                if patient {
                                    prop_assert!(
                                        view.in_call,
                                        "{} to a patient not in the call",
                                        body.type_name()
                                    );
                                }
                            }
                            _ => {}
                        }
                        if let ServerBody::Bye {
                            reason: ByeReason::EndedByTherapist,
                        } = &message.body
                        {
                            self.announced("ended", "bye")?;
                        }
                    }
                    Output::Close { conn, .. } => {
                        self.closed.insert(*conn);
                    }
                    Output::Write { write, events, .. } => {
                        self.unacked.insert(*write, events.clone());
                    }
                    Output::AdmissionCheck { .. } | Output::RoomClosed { .. } => {}
                }
            }
            self.seen = h.log.len();
            Ok(())
        }
    }

    fn commit(h: &mut Harness, checker: &mut Checker) -> Result<(), TestCaseError> {
        let Some((_, write, events, _)) = h.pending_writes.front().cloned() else {
            return Ok(());
        };
        checker.check(h)?;
        checker.unacked.remove(&write);
        checker.committed.extend(events.iter().map(|e| e.code()));
        h.commit_next();
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_groups_keep_the_invariants(acts in prop::collection::vec(act(), 1..160)) {
            let mut h = Harness::with_config(konsult_signal::Config {
                evidence: konsult_domain::EvidenceRules {
                    min_span: Duration::from_secs(2),
                    min_packets: 10,
                },
                ..konsult_signal::Config::default()
            });
            h.hold_writes();
            let mut checker = Checker::default();
            let mut step = 0u64;
            // Everyone comes first; the acts take it from there.
            let start = (0..PEOPLE).map(|who| Act::Join { who, resume: false });
            for act in start.chain(acts) {
                match act {
                    Act::Join { who, resume } => {
                        let role = if who == 0 { Role::Therapist } else { Role::Patient };
                        let resume: Option<Resume> = resume
                            .then(|| checker.latest.get(&who).and_then(|&c| h.try_resume_for(c)))
                            .flatten();
                        let policy = h.policy;
                        let conn = h.join_with(role, id(who), V2, policy, resume);
                        // Checked below, after the join's messages.
                        checker.who.insert(conn, who);
                    }
                    Act::Msg { who, kind, to } => {
                        if let Some(&c) = checker.latest.get(&who) {
                            step += 1;
                            h.send_json(c, message(kind, id(to), step));
                        }
                    }
                    Act::Disconnect { who } => {
                        if let Some(&c) = checker.latest.get(&who) {
                            h.disconnect(c);
                        }
                    }
                    Act::Advance { millis } => h.advance(Duration::from_millis(millis.into())),
                    Act::Check { ok } => {
                        if !h.checks.is_empty() {
                            h.answer_check(if ok { Ok(()) } else { Err(vec!["assessment_revoked".into()]) });
                        }
                    }
                    Act::Commit { writes } => {
                        for _ in 0..writes {
                            commit(&mut h, &mut checker)?;
                        }
                    }
                    Act::Relay => {
                        let flow = konsult_signal::ObservedFlow { packets: 500, bytes: 450_000, span: Duration::from_secs(3) };
                        h.relay_media(flow, flow);
                    }
                }
                checker.check(&h)?;
            }
            for _ in 0..4 {
                while !h.pending_writes.is_empty() {
                    commit(&mut h, &mut checker)?;
                }
                h.advance(Duration::from_secs(120));
                checker.check(&h)?;
            }
            prop_assert!(h.pending_writes.is_empty());
            prop_assert!(h.room().is_none());
            prop_assert_eq!(h.hub.poll_timeout(), None);
        }
    }
}
