//! The clinic ends a consultation or revokes a link: every connection that
//! holds it is ended at once, wherever it is.

mod common;

use common::*;
use konsult_protocol::{ByeReason, Role, ServerBody};
use konsult_signal::{CallEvent, CloseReason};

#[test]
fn closing_the_consultation_ends_every_connection() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.close_consultation();
    assert_eq!(h.types(t), ["bye"]);
    let pm: Vec<_> = h.take(p).into_iter().map(|m| m.body).collect();
    assert_eq!(
        pm,
        [
            ServerBody::PeerLeft {
                role: Role::Therapist
            },
            ServerBody::Bye {
                reason: ByeReason::EndedByTherapist
            }
        ]
    );
    assert_eq!(
        h.take_closes(),
        [(t, CloseReason::Bye), (p, CloseReason::Bye)]
    );
    assert!(
        h.take_events().is_empty(),
        "the clinic committed the closure"
    );
    assert!(h.room().is_none());
    assert_eq!(h.saved, None);
}

#[test]
fn closing_reaches_a_waiting_and_a_reconnecting_patient() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.close_consultation();
    assert_eq!(h.types(p), ["bye"]);
    assert!(h.take_closes().contains(&(p, CloseReason::Bye)));
    assert!(h.room().is_none());

    // A patient reconnecting within its grace period hears it on resume...
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.disconnect(p);
    h.close_consultation();
    // ... but the room is gone: the pump refuses its hello (the link is
    // expired), which is what the patient's page shows as the end.
    assert!(h.room().is_none());
}

#[test]
fn revoking_the_link_turns_away_a_waiting_holder() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.take_events();
    h.revoke("link-1");
    assert_eq!(h.types(p), ["denied"]);
    assert!(h.take_closes().contains(&(p, CloseReason::Denied)));
    assert_eq!(h.types(t), ["peer_left"]);
    assert_eq!(h.take_events(), [CallEvent::PatientLeftWaiting]);
}

#[test]
fn revoking_the_link_ends_an_in_call_holder_and_the_therapist_stays() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.revoke("other");
    assert!(h.take(p).is_empty(), "another link changes nothing");
    h.revoke("link-1");
    assert_eq!(h.types(p), ["bye"]);
    assert_eq!(h.types(t), ["peer_left"]);
    assert_eq!(h.take_events(), [CallEvent::PatientLeft]);
    assert!(h.room().unwrap().call_started);
}
