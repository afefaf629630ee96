//! A dropped WebSocket resumes within the grace period and gets exactly the
//! messages it missed; the peer notices nothing.

mod common;

use common::*;
use konsult_protocol::{ChatText, ClientMessage, ErrorCode, Resume, Role, ServerBody};
use konsult_signal::{AdmissionState, CloseReason, Config, Presence};

#[test]
fn resume_replays_missed_messages_in_order() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let resume = h.resume_for(p);
    assert_eq!(resume.last_seq, 3, "waiting, admitted, peer_joined");

    h.disconnect(p);
    let room = h.room().unwrap();
    assert!(matches!(room.patient, Some(Presence::Disconnected { .. })));
    assert_eq!(
        room.admission,
        AdmissionState::Admitted,
        "still in the call"
    );

    // The therapist keeps talking while the patient is away.
    let offer = sdp("v=0\r\ns=-\r\n");
    h.send(t, &ClientMessage::Offer { sdp: offer.clone() });
    let text = ChatText::parse("Er du der?".into()).unwrap();
    h.send(t, &ClientMessage::Chat { text: text.clone() });
    assert!(h.take(t).is_empty(), "no peer_left during the grace period");

    h.advance_pinging(secs(20), &[t]);
    let p2 = h.join_resume(Role::Patient, resume.clone());
    let msgs = h.take(p2);
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!()
    };
    assert!(w.resumed);
    assert_eq!(w.resume_token, resume.token, "the token survives a resume");
    assert_eq!(msgs[1].body, ServerBody::Offer { sdp: offer });
    assert_eq!(msgs[1].seq, 4);
    assert_eq!(
        msgs[2].body,
        ServerBody::Chat {
            from: Role::Therapist,
            text
        }
    );
    assert_eq!(msgs[2].seq, 5);
    assert!(h.take(t).is_empty(), "the therapist is not told anything");
    assert!(h.take_events().is_empty());
    assert_eq!(h.room().unwrap().patient, Some(Presence::Connected(p2)));

    // Numbering continues on the new connection.
    h.send(t, &ClientMessage::IceRestart {});
    assert_eq!(h.take_one(p2).seq, 6);
}

#[test]
fn resume_with_an_older_last_seq_replays_more() {
    let mut h = Harness::new();
    let (_t, p) = h.admitted_pair();
    let token = h.resume_token(p);
    h.disconnect(p);
    let p2 = h.join_resume(Role::Patient, Resume { token, last_seq: 1 });
    assert_eq!(h.types(p2), ["welcome", "admitted", "peer_joined"]);
}

#[test]
fn the_peer_can_resume_while_the_other_side_is_connected() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let resume = h.resume_for(t);
    h.disconnect(t);
    h.send(p, &ClientMessage::IceRestart {});
    let t2 = h.join_resume(Role::Therapist, resume);
    assert_eq!(h.types(t2), ["welcome", "ice_restart"]);
    assert!(h.take(p).is_empty());
}

#[test]
fn an_unknown_token_starts_fresh_and_the_device_waits_again() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    h.disconnect(p);
    let bogus = Resume {
        token: h.fresh_token(),
        last_seq: h.last_seq(p),
    };
    let p2 = h.join_resume(Role::Patient, bogus);
    let msgs = h.take(p2);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!()
    };
    assert!(!w.resumed);
    assert_eq!(msgs[1].body, ServerBody::Waiting {});
    assert_eq!(h.types(t), ["peer_left", "patient_waiting"]);
    assert_eq!(h.room().unwrap().admission, AdmissionState::Waiting);
}

#[test]
fn a_gap_beyond_the_replay_buffer_starts_fresh() {
    let mut h = Harness::with_config(Config {
        replay_buffer: 4,
        ..Config::default()
    });
    let (t, p) = h.admitted_pair();
    let resume = h.resume_for(p);
    h.disconnect(p);
    for _ in 0..6 {
        h.send(t, &ClientMessage::IceRestart {});
    }
    let p2 = h.join_resume(Role::Patient, resume);
    let msgs = h.take(p2);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!()
    };
    assert!(!w.resumed, "messages were lost: the client must start over");
    assert_eq!(msgs[1].body, ServerBody::Waiting {});
}

#[test]
fn a_last_seq_from_the_future_starts_fresh() {
    let mut h = Harness::new();
    let (_t, p) = h.admitted_pair();
    let token = h.resume_token(p);
    h.disconnect(p);
    let p2 = h.join_resume(
        Role::Patient,
        Resume {
            token,
            last_seq: 99,
        },
    );
    let msgs = h.take(p2);
    let ServerBody::Welcome(w) = &msgs[0].body else {
        panic!()
    };
    assert!(!w.resumed);
}

#[test]
fn resume_takes_over_a_half_open_old_socket() {
    // The phone switched networks: the old socket is not yet known dead.
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let resume = h.resume_for(p);
    let p2 = h.join_resume(Role::Patient, resume);
    assert_eq!(h.types(p), ["replaced"]);
    assert_eq!(h.take_closes(), [(p, CloseReason::Replaced)]);
    assert_eq!(h.types(p2), ["welcome"]);
    assert!(h.take(t).is_empty(), "seamless for the therapist");
    // The old socket's late disconnect does not detach the new one.
    h.disconnect(p);
    assert_eq!(h.room().unwrap().patient, Some(Presence::Connected(p2)));
}

#[test]
fn a_superseded_token_is_refused_with_replaced() {
    let mut h = Harness::new();
    let (_t, p) = h.admitted_pair();
    let old = h.resume_for(p);
    h.disconnect(p);
    // A second device opens the link (no resume) and takes the place.
    let p2 = h.join(Role::Patient);
    h.take(p2);
    // The first device comes back with its old token.
    let p3 = h.join_resume(Role::Patient, old);
    assert_eq!(error_code(&h.take_one(p3)), ErrorCode::Replaced);
    assert_eq!(h.take_closes(), [(p3, CloseReason::Replaced)]);
    assert_eq!(h.room().unwrap().patient, Some(Presence::Connected(p2)));
}
