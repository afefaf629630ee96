//! `media_state`: each side's microphone and camera reach a peer that asked
//! for them in its hello, and only such a peer (a client written before the
//! message existed never sees it).

mod common;

use common::*;
use konsult_protocol::{ClientMessage, ErrorCode, Features, MediaState, Role, ServerBody};

const MUTED: MediaState = MediaState {
    audio: false,
    video: true,
    screen: false,
};

#[test]
fn media_state_reaches_a_peer_that_asked_for_it() {
    let mut h = Harness::new();
    h.features = Features { media_state: true };
    let (t, p) = h.admitted_pair();
    h.send(p, &ClientMessage::MediaState(MUTED));
    let msg = h.take_one(t);
    assert_eq!(
        msg.body,
        ServerBody::MediaState {
            from: Role::Patient,
            audio: false,
            video: true,
            screen: false,
        }
    );
    assert!(msg.seq > 0, "sequenced, so a resume replays it");
    assert!(h.take(p).is_empty(), "nothing echoes to the sender");
    h.send(
        t,
        &ClientMessage::MediaState(MediaState {
            audio: true,
            video: true,
            screen: true,
        }),
    );
    assert!(matches!(
        h.take_one(p).body,
        ServerBody::MediaState {
            from: Role::Therapist,
            screen: true,
            ..
        }
    ));
}

#[test]
fn a_peer_that_did_not_ask_never_receives_media_state() {
    let mut h = Harness::new();
    // The therapist's client asks; the patient's (an older client) does not.
    h.features = Features { media_state: true };
    let t = h.join(Role::Therapist);
    h.features = Features::default();
    let p = h.join(Role::Patient);
    h.send(t, &ClientMessage::Admit {});
    h.answer_check(Ok(()));
    h.take(t);
    h.take(p);
    h.send(t, &ClientMessage::MediaState(MUTED));
    assert!(h.take(p).is_empty(), "dropped silently");
    assert!(h.take(t).is_empty(), "and no error to the sender");
    h.send(p, &ClientMessage::MediaState(MUTED));
    assert_eq!(h.types(t), ["media_state"]);
}

#[test]
fn media_state_outside_the_call_is_refused_and_changes_nothing() {
    let mut h = Harness::new();
    h.features = Features { media_state: true };
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.send(p, &ClientMessage::MediaState(MUTED));
    assert_eq!(error_code(&h.take_one(p)), ErrorCode::WrongState);
    assert!(h.take(t).is_empty());
}
