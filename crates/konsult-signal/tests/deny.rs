//! The therapist turns a waiting patient away.

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Denied, DeniedReason, ErrorCode, Note, Role, ServerBody};
use konsult_signal::{CallEvent, CloseReason};

#[test]
fn deny_sends_denied_with_the_note_and_closes_the_patient() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.take_events();
    let note = Note::parse("Vi ringer dig op i stedet".into()).unwrap();
    h.send(
        t,
        &ClientMessage::Deny {
            reason: Some(note.clone()),
        },
    );
    let denied = h.take_one(p);
    assert_eq!(
        denied.body,
        ServerBody::Denied(Denied {
            reason: DeniedReason::ByTherapist,
            note: Some(note),
            failures: vec![],
        })
    );
    assert!(denied.seq > 0);
    assert_eq!(h.take_closes(), [(p, CloseReason::Denied)]);
    assert_eq!(
        h.take_one(t).body,
        ServerBody::PeerLeft {
            role: Role::Patient
        }
    );
    assert_eq!(h.take_events(), [CallEvent::PatientLeftWaiting]);
    assert_eq!(h.room().unwrap().patient, None);
    // The closed connection's frames are ignored.
    h.send(p, &ClientMessage::Ping {});
    assert!(h.take(p).is_empty());
}

#[test]
fn deny_during_the_check_wins_over_a_late_ok() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.send(t, &ClientMessage::Admit {});
    h.send(t, &ClientMessage::Deny { reason: None });
    h.take(p);
    h.answer_check(Ok(()));
    assert!(h.take(p).is_empty());
    assert_eq!(h.room().unwrap().patient, None);
}

#[test]
fn deny_is_for_the_therapist_and_a_waiting_patient_only() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    h.take(t);
    h.send(t, &ClientMessage::Deny { reason: None });
    assert_eq!(error_code(&h.take_one(t)), ErrorCode::WrongState);

    let p = h.join(Role::Patient);
    h.take(p);
    h.take(t);
    h.send(p, &ClientMessage::Deny { reason: None });
    assert_eq!(error_code(&h.take_one(p)), ErrorCode::Forbidden);

    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    h.take(t);
    h.take(p);
    h.send(t, &ClientMessage::Deny { reason: None });
    assert_eq!(
        error_code(&h.take_one(t)),
        ErrorCode::WrongState,
        "admitted: use leave"
    );
    assert!(h.take(p).is_empty());
    assert!(h.take_closes().is_empty());
}
