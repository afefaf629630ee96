//! Property test: any sequence of joins, messages, garbage, drops, answers
//! and clock steps never panics, never relays to a patient who is not
//! admitted, and keeps the pump contract (nothing sent after a close,
//! sequence numbers grow on every connection).

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Resume, Role, ServerBody};
use konsult_signal::{ConnId, Output};
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
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        2 => (any::<bool>(), 0u8..3).prop_map(|(therapist, resume)| Act::Join { therapist, resume }),
        8 => (any::<bool>(), 0u8..16).prop_map(|(therapist, kind)| Act::Msg { therapist, kind }),
        1 => any::<bool>().prop_map(|therapist| Act::Disconnect { therapist }),
        2 => (0u32..40_000).prop_map(|millis| Act::Advance { millis }),
        2 => any::<bool>().prop_map(|ok| Act::Check { ok }),
    ]
}

fn message(kind: u8) -> String {
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
        9 => json!({"type": "stats", "connection_state": "connected", "bytes_received": 10,
                    "frames_received": 1, "audio_packets_received": 1}),
        10 => json!({"type": "chat", "text": "hej"}),
        11 => json!({"type": "leave"}),
        12 => json!({"type": "hello", "version": 1, "auth": {"link_token": "x"}}),
        13 => return "{not json".to_string(),
        14 => json!({"type": "teleport"}),
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
            | ServerBody::MediaEstablished {}
            | ServerBody::PeerJoined { .. }
    )
}

struct Checker {
    /// The patient's admission as its own message stream tells it.
    patient_in_call: bool,
    closed: BTreeSet<ConnId>,
    last_seq: BTreeMap<ConnId, u64>,
    seen: usize,
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
                    if h.roles.get(conn) == Some(&Role::Patient) {
                        match &message.body {
                            ServerBody::Welcome(w) if !w.resumed => self.patient_in_call = false,
                            ServerBody::Admitted {} => self.patient_in_call = true,
                            ServerBody::Waiting {}
                            | ServerBody::Denied(_)
                            | ServerBody::Bye { .. } => self.patient_in_call = false,
                            body if is_call_content(body) => prop_assert!(
                                self.patient_in_call,
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
                Output::Event { .. } | Output::AdmissionCheck { .. } => {}
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
        let mut h = Harness::new();
        let mut latest: BTreeMap<bool, ConnId> = BTreeMap::new();
        let mut checker = Checker {
            patient_in_call: false,
            closed: BTreeSet::new(),
            last_seq: BTreeMap::new(),
            seen: 0,
        };
        for act in acts {
            match act {
                Act::Join { therapist, resume } => {
                    let role = if therapist { Role::Therapist } else { Role::Patient };
                    let resume = match (resume, latest.get(&therapist)) {
                        (1, Some(&c)) => Some(h.resume_for(c)),
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
                        h.send_raw(c, &message(kind));
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
            }
            checker.check(&h)?;
            // The snapshot agrees with the stream: relay is possible only in the call.
            if let Some(room) = h.room() {
                if room.admission == konsult_signal::AdmissionState::Admitted {
                    prop_assert!(room.patient.is_some() && room.therapist.is_some());
                }
            }
        }
        // Eventually everything times out and the hub is empty.
        h.advance(Duration::from_secs(120));
        checker.check(&h)?;
        prop_assert!(h.room().is_none());
        prop_assert_eq!(h.hub.poll_timeout(), None);
        let _ = ClientMessage::Ping {};
    }
}
