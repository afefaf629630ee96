//! A dropped participant that does not resume within the grace period is
//! gone: the peer gets `peer_left`. The consultation goes on while anyone is
//! left; a room left empty after a call ends it (`abandoned`).

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Role, ServerBody};
use konsult_signal::{AdmissionState, CallEvent, EndReason};
use std::time::Duration;

#[test]
fn patient_grace_expiry_ends_the_patients_call_not_the_consultation() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let resume = h.resume_for(p);
    h.disconnect(p);
    h.advance_pinging(secs(29), &[t]);
    assert!(h.take(t).is_empty(), "still within the grace period");
    assert!(h.take_events().is_empty());

    h.advance_pinging(secs(2), &[t]);
    assert_eq!(
        h.take_one(t).body,
        ServerBody::PeerLeft {
            role: Role::Patient
        }
    );
    assert_eq!(h.take_events(), [CallEvent::PatientLeft]);
    assert_eq!(h.room().unwrap().patient, None);

    // Too late to resume: the patient starts over in the waiting room.
    let p2 = h.join_resume(Role::Patient, resume);
    let msgs = h.take(p2);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!()
    };
    assert!(!w.resumed);
    assert_eq!(msgs[1].body, ServerBody::Waiting {});
    assert_eq!(msgs[1].seq, 1, "a new participant numbers from 1");
}

#[test]
fn grace_expires_exactly_at_the_deadline() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.disconnect(p);
    h.advance_pinging(secs(20), &[t]);
    h.send(t, &ClientMessage::Ping {});
    h.take(t);
    h.advance(Duration::from_millis(9_999));
    assert!(h.take(t).is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.types(t), ["peer_left"]);
}

#[test]
fn therapist_grace_expiry_sends_the_patient_back_to_the_waiting_room() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.disconnect(t);
    h.advance_pinging(secs(31), &[p]);
    let pm: Vec<_> = h.take(p).into_iter().map(|m| m.body).collect();
    assert_eq!(
        pm,
        [
            ServerBody::PeerLeft {
                role: Role::Therapist
            },
            ServerBody::Waiting {}
        ]
    );
    assert_eq!(
        h.take_events(),
        [CallEvent::TherapistLeft, CallEvent::PatientWaiting]
    );
    assert_eq!(h.room().unwrap().admission, AdmissionState::Waiting);
    // Relay is closed until a therapist admits again.
    h.send(p, &ClientMessage::IceRestart {});
    assert_eq!(
        error_code(&h.take_one(p)),
        konsult_protocol::ErrorCode::WrongState
    );

    let t2 = h.join(Role::Therapist);
    assert_eq!(h.types(t2), ["welcome", "patient_waiting"]);
    h.send(t2, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    assert_eq!(h.types(p), ["admitted", "peer_joined"]);
}

#[test]
fn a_waiting_patients_grace_expiry_is_no_call_end() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take_events();
    h.disconnect(p);
    h.advance_pinging(secs(31), &[t]);
    assert_eq!(h.types(t), ["peer_left"]);
    assert_eq!(h.take_events(), [CallEvent::PatientLeftWaiting]);
}

#[test]
fn both_gone_removes_the_room() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.disconnect(t);
    h.disconnect(p);
    h.advance(secs(31));
    assert!(h.room().is_none());
    assert_eq!(h.hub.poll_timeout(), None, "nothing left to time");
}

#[test]
fn a_room_left_empty_after_a_call_ends_the_consultation_with_its_evidence() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.disconnect(t);
    h.disconnect(p);
    h.advance(secs(31));
    assert_eq!(
        h.take_events(),
        [
            // The therapist's grace runs out first (it dropped first): the
            // patient is sent back to the waiting room, then drops out too.
            CallEvent::TherapistLeft,
            CallEvent::PatientWaiting,
            CallEvent::PatientLeftWaiting,
            CallEvent::Ended {
                reason: EndReason::Abandoned
            }
        ]
    );
    assert_eq!(h.saved, None, "the saved room is deleted");
    assert_eq!(h.rooms_closed, [CONSULTATION]);
}
