//! Timers across many rooms: the hub keeps its deadlines in a heap instead
//! of scanning every connection and room on each input, so these tests
//! check that every deadline still fires exactly when it should, for the
//! right connection or room, with thousands of them pending, and that the
//! heap does not grow with the messages relayed.

mod common;

use common::*;
use konsult_protocol::{ChatText, ClientMessage, Role};
use konsult_signal::{CloseReason, Presence};
use std::time::Duration;
use uuid::Uuid;

const WAITING: u128 = 3_000;

/// Joins one waiting patient in each of `WAITING` rooms; returns them.
fn waiting_rooms(h: &mut Harness) -> Vec<(Uuid, konsult_signal::ConnId)> {
    (0..WAITING)
        .map(|i| {
            h.consultation = Uuid::from_u128(0x1000_0000 + i);
            (h.consultation, h.join(Role::Patient))
        })
        .collect()
}

#[test]
fn heartbeat_deadlines_fire_for_exactly_the_silent_among_thousands() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let waiting = waiting_rooms(&mut h);
    h.consultation = CONSULTATION;
    assert_eq!(h.hub.connection_count(), WAITING as usize + 2);

    // Every other waiting patient and the call keep pinging.
    let alive: Vec<_> = waiting
        .iter()
        .step_by(2)
        .map(|(_, c)| *c)
        .chain([t, p])
        .collect();
    h.advance_pinging(secs(29), &alive);
    assert!(h.take_closes().is_empty(), "nobody is due before 30 s");
    h.advance_pinging(secs(2), &alive);
    let mut closed = h.take_closes();
    closed.sort_by_key(|(conn, _)| *conn);
    let mut silent: Vec<_> = waiting
        .iter()
        .skip(1)
        .step_by(2)
        .map(|(_, c)| (*c, CloseReason::HeartbeatTimeout))
        .collect();
    silent.sort_by_key(|(conn, _)| *conn);
    assert_eq!(closed, silent, "exactly the silent ones are closed");

    // Their rooms keep them in the grace period, then let them go; the
    // pinging ones and the call are untouched throughout.
    h.advance_pinging(secs(60), &alive);
    assert!(h.take_closes().is_empty());
    assert!(matches!(
        h.room().unwrap().patient,
        Some(Presence::Connected(_))
    ));
    for (consultation, _) in waiting.iter().skip(1).step_by(2).take(5) {
        assert!(
            h.hub.room(*consultation).is_none(),
            "an empty waiting room goes"
        );
    }
    for (consultation, _) in waiting.iter().step_by(2).take(5) {
        let room = h
            .hub
            .room(*consultation)
            .expect("a live waiting room stays");
        assert!(matches!(room.patient, Some(Presence::Connected(_))));
    }
    assert_eq!(h.hub.room_count(), WAITING as usize / 2 + 1);
}

#[test]
fn relaying_through_one_room_leaves_the_others_timers_alone() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let _waiting = waiting_rooms(&mut h);
    h.consultation = CONSULTATION;
    let first_deadline = h.hub.poll_timeout().expect("heartbeats are due");

    // Hundreds of relayed messages in the call (within its rate limit):
    // the next deadline is still the earliest heartbeat.
    for i in 0..400 {
        h.advance(Duration::from_millis(25));
        let (from, to) = if i % 2 == 0 { (t, p) } else { (p, t) };
        h.send(
            from,
            &ClientMessage::Chat {
                text: ChatText::parse(format!("message {i}")).unwrap(),
            },
        );
        assert_eq!(h.types(to), ["chat"]);
    }
    assert_eq!(h.hub.poll_timeout(), Some(first_deadline));
    assert!(h.take_closes().is_empty());
}
