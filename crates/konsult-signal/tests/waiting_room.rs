//! A patient waits until the therapist admits; who is told what, and when.

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Role, ServerBody};
use konsult_signal::{AdmissionState, CallEvent, CloseReason, Presence};

#[test]
fn patient_alone_gets_welcome_then_waiting() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    let msgs = h.take(p);
    assert_eq!(msgs.len(), 2);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!("{:?}", msgs[0])
    };
    assert_eq!(msgs[0].seq, 0, "welcome is connection-scoped");
    assert_eq!(w.role, Role::Patient);
    assert_eq!(w.consultation, CONSULTATION);
    assert!(!w.peer_present);
    assert!(w.polite, "the patient is the polite peer");
    assert!(!w.resumed);
    assert_eq!(w.ice_servers.len(), 1);
    assert_eq!(w.limits.max_frame_bytes, 64 * 1024);
    assert_eq!(msgs[1].body, ServerBody::Waiting {});
    assert_eq!(msgs[1].seq, 1, "the first sequenced message is 1");
    assert_eq!(h.take_events(), [CallEvent::PatientWaiting]);
    let room = h.room().unwrap();
    assert_eq!(room.admission, AdmissionState::Waiting);
    assert_eq!(room.patient, Some(Presence::Connected(p)));
    assert_eq!(room.therapist, None);
}

#[test]
fn therapist_joining_later_sees_the_waiting_patient() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    h.take(p);
    let t = h.join(Role::Therapist);
    let msgs = h.take(t);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!()
    };
    assert!(w.peer_present);
    assert!(!w.polite, "the therapist is the impolite peer");
    assert_eq!(msgs[1].body, ServerBody::PatientWaiting {});
    assert_eq!(msgs.len(), 2);
    assert!(
        h.take(p).is_empty(),
        "a waiting patient is not told about the therapist"
    );
}

#[test]
fn patient_joining_later_is_announced_to_the_therapist() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    assert_eq!(h.types(t), ["welcome"]);
    let p = h.join(Role::Patient);
    assert_eq!(h.types(t), ["patient_waiting"]);
    assert_eq!(h.types(p), ["welcome", "waiting"]);
}

#[test]
fn patient_leaving_the_waiting_room() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.take_events();
    h.send(p, &ClientMessage::Leave {});
    assert_eq!(h.types(p), ["bye"]);
    assert_eq!(h.take_closes(), [(p, CloseReason::Bye)]);
    assert_eq!(
        h.take(t).into_iter().map(|m| m.body).collect::<Vec<_>>(),
        [ServerBody::PeerLeft {
            role: Role::Patient
        }]
    );
    assert_eq!(
        h.take_events(),
        [CallEvent::PatientLeftWaiting],
        "no end: there was no call"
    );
    assert_eq!(h.room().unwrap().patient, None);
    // Frames after the close are ignored.
    h.send(p, &ClientMessage::Ping {});
    assert!(h.take(p).is_empty());
}

#[test]
fn therapist_leaving_keeps_the_patient_waiting() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(p);
    h.send(t, &ClientMessage::Leave {});
    assert_eq!(h.take_closes(), [(t, CloseReason::Bye)]);
    assert!(h.take(p).is_empty());
    let room = h.room().unwrap();
    assert_eq!(room.therapist, None);
    assert_eq!(room.admission, AdmissionState::Waiting);
    // A therapist coming back finds the patient waiting.
    let t2 = h.join(Role::Therapist);
    assert_eq!(h.types(t2), ["welcome", "patient_waiting"]);
}

#[test]
fn room_disappears_when_both_are_gone() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.send(p, &ClientMessage::Leave {});
    h.send(t, &ClientMessage::Leave {});
    assert!(h.room().is_none());
    assert_eq!(h.hub.room_count(), 0);
    h.disconnect(p);
    h.disconnect(t);
    assert_eq!(h.hub.connection_count(), 0);
}

#[test]
fn ping_gets_an_unsequenced_pong() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    h.take(p);
    h.send(p, &ClientMessage::Ping {});
    let pong = h.take_one(p);
    assert_eq!(pong.body, ServerBody::Pong {});
    assert_eq!(pong.seq, 0);
}
