//! A second device on the same link, or a second therapist tab: the newest
//! connection takes over, the older gets `replaced` and is closed.

mod common;

use common::*;
use konsult_protocol::{ClientMessage, ErrorCode, Role, ServerBody};
use konsult_signal::{AdmissionState, CallEvent, CloseReason, Presence};

#[test]
fn second_patient_device_in_the_waiting_room() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p1 = h.join(Role::Patient);
    let token1 = h.resume_token(p1);
    h.take(t);
    h.take(p1);
    h.take_events();

    let p2 = h.join(Role::Patient);
    let old = h.take_one(p1);
    assert_eq!(old.body, ServerBody::Replaced {});
    assert_eq!(old.seq, 0);
    assert_eq!(h.take_closes(), [(p1, CloseReason::Replaced)]);
    let msgs = h.take(p2);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!()
    };
    assert!(!w.resumed);
    assert_ne!(w.resume_token, token1, "a new device gets a new token");
    assert_eq!(msgs[1].body, ServerBody::Waiting {});
    assert!(
        h.take(t).is_empty(),
        "the therapist already knows a patient waits"
    );
    assert_eq!(h.room().unwrap().patient, Some(Presence::Connected(p2)));

    // The old connection is dead to the core.
    h.send(p1, &ClientMessage::Leave {});
    assert!(h.take(p1).is_empty());
    h.disconnect(p1);
    assert_eq!(h.room().unwrap().patient, Some(Presence::Connected(p2)));
}

#[test]
fn second_patient_device_during_the_call_must_be_admitted_again() {
    let mut h = Harness::new();
    let (t, p1) = h.admitted_pair();
    let p2 = h.join(Role::Patient);
    assert_eq!(h.types(p1), ["replaced"]);
    assert_eq!(h.take_closes(), [(p1, CloseReason::Replaced)]);
    assert_eq!(h.types(p2), ["welcome", "waiting"]);
    assert_eq!(h.types(t), ["peer_left", "patient_waiting"]);
    assert_eq!(
        h.take_events(),
        [CallEvent::PatientLeft, CallEvent::PatientWaiting],
        "the consultation goes on; the new device waits"
    );
    assert_eq!(h.room().unwrap().admission, AdmissionState::Waiting);
    // Nothing is relayed to the new device before admission.
    h.send(t, &ClientMessage::IceRestart {});
    assert_eq!(error_code(&h.take_one(t)), ErrorCode::WrongState);
    assert!(h.take(p2).is_empty());

    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    assert_eq!(h.types(p2), ["admitted", "peer_joined"]);
}

#[test]
fn second_therapist_tab_keeps_the_call_and_renegotiates() {
    let mut h = Harness::new();
    let (t1, p) = h.admitted_pair();
    let t2 = h.join(Role::Therapist);
    assert_eq!(h.types(t1), ["replaced"]);
    assert_eq!(h.take_closes(), [(t1, CloseReason::Replaced)]);
    let tm = h.take(t2);
    let ServerBody::Welcome(w) = &tm[0].body else {
        panic!()
    };
    assert!(w.peer_present);
    assert_eq!(
        tm[1].body,
        ServerBody::PeerJoined {
            role: Role::Patient
        }
    );
    let pm: Vec<_> = h.take(p).into_iter().map(|m| m.body).collect();
    assert_eq!(
        pm,
        [
            ServerBody::PeerLeft {
                role: Role::Therapist
            },
            ServerBody::PeerJoined {
                role: Role::Therapist
            },
        ],
        "the patient tears down and renegotiates with the new tab"
    );
    assert!(h.take_events().is_empty(), "the call goes on");
    assert_eq!(h.room().unwrap().admission, AdmissionState::Admitted);

    // Frames from the old tab are ignored; the new tab relays.
    h.send(t1, &ClientMessage::IceRestart {});
    assert!(h.take(p).is_empty());
    h.send(t2, &ClientMessage::IceRestart {});
    assert_eq!(h.types(p), ["ice_restart"]);
}

#[test]
fn takeover_of_a_dropped_participant_needs_no_replaced() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p1 = h.join(Role::Patient);
    h.take(p1);
    h.disconnect(p1);
    let p2 = h.join(Role::Patient);
    assert!(h.take(p1).is_empty());
    assert!(h.take_closes().is_empty());
    assert_eq!(h.types(p2), ["welcome", "waiting"]);
    assert_eq!(h.room().unwrap().patient, Some(Presence::Connected(p2)));
    let _ = t;
}

#[test]
fn the_old_device_can_take_back_explicitly() {
    let mut h = Harness::new();
    let _t = h.join(Role::Therapist);
    let p1 = h.join(Role::Patient);
    let p2 = h.join(Role::Patient);
    h.take(p1);
    h.take(p2);
    // "Use this device" on the first device: a hello without resume.
    let p3 = h.join(Role::Patient);
    assert_eq!(h.types(p2), ["replaced"]);
    assert_eq!(h.types(p3), ["welcome", "waiting"]);
}
