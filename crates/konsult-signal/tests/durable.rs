//! Durable before visible: no client hears of an admission, two-way media
//! or the end of a consultation before its write is committed; a refused
//! write never becomes visible and closes the room.

mod common;

use common::*;
use konsult_protocol::{ByeReason, ClientMessage, Role, ServerBody};
use konsult_signal::{CallEvent, CloseReason, EndReason};

#[test]
fn an_admission_is_announced_only_after_it_is_committed() {
    let mut h = Harness::new();
    h.hold_writes();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    assert_eq!(h.types(p), ["welcome", "waiting"], "waiting is not held");
    h.commit_all();
    assert_eq!(h.take_events(), [CallEvent::PatientWaiting]);
    h.take(t);
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    assert!(h.take(p).is_empty() && h.take(t).is_empty(), "held");
    assert_eq!(h.room().unwrap().pending_writes, 1);
    // A ping is answered meanwhile: connection-scoped messages are not held.
    h.send(t, &ClientMessage::Ping {});
    assert_eq!(h.types(t), ["pong"]);
    assert_eq!(h.commit_next(), [CallEvent::Admitted]);
    assert_eq!(h.take_events(), [CallEvent::Admitted]);
    assert_eq!(h.types(p), ["admitted", "peer_joined"]);
    assert_eq!(h.types(t), ["peer_joined"]);
}

#[test]
fn messages_after_a_held_event_wait_in_order() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.hold_writes();
    h.send(t, &ClientMessage::Leave {});
    assert!(h.take(p).is_empty() && h.take(t).is_empty());
    assert!(h.take_closes().is_empty(), "not even the close goes out");
    // Frames of the leaving connection are ignored meanwhile.
    h.send(t, &ClientMessage::Ping {});
    assert!(h.take(t).is_empty());
    assert_eq!(
        h.commit_next(),
        [CallEvent::Ended {
            reason: EndReason::TherapistEnded
        }]
    );
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
    assert_eq!(h.rooms_closed, [CONSULTATION]);
}

#[test]
fn a_resume_while_held_replays_only_what_was_released() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(p);
    h.hold_writes();
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    let resume = h.resume_for(p);
    h.disconnect(p);
    let p2 = h.join_resume(Role::Patient, resume);
    assert_eq!(h.types(p2), ["welcome"], "admitted is not replayed yet");
    h.commit_all();
    assert_eq!(h.types(p2), ["admitted", "peer_joined"]);
}

#[test]
fn a_refused_write_is_never_visible_and_closes_the_room() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.hold_writes();
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    // The consultation was cancelled in the meantime: the store refuses.
    assert_eq!(h.refuse_next(), [CallEvent::Admitted]);
    let pm = h.types(p);
    assert!(
        !pm.contains(&"admitted") && !pm.contains(&"peer_joined"),
        "{pm:?}"
    );
    assert_eq!(pm.last(), Some(&"bye"));
    assert_eq!(h.types(t).last(), Some(&"bye"));
    assert_eq!(h.take_closes().len(), 2);
    h.commit_all();
    assert!(h.room().is_none());
}
