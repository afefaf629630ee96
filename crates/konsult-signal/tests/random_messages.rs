//! Property test: any sequence of joins, messages, garbage, drops, answers,
//! commits of the core's writes and clock steps never panics, never relays
//! to a patient who is not admitted, and keeps the pump contract (nothing
//! sent after a close, sequence numbers grow on every connection). Its
//! writes, applied in order to the domain's lifecycle as the store does, are
//! always accepted; nobody hears of an admission, two-way media or the end
//! before its write is committed; the call ends at most once; and when
//! everyone is gone the consultation is never left waiting or in its call.

mod common;

use common::*;
use konsult_domain::{CallEvent, CallFacts, ConsultationState};
use konsult_protocol::{ClientMessage, Resume, Role, ServerBody};
use konsult_signal::{ConnId, Output, WriteId};
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Clone)]
enum Act {
    Join { therapist: bool, resume: u8 },
    Msg { therapist: bool, kind: u8 },
    Disconnect { therapist: bool },
    Advance { millis: u32 },
    Check { ok: bool },
    Commit { writes: u8 },
    Relay { enough: bool },
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        2 => (any::<bool>(), 0u8..3).prop_map(|(therapist, resume)| Act::Join { therapist, resume }),
        8 => (any::<bool>(), 0u8..17).prop_map(|(therapist, kind)| Act::Msg { therapist, kind }),
        1 => any::<bool>().prop_map(|therapist| Act::Disconnect { therapist }),
        2 => (0u32..40_000).prop_map(|millis| Act::Advance { millis }),
        2 => any::<bool>().prop_map(|ok| Act::Check { ok }),
        3 => (1u8..4).prop_map(|writes| Act::Commit { writes }),
        1 => any::<bool>().prop_map(|enough| Act::Relay { enough }),
    ]
}

fn message(kind: u8, step: u64) -> String {
    let v = match kind {
        0 => json!({"type": "ping"}),
        1 => json!({"type": "admit"}),
        2 => json!({"type": "deny", "reason": "nej"}),
        3 => {
            json!({"type": "offer", "sdp": "v=0\r\na=candidate:1 1 udp 1 192.0.2.1 5 typ host\r\n"})
        }
        4 => json!({"type": "answer", "sdp": "v=0\r\n"}),
        5 => {
            json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 203.0.113.1 5 typ relay", "sdp_m_line_index": 0})
        }
        6 => {
            json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 192.168.0.1 5 typ host"})
        }
        7 => json!({"type": "end_of_candidates"}),
        8 => json!({"type": "ice_restart"}),
        9 => {
            json!({"type": "stats", "connection_state": "connected", "bytes_received": 10 + step * 1000,
                    "frames_received": 1 + step, "audio_packets_received": 1})
        }
        10 => json!({"type": "chat", "text": "hej"}),
        11 => json!({"type": "leave"}),
        12 => json!({"type": "hello", "version": 1, "auth": {"link_token": "x"}}),
        13 => return "{not json".to_string(),
        14 => json!({"type": "teleport"}),
        15 => json!({"type": "media_state", "audio": step % 2 == 0, "video": true}),
        _ => json!({"type": "offer", "sdp": 7}),
    };
    v.to_string()
}

/// Relay-type bodies: they may reach a patient only in the call.
fn is_call_content(body: &ServerBody) -> bool {
    matches!(
        body,
        ServerBody::Offer { .. }
            | ServerBody::Answer { .. }
            | ServerBody::Candidate(_)
            | ServerBody::EndOfCandidates(_)
            | ServerBody::IceRestart {}
            | ServerBody::Chat { .. }
            | ServerBody::MediaState { .. }
            | ServerBody::MediaEstablished {}
            | ServerBody::PeerJoined { .. }
    )
}

struct Checker {
    /// Each patient connection's admission, as its own message stream tells it.
    patient_in_call: BTreeMap<ConnId, bool>,
    /// The patient connection that got the latest welcome.
    latest_patient: Option<ConnId>,
    closed: BTreeSet<ConnId>,
    last_seq: BTreeMap<ConnId, u64>,
    seen: usize,
    /// Writes emitted and not yet committed, with their events.
    unacked: BTreeMap<WriteId, Vec<CallEvent>>,
    /// Events of committed writes, by code.
    committed: BTreeMap<&'static str, usize>,
}

impl Checker {
    /// Whether a write carrying `code` is still waiting for its commit.
    fn pending(&self, code: &str) -> bool {
        self.unacked.values().flatten().any(|e| e.code() == code)
    }

    /// Nobody hears of `code` before a write carrying it was committed, nor
    /// while one is still waiting.
    fn announced(&self, code: &str, what: &str) -> Result<(), TestCaseError> {
        prop_assert!(
            !self.pending(code),
            "{what} sent before {code} was committed"
        );
        prop_assert!(
            self.committed.get(code).copied().unwrap_or(0) > 0,
            "{what} sent without a committed {code}"
        );
        Ok(())
    }
}

impl Checker {
    fn check(&mut self, h: &Harness) -> Result<(), TestCaseError> {
        for output in &h.log[self.seen..] {
            match output {
                Output::Send { conn, message } => {
                    prop_assert!(!self.closed.contains(conn), "send after close to {conn}");
                    if message.seq > 0 {
                        let last = self.last_seq.entry(*conn).or_insert(0);
                        prop_assert!(message.seq > *last, "seq went back on {conn}");
                        *last = message.seq;
                    }
                    match &message.body {
                        ServerBody::Admitted {} => self.announced("admitted", "admitted")?,
                        ServerBody::PeerJoined { .. } => {
                            self.announced("admitted", "peer_joined")?
                        }
                        ServerBody::MediaEstablished {} => {
                            self.announced("two_way_established", "media_established")?
                        }
                        ServerBody::Bye {
                            reason: konsult_protocol::ByeReason::EndedByTherapist,
                        } => self.announced("ended", "bye")?,
                        _ => {}
                    }
                    if h.roles.get(conn) == Some(&Role::Patient) {
                        // A resumed connection continues its participant's
                        // stream: it starts where the latest one stood.
                        if let ServerBody::Welcome(w) = &message.body {
                            let carried = w.resumed
                                && self
                                    .latest_patient
                                    .is_some_and(|c| self.patient_in_call[&c]);
                            self.patient_in_call.insert(*conn, carried);
                            self.latest_patient = Some(*conn);
                        }
                        let in_call = self.patient_in_call.entry(*conn).or_insert(false);
                        match &message.body {
                            ServerBody::Welcome(_) => {}
                            ServerBody::Admitted {} => *in_call = true,
                            ServerBody::Waiting {}
                            | ServerBody::Denied(_)
                            | ServerBody::Bye { .. } => *in_call = false,
                            body if is_call_content(body) => prop_assert!(
                                *in_call,
                                "{} relayed to a patient not in the call",
                                body.type_name()
                            ),
                            _ => {}
                        }
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_sessions_keep_the_invariants(acts in prop::collection::vec(act(), 1..80)) {
        let mut h = Harness::with_config(konsult_signal::Config {
            evidence: konsult_domain::EvidenceRules {
                min_span: Duration::from_secs(2),
                min_packets: 10,
            },
            ..konsult_signal::Config::default()
        });
        h.hold_writes();
        h.features = konsult_protocol::Features { media_state: true };
        let mut step = 0u64;
        let mut latest: BTreeMap<bool, ConnId> = BTreeMap::new();
        let mut checker = Checker {
            patient_in_call: BTreeMap::new(),
            latest_patient: None,
            closed: BTreeSet::new(),
            last_seq: BTreeMap::new(),
            seen: 0,
            unacked: BTreeMap::new(),
            committed: BTreeMap::new(),
        };
        // The stored consultation, as the store applies the writes.
        let mut stored = CallFacts { state: ConsultationState::Open, ..CallFacts::SCHEDULED };
        let mut ends = 0;
        let commit = |h: &mut Harness, checker: &mut Checker, stored: &mut CallFacts, ends: &mut usize| -> Result<(), TestCaseError> {
            let Some((_, write, events, _)) = h.pending_writes.front().cloned() else {
                return Ok(());
            };
            // Check what was sent before the commit, then commit.
            checker.check(h)?;
            checker.unacked.remove(&write);
            // The store applies the events in one transaction, or none.
            let mut after = *stored;
            let mut stamped_end = false;
            for event in &events {
                match after.on_call_event(event) {
                    Ok(t) => {
                        stamped_end |= t.stamp_ended;
                        after = t.facts;
                    }
                    Err(_) => {
                        // Only a join that raced the end of the consultation
                        // (its hello was checked just before) is refused.
                        prop_assert!(stored.state.is_over(), "the store refuses {} in {:?}", event, stored.state);
                        h.refuse_next();
                        prop_assert!(h.room().is_none_or(|r| r.patient.is_none() && r.therapist.is_none()));
                        return Ok(());
                    }
                }
            }
            for event in &events {
                *checker.committed.entry(event.code()).or_insert(0) += 1;
            }
            *ends += usize::from(stamped_end);
            *stored = after;
            h.commit_next();
            Ok(())
        };
        for act in acts {
            match act {
                Act::Join { therapist, resume } => {
                    let role = if therapist { Role::Therapist } else { Role::Patient };
                    let resume = match (resume, latest.get(&therapist)) {
                        (1, Some(&c)) => h.try_resume_for(c),
                        (2, _) => Some(Resume { token: h.fresh_token(), last_seq: 3 }),
                        _ => None,
                    };
                    let conn = match resume {
                        Some(r) => h.join_resume(role, r),
                        None => h.join(role),
                    };
                    latest.insert(therapist, conn);
                }
                Act::Msg { therapist, kind } => {
                    if let Some(&c) = latest.get(&therapist) {
                        step += 1;
                        h.send_raw(c, &message(kind, step));
                    }
                }
                Act::Disconnect { therapist } => {
                    if let Some(&c) = latest.get(&therapist) {
                        h.disconnect(c);
                    }
                }
                Act::Advance { millis } => h.advance(Duration::from_millis(millis.into())),
                Act::Check { ok } => {
                    if !h.checks.is_empty() {
                        h.answer_check(if ok { Ok(()) } else { Err(vec!["assessment_revoked".into()]) });
                    }
                }
                Act::Relay { enough } => {
                    let packets = if enough { 500 } else { 5 };
                    let flow = konsult_signal::ObservedFlow { packets, bytes: packets * 900, span: Duration::from_secs(3) };
                    h.relay_media(flow, flow);
                }
                Act::Commit { writes } => {
                    for _ in 0..writes {
                        commit(&mut h, &mut checker, &mut stored, &mut ends)?;
                    }
                }
            }
            checker.check(&h)?;
            // The snapshot agrees with the stream: relay is possible only in the call.
            if let Some(room) = h.room() {
                if room.admission == konsult_signal::AdmissionState::Admitted {
                    prop_assert!(room.patient.is_some() && room.therapist.is_some());
                }
            }
        }
        // Eventually everything is committed, times out, and the hub is empty.
        for _ in 0..4 {
            while !h.pending_writes.is_empty() {
                commit(&mut h, &mut checker, &mut stored, &mut ends)?;
            }
            h.advance(Duration::from_secs(120));
            checker.check(&h)?;
        }
        prop_assert!(h.pending_writes.is_empty());
        prop_assert!(h.room().is_none());
        prop_assert_eq!(h.hub.poll_timeout(), None);
        prop_assert!(ends <= 1, "the call ended {} times", ends);
        // Never stuck: nobody is left, so the consultation is open for the
        // patient again, or its call is over.
        prop_assert!(
            matches!(stored.state, ConsultationState::Open | ConsultationState::Ended),
            "left in {:?}", stored.state
        );
        prop_assert_eq!(stored.state == ConsultationState::Ended, stored.started);
        let _ = ClientMessage::Ping {};
    }
}
