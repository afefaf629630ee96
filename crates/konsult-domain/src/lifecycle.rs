//! What happens to a consultation during its call, in one place.
//!
//! The signaling core reports what it sees in a room as [`CallEvent`]s; each one has one name
//! (its [`CallEvent::code`], stored in the consultation's event log) and one meaning here. The
//! store applies them to the stored consultation with [`ConsultationState::on_call_event`], and
//! carries out the [`Effects`] the domain asks for once the change is committed. Closing a
//! consultation from the dashboard (cancel, no-show, technical failure, completion) goes through
//! [`ConsultationState::apply`] and has the same effects when it ends a live consultation
//! ([`Effects::of_change`]).
//!
//! | event | from | to | what else |
//! |---|---|---|---|
//! | `patient_waiting` | scheduled, open | waiting | |
//! | `patient_waiting` | waiting, in_call | (same) | a patient back after leaving, or a new device |
//! | `patient_left_waiting` | waiting | open | the link keeps working |
//! | `patient_left_waiting` | open, in_call | (same) | |
//! | `admitted` | waiting | in_call | the actual start (`started_at`, eligibility at start) |
//! | `admitted` | in_call | in_call | admitted again after leaving or an interruption |
//! | `two_way_established` | in_call | in_call | the evidence billing needs; the strongest kind is kept |
//! | `patient_left` | in_call | in_call | the patient may come back until the consultation ends |
//! | `therapist_left` | in_call | in_call | an interruption: the therapist may come back |
//! | `ended` | in_call | ended | `ended_at`; connections end, the relay drops the consultation |
//!
//! A consultation that [is over](ConsultationState::is_over) takes late reports of its room
//! (`ended`, `two_way_established`, `patient_left`, `patient_left_waiting`, `therapist_left`)
//! and changes nothing, but refuses `patient_waiting` and `admitted`: nobody may be let into a
//! consultation that is over, and the room that asked must close.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::consultation::{ConsultationEvent, ConsultationState, IllegalTransition};

/// What the evidence of two-way media rests on. Ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Both clients reported received media in `stats`, consistently and for long enough
    /// ([`crate::evidence::client_two_way`]). The server saw no media itself.
    ClientReported,
    /// Konsult's own relay counted media packets flowing each way between the two participants
    /// for long enough ([`crate::evidence::relay_two_way`]).
    RelayObserved,
}

impl Evidence {
    /// Every kind, weakest first.
    pub const ALL: [Evidence; 2] = [Evidence::ClientReported, Evidence::RelayObserved];

    /// The stable code, e.g. `relay_observed`.
    pub const fn code(self) -> &'static str {
        match self {
            Evidence::ClientReported => "client_reported",
            Evidence::RelayObserved => "relay_observed",
        }
    }

    /// Parses [`Evidence::code`].
    pub fn from_code(code: &str) -> Option<Evidence> {
        Evidence::ALL.into_iter().find(|e| e.code() == code)
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Which evidence of two-way media a clinic accepts for billing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidencePolicy {
    /// Relay-observed evidence where media passed Konsult's relay, else consistent client reports.
    #[default]
    ClientReported,
    /// Only media observed by Konsult's relay counts. Every consultation of the clinic is then
    /// relay-only, so the relay sees the media.
    RelayObserved,
}

impl EvidencePolicy {
    /// The stable code, e.g. `relay_observed`.
    pub const fn code(self) -> &'static str {
        match self {
            EvidencePolicy::ClientReported => "client_reported",
            EvidencePolicy::RelayObserved => "relay_observed",
        }
    }

    /// Parses [`EvidencePolicy::code`].
    pub fn from_code(code: &str) -> Option<EvidencePolicy> {
        [
            EvidencePolicy::ClientReported,
            EvidencePolicy::RelayObserved,
        ]
        .into_iter()
        .find(|p| p.code() == code)
    }

    /// Whether evidence of this kind is enough under the policy.
    pub fn accepts(self, evidence: Evidence) -> bool {
        match self {
            EvidencePolicy::ClientReported => true,
            EvidencePolicy::RelayObserved => evidence == Evidence::RelayObserved,
        }
    }

    /// Whether the policy forces relay-only ICE (so that the relay sees the media).
    pub fn forces_relay_only(self) -> bool {
        self == EvidencePolicy::RelayObserved
    }
}

/// Why a consultation's call ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The therapist ended the consultation in the call (`leave`).
    TherapistEnded,
    /// Nobody was left in the room: every participant left or stayed away past its grace period
    /// (also after a server restart).
    Abandoned,
    /// The consultation was completed or closed from the dashboard while its call was open.
    ClosedByClinic,
}

impl EndReason {
    /// Every reason.
    pub const ALL: [EndReason; 3] = [
        EndReason::TherapistEnded,
        EndReason::Abandoned,
        EndReason::ClosedByClinic,
    ];

    /// The stable code, e.g. `abandoned`.
    pub const fn code(self) -> &'static str {
        match self {
            EndReason::TherapistEnded => "therapist_ended",
            EndReason::Abandoned => "abandoned",
            EndReason::ClosedByClinic => "closed_by_clinic",
        }
    }

    /// Parses [`EndReason::code`].
    pub fn from_code(code: &str) -> Option<EndReason> {
        EndReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// Something that happened in a consultation's room. The one name table of the call's events:
/// [`CallEvent::code`] and [`CallEvent::detail`] are what the event log stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CallEvent {
    /// A patient entered the waiting room.
    PatientWaiting,
    /// The patient left the waiting room (left, denied, or dropped) without being admitted.
    PatientLeftWaiting,
    /// The admission check passed; the patient is in the call.
    Admitted,
    /// Media flowed both ways, by this evidence.
    TwoWayEstablished {
        /// What the evidence rests on.
        evidence: Evidence,
    },
    /// The patient left the call (left, dropped past the grace period, or a new device took its
    /// place). The consultation goes on; the patient can come back and be admitted again.
    PatientLeft,
    /// The therapist's connection stayed away past its grace period during the call.
    TherapistLeft,
    /// The call is over for good.
    Ended {
        /// Why.
        reason: EndReason,
    },
}

impl CallEvent {
    /// The stable code, e.g. `two_way_established`.
    pub const fn code(&self) -> &'static str {
        match self {
            CallEvent::PatientWaiting => "patient_waiting",
            CallEvent::PatientLeftWaiting => "patient_left_waiting",
            CallEvent::Admitted => "admitted",
            CallEvent::TwoWayEstablished { .. } => "two_way_established",
            CallEvent::PatientLeft => "patient_left",
            CallEvent::TherapistLeft => "therapist_left",
            CallEvent::Ended { .. } => "ended",
        }
    }

    /// The event's detail code, if it has one: the evidence of `two_way_established`, the
    /// reason of `ended`.
    pub const fn detail(&self) -> Option<&'static str> {
        match self {
            CallEvent::TwoWayEstablished { evidence } => Some(evidence.code()),
            CallEvent::Ended { reason } => Some(reason.code()),
            _ => None,
        }
    }

    /// Rebuilds an event from [`CallEvent::code`] and [`CallEvent::detail`]. Events stored
    /// before details existed read with the weakest evidence and [`EndReason::Abandoned`].
    pub fn from_codes(code: &str, detail: Option<&str>) -> Option<CallEvent> {
        Some(match code {
            "patient_waiting" => CallEvent::PatientWaiting,
            "patient_left_waiting" => CallEvent::PatientLeftWaiting,
            "admitted" => CallEvent::Admitted,
            "two_way_established" => CallEvent::TwoWayEstablished {
                evidence: match detail {
                    Some(d) => Evidence::from_code(d)?,
                    None => Evidence::ClientReported,
                },
            },
            "patient_left" => CallEvent::PatientLeft,
            "therapist_left" => CallEvent::TherapistLeft,
            "ended" => CallEvent::Ended {
                reason: match detail {
                    Some(d) => EndReason::from_code(d)?,
                    None => EndReason::Abandoned,
                },
            },
            _ => return None,
        })
    }

    /// Whether clients may hear of the event only after it is committed: it changes what
    /// billing rests on or ends the consultation (`admitted`, `two_way_established`, `ended`).
    /// The others are kept in order but do not hold the room's messages back.
    pub const fn is_durable(&self) -> bool {
        matches!(
            self,
            CallEvent::Admitted | CallEvent::TwoWayEstablished { .. } | CallEvent::Ended { .. }
        )
    }
}

impl fmt::Display for CallEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(detail) => write!(f, "{}({detail})", self.code()),
            None => f.write_str(self.code()),
        }
    }
}

/// What the stored consultation knows of its call, before or after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallFacts {
    /// The lifecycle state.
    pub state: ConsultationState,
    /// Whether the patient was ever admitted (the call started).
    pub started: bool,
    /// The strongest evidence of two-way media so far.
    pub two_way: Option<Evidence>,
    /// Whether the call ended (`ended_at` is set).
    pub ended: bool,
}

impl CallFacts {
    /// A consultation just scheduled.
    pub const SCHEDULED: CallFacts = CallFacts {
        state: ConsultationState::Scheduled,
        started: false,
        two_way: None,
        ended: false,
    };
}

/// What the owner of the consultation must do once a change is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Effects {
    /// End every signaling connection of the consultation (patients are told `bye`).
    pub end_connections: bool,
    /// Close the consultation on the relay: its credentials are refused and its allocations
    /// deleted.
    pub close_relay: bool,
}

impl Effects {
    /// Nothing to do.
    pub const NONE: Effects = Effects {
        end_connections: false,
        close_relay: false,
    };

    /// The effects of moving from `before` to `after`: a consultation that is over from now on
    /// ends its connections and its relay allocations, whatever ended it.
    pub fn of_change(before: ConsultationState, after: ConsultationState) -> Effects {
        if !before.is_over() && after.is_over() {
            Effects {
                end_connections: true,
                close_relay: true,
            }
        } else {
            Effects::NONE
        }
    }

    /// Whether there is anything to do.
    pub fn any(self) -> bool {
        self.end_connections || self.close_relay
    }
}

/// The result of applying a [`CallEvent`]: the new facts, what to stamp with the event's time,
/// and what to do once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallTransition {
    /// The facts after the event.
    pub facts: CallFacts,
    /// Set `started_at` (and record the eligibility at the start): the first admission.
    pub stamp_started: bool,
    /// Set `two_way_at` (the first evidence).
    pub stamp_two_way: bool,
    /// Set `ended_at`.
    pub stamp_ended: bool,
    /// What to do once committed.
    pub effects: Effects,
}

impl CallFacts {
    /// Applies a room event; see the module docs for the table. An event the state does not
    /// allow is an [`IllegalTransition`] and changes nothing.
    pub fn on_call_event(self, event: &CallEvent) -> Result<CallTransition, IllegalTransition> {
        use ConsultationState as S;
        let illegal = || IllegalTransition {
            from: self.state,
            event: event.code(),
        };
        let mut next = self;
        let mut stamp_started = false;
        let mut stamp_two_way = false;
        let mut stamp_ended = false;
        if self.state.is_over() {
            return match event {
                CallEvent::PatientWaiting | CallEvent::Admitted => Err(illegal()),
                _ => Ok(CallTransition::unchanged(self)),
            };
        }
        match (event, self.state) {
            (CallEvent::PatientWaiting, S::Scheduled) => {
                next.state = self
                    .state
                    .apply(&ConsultationEvent::OpenWindow)?
                    .apply(&ConsultationEvent::PatientArrived)?;
            }
            (CallEvent::PatientWaiting, S::Open) => {
                next.state = self.state.apply(&ConsultationEvent::PatientArrived)?;
            }
            (CallEvent::PatientWaiting, S::Waiting | S::InCall) => {}
            (CallEvent::PatientLeftWaiting, S::Waiting) => {
                next.state = self.state.apply(&ConsultationEvent::PatientLeftWaiting)?;
            }
            (CallEvent::PatientLeftWaiting, S::Open | S::InCall) => {}
            (CallEvent::Admitted, S::Waiting) => {
                next.state = self.state.apply(&ConsultationEvent::Admit)?;
                next.started = true;
                stamp_started = !self.started;
            }
            (CallEvent::Admitted, S::InCall) => {}
            (CallEvent::TwoWayEstablished { evidence }, S::InCall) => {
                stamp_two_way = self.two_way.is_none();
                next.two_way = self.two_way.max(Some(*evidence));
            }
            (CallEvent::PatientLeft | CallEvent::TherapistLeft, S::InCall) => {}
            (CallEvent::Ended { .. }, S::InCall) => {
                next.state = self.state.apply(&ConsultationEvent::End)?;
                next.ended = true;
                stamp_ended = true;
            }
            _ => return Err(illegal()),
        }
        Ok(CallTransition {
            facts: next,
            stamp_started,
            stamp_two_way,
            stamp_ended,
            effects: Effects::of_change(self.state, next.state),
        })
    }
}

impl CallTransition {
    fn unchanged(facts: CallFacts) -> Self {
        CallTransition {
            facts,
            stamp_started: false,
            stamp_two_way: false,
            stamp_ended: false,
            effects: Effects::NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsultationState as S;

    fn facts(state: ConsultationState) -> CallFacts {
        CallFacts {
            state,
            started: matches!(state, S::InCall | S::Ended | S::Completed),
            two_way: None,
            ended: matches!(state, S::Ended | S::Completed),
        }
    }

    const ALL_EVENTS: [CallEvent; 9] = [
        CallEvent::PatientWaiting,
        CallEvent::PatientLeftWaiting,
        CallEvent::Admitted,
        CallEvent::TwoWayEstablished {
            evidence: Evidence::ClientReported,
        },
        CallEvent::TwoWayEstablished {
            evidence: Evidence::RelayObserved,
        },
        CallEvent::PatientLeft,
        CallEvent::TherapistLeft,
        CallEvent::Ended {
            reason: EndReason::TherapistEnded,
        },
        CallEvent::Ended {
            reason: EndReason::Abandoned,
        },
    ];

    #[test]
    fn a_call_from_the_waiting_room_to_its_end() {
        let mut f = CallFacts::SCHEDULED;
        let mut stamps = Vec::new();
        for event in [
            CallEvent::PatientWaiting,
            CallEvent::Admitted,
            CallEvent::TwoWayEstablished {
                evidence: Evidence::ClientReported,
            },
            CallEvent::PatientLeft,
            CallEvent::PatientWaiting,
            CallEvent::Admitted,
            CallEvent::TwoWayEstablished {
                evidence: Evidence::RelayObserved,
            },
            CallEvent::Ended {
                reason: EndReason::TherapistEnded,
            },
        ] {
            let t = f.on_call_event(&event).unwrap();
            stamps.push((t.stamp_started, t.stamp_two_way, t.stamp_ended));
            f = t.facts;
        }
        assert_eq!(f.state, S::Ended);
        assert_eq!(f.two_way, Some(Evidence::RelayObserved), "strongest kept");
        assert_eq!(
            stamps.iter().filter(|s| s.0).count(),
            1,
            "started once: {stamps:?}"
        );
        assert_eq!(stamps.iter().filter(|s| s.1).count(), 1, "two-way once");
        assert_eq!(stamps.iter().filter(|s| s.2).count(), 1, "ended once");
    }

    #[test]
    fn leaving_the_waiting_room_reopens_the_link() {
        let t = facts(S::Waiting)
            .on_call_event(&CallEvent::PatientLeftWaiting)
            .unwrap();
        assert_eq!(t.facts.state, S::Open);
        assert_eq!(t.effects, Effects::NONE);
    }

    #[test]
    fn a_patient_who_leaves_the_call_does_not_end_the_consultation() {
        let t = facts(S::InCall)
            .on_call_event(&CallEvent::PatientLeft)
            .unwrap();
        assert_eq!(t.facts.state, S::InCall);
        let t = t.facts.on_call_event(&CallEvent::PatientWaiting).unwrap();
        assert_eq!(t.facts.state, S::InCall);
    }

    #[test]
    fn ending_ends_connections_and_the_relay() {
        let t = facts(S::InCall)
            .on_call_event(&CallEvent::Ended {
                reason: EndReason::Abandoned,
            })
            .unwrap();
        assert_eq!(t.facts.state, S::Ended);
        assert!(t.stamp_ended);
        assert_eq!(
            t.effects,
            Effects {
                end_connections: true,
                close_relay: true
            }
        );
    }

    #[test]
    fn a_consultation_that_is_over_lets_nobody_in_and_ignores_late_reports() {
        for state in S::ALL.into_iter().filter(|s| s.is_over()) {
            for event in ALL_EVENTS {
                let result = facts(state).on_call_event(&event);
                match event {
                    CallEvent::PatientWaiting | CallEvent::Admitted => {
                        assert!(result.is_err(), "{state} + {event}")
                    }
                    _ => assert_eq!(
                        result.map(|t| t.facts),
                        Ok(facts(state)),
                        "{state} + {event}"
                    ),
                }
            }
        }
    }

    #[test]
    fn effects_follow_the_state_whatever_ended_it() {
        for before in S::ALL {
            for after in S::ALL {
                let e = Effects::of_change(before, after);
                assert_eq!(e.any(), !before.is_over() && after.is_over());
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for event in ALL_EVENTS {
            assert_eq!(
                CallEvent::from_codes(event.code(), event.detail()),
                Some(event)
            );
        }
        assert_eq!(
            CallEvent::from_codes("two_way_established", None),
            Some(CallEvent::TwoWayEstablished {
                evidence: Evidence::ClientReported
            })
        );
        assert_eq!(CallEvent::from_codes("ended", Some("bogus")), None);
        assert_eq!(CallEvent::from_codes("bogus", None), None);
        assert!(Evidence::RelayObserved > Evidence::ClientReported);
        assert_eq!(
            serde_json::to_string(&CallEvent::Ended {
                reason: EndReason::Abandoned
            })
            .unwrap(),
            r#"{"event":"ended","reason":"abandoned"}"#
        );
    }

    #[test]
    fn policy_accepts_evidence() {
        assert!(EvidencePolicy::ClientReported.accepts(Evidence::ClientReported));
        assert!(EvidencePolicy::ClientReported.accepts(Evidence::RelayObserved));
        assert!(!EvidencePolicy::RelayObserved.accepts(Evidence::ClientReported));
        assert!(EvidencePolicy::RelayObserved.accepts(Evidence::RelayObserved));
        assert!(EvidencePolicy::RelayObserved.forces_relay_only());
    }
}
