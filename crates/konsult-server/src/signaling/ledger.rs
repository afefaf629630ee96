//! Which room events become stored call events, and when a consultation's
//! relay allocations are closed. Pure: no store, no clock.
//!
//! The room core reports what happens in a room ([`RoomEvent`]); the store
//! keeps the consultation's lifecycle (`waiting → in_call → ended`), which
//! billing reads. The two do not map one to one:
//!
//! - A call can be *interrupted* without ending: the therapist's or the
//!   patient's connection is gone past the grace period, or a new patient
//!   device takes over. The core reports `Ended`, but the patient can come
//!   back and be admitted again, so the stored consultation stays `in_call`
//!   (an `ended` consultation's link stops working and it cannot be admitted
//!   again).
//! - The consultation ends for good when a participant `leave`s during the
//!   call, when one of them leaves after an interruption, or when the room
//!   closes (nobody is left, not even within a grace period) after a call.
//!   Then the store gets `ended` and the embedded relay drops the
//!   consultation's allocations.
//! - A patient who leaves the waiting room (or is denied, or drops) before
//!   any call gets `patient_left_waiting`, so the consultation is `open`
//!   again and the link keeps working.

use std::collections::HashMap;

use konsult_protocol::Role;
use konsult_signal::{EndReason, LeftReason, RoomEvent};
use konsult_store::consultations::CallEvent;
use uuid::Uuid;

/// What the pump must do for a room event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `Store::record_call_event` with this event.
    Record(CallEvent),
    /// Close the consultation on the relay (`Turn::close_consultation`).
    CloseRelay,
}

#[derive(Debug, Default, Clone, Copy)]
struct Track {
    /// Admitted at least once and not ended in the store: the stored
    /// consultation is `in_call`.
    started: bool,
    /// A call is running right now (not interrupted).
    live: bool,
}

/// Per-consultation memory of the mapping; see the module docs.
#[derive(Debug, Default)]
pub struct Ledger {
    calls: HashMap<Uuid, Track>,
}

const END: [Action; 2] = [Action::Record(CallEvent::Ended), Action::CloseRelay];

impl Ledger {
    /// The actions for one room event, in order.
    pub fn on_event(&mut self, consultation: Uuid, event: &RoomEvent) -> Vec<Action> {
        let track = self.calls.entry(consultation).or_default();
        match event {
            RoomEvent::PatientWaiting => vec![Action::Record(CallEvent::PatientWaiting)],
            RoomEvent::Admitted => {
                *track = Track {
                    started: true,
                    live: true,
                };
                vec![Action::Record(CallEvent::Admitted)]
            }
            RoomEvent::TwoWayEstablished => vec![Action::Record(CallEvent::TwoWayEstablished)],
            RoomEvent::Denied { .. } if !track.started => {
                vec![Action::Record(CallEvent::PatientLeftWaiting)]
            }
            // A new device after an interrupted call was turned away: the
            // consultation stays in its call.
            RoomEvent::Denied { .. } => Vec::new(),
            RoomEvent::PeerLeft { role, reason } => match (track.started, track.live) {
                (false, _) if *role == Role::Patient => {
                    vec![Action::Record(CallEvent::PatientLeftWaiting)]
                }
                (true, false) if *reason == LeftReason::Left => {
                    *track = Track::default();
                    END.to_vec()
                }
                // During a live call the core reports `Ended` next.
                _ => Vec::new(),
            },
            RoomEvent::Ended { reason } => match reason {
                EndReason::Left { .. } => {
                    *track = Track::default();
                    END.to_vec()
                }
                EndReason::GraceExpired { .. } | EndReason::PatientReplaced => {
                    track.live = false;
                    Vec::new()
                }
            },
        }
    }

    /// The consultation's room is gone (nobody is in it any more).
    pub fn on_room_closed(&mut self, consultation: Uuid) -> Vec<Action> {
        match self.calls.remove(&consultation) {
            Some(track) if track.started => END.to_vec(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsult_protocol::DeniedReason;
    use CallEvent as E;

    const C: Uuid = Uuid::from_u128(9);

    fn run(ledger: &mut Ledger, events: &[RoomEvent]) -> Vec<Action> {
        events.iter().flat_map(|e| ledger.on_event(C, e)).collect()
    }

    fn left(role: Role, reason: LeftReason) -> RoomEvent {
        RoomEvent::PeerLeft { role, reason }
    }

    #[test]
    fn a_call_ended_by_leave_is_recorded_once_and_closes_the_relay() {
        let mut l = Ledger::default();
        let actions = run(
            &mut l,
            &[
                RoomEvent::PatientWaiting,
                RoomEvent::Admitted,
                RoomEvent::TwoWayEstablished,
                left(Role::Therapist, LeftReason::Left),
                RoomEvent::Ended {
                    reason: EndReason::Left {
                        role: Role::Therapist,
                    },
                },
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::Record(E::PatientWaiting),
                Action::Record(E::Admitted),
                Action::Record(E::TwoWayEstablished),
                Action::Record(E::Ended),
                Action::CloseRelay,
            ]
        );
        assert!(l.on_room_closed(C).is_empty(), "already ended");
    }

    #[test]
    fn leaving_or_being_denied_in_the_waiting_room_reopens_the_consultation() {
        let mut l = Ledger::default();
        let actions = run(
            &mut l,
            &[
                RoomEvent::PatientWaiting,
                left(Role::Patient, LeftReason::Left),
                RoomEvent::PatientWaiting,
                RoomEvent::Denied {
                    reason: DeniedReason::NotEligible,
                    failures: vec!["assessment_revoked".into()],
                },
                RoomEvent::PatientWaiting,
                left(Role::Patient, LeftReason::GraceExpired),
                // A therapist who leaves without a call changes nothing.
                left(Role::Therapist, LeftReason::Left),
            ],
        );
        assert_eq!(
            actions,
            vec![
                Action::Record(E::PatientWaiting),
                Action::Record(E::PatientLeftWaiting),
                Action::Record(E::PatientWaiting),
                Action::Record(E::PatientLeftWaiting),
                Action::Record(E::PatientWaiting),
                Action::Record(E::PatientLeftWaiting),
            ]
        );
        assert!(l.on_room_closed(C).is_empty());
    }

    #[test]
    fn an_interrupted_call_stays_in_call_until_someone_leaves_for_good() {
        let mut l = Ledger::default();
        let actions = run(
            &mut l,
            &[
                RoomEvent::PatientWaiting,
                RoomEvent::Admitted,
                // The therapist's connection stays away past the grace.
                left(Role::Therapist, LeftReason::GraceExpired),
                RoomEvent::Ended {
                    reason: EndReason::GraceExpired {
                        role: Role::Therapist,
                    },
                },
                RoomEvent::PatientWaiting,
                // Re-admitted by the therapist's new connection.
                RoomEvent::Admitted,
                // A new patient device takes over mid-call.
                left(Role::Patient, LeftReason::Replaced),
                RoomEvent::Ended {
                    reason: EndReason::PatientReplaced,
                },
                RoomEvent::PatientWaiting,
            ],
        );
        assert!(
            !actions.contains(&Action::Record(E::Ended))
                && !actions.contains(&Action::CloseRelay)
                && !actions.contains(&Action::Record(E::PatientLeftWaiting)),
            "{actions:?}"
        );
        // The therapist gives up and leaves: now it is over.
        assert_eq!(
            l.on_event(C, &left(Role::Therapist, LeftReason::Left)),
            END.to_vec()
        );
        assert!(l.on_room_closed(C).is_empty());
    }

    #[test]
    fn a_room_that_empties_after_a_call_ends_the_consultation() {
        let mut l = Ledger::default();
        run(
            &mut l,
            &[
                RoomEvent::PatientWaiting,
                RoomEvent::Admitted,
                left(Role::Patient, LeftReason::GraceExpired),
                RoomEvent::Ended {
                    reason: EndReason::GraceExpired {
                        role: Role::Patient,
                    },
                },
                left(Role::Therapist, LeftReason::GraceExpired),
            ],
        );
        assert_eq!(l.on_room_closed(C), END.to_vec());
        assert!(l.on_room_closed(C).is_empty(), "forgotten once closed");
    }
}
