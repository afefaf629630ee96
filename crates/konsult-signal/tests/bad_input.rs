//! Bad input gets an `error` with a stable code and changes nothing; a
//! flood is rate limited; repeated abuse closes the connection.

mod common;

use common::*;
use konsult_protocol::{ClientMessage, ErrorCode, Role, ServerBody};
use konsult_signal::{CloseReason, Config, Presence};
use serde_json::json;

/// Sends `text` from the patient in an admitted call and checks that the
/// patient gets exactly one error with `code`, the therapist nothing, and
/// the room is unchanged.
fn assert_refused(
    h: &mut Harness,
    from: konsult_signal::ConnId,
    other: konsult_signal::ConnId,
    text: &str,
    code: ErrorCode,
) {
    let before = h.room();
    h.send_raw(from, text);
    let reply = h.take_one(from);
    assert_eq!(error_code(&reply), code, "{text:.80}");
    assert_eq!(reply.seq, 0, "errors are connection-scoped");
    assert!(h.take(other).is_empty(), "nothing reaches the peer");
    assert!(h.take_events().is_empty());
    assert!(h.take_closes().is_empty());
    assert!(h.checks.is_empty());
    assert_eq!(h.room(), before, "state unchanged");
}

#[test]
fn malformed_unknown_and_invalid_frames() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    assert_refused(&mut h, p, t, "not json", ErrorCode::Malformed);
    assert_refused(&mut h, p, t, "[1,2]", ErrorCode::Malformed);
    assert_refused(&mut h, p, t, r#"{"sdp":"v=0"}"#, ErrorCode::Malformed);
    assert_refused(
        &mut h,
        p,
        t,
        r#"{"type":"subscribe"}"#,
        ErrorCode::UnknownType,
    );
    assert_refused(
        &mut h,
        p,
        t,
        r#"{"type":"offer"}"#,
        ErrorCode::InvalidFields,
    );
    assert_refused(
        &mut h,
        p,
        t,
        r#"{"type":"offer","sdp":"x"}"#,
        ErrorCode::InvalidFields,
    );
    assert_refused(
        &mut h,
        p,
        t,
        r#"{"type":"chat","text":""}"#,
        ErrorCode::InvalidFields,
    );
    assert_refused(
        &mut h,
        p,
        t,
        r#"{"type":"ping","extra":1}"#,
        ErrorCode::InvalidFields,
    );
}

#[test]
fn error_messages_do_not_echo_addresses() {
    let mut h = Harness::new();
    let (_t, p) = h.admitted_pair();
    h.send_json(
        p,
        json!({"type": "candidate", "candidate": 5, "sdp_mid": "192.0.2.44"}),
    );
    let ServerBody::Error(e) = h.take_one(p).body else {
        panic!()
    };
    assert!(!e.message.contains("192.0.2.44"), "{}", e.message);
}

#[test]
fn oversized_frames_are_too_large() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    let big_sdp = format!("v=0\r\na=x:{}\r\n", "y".repeat(64 * 1024));
    let frame = json!({"type": "offer", "sdp": big_sdp}).to_string();
    assert!(frame.len() > 64 * 1024);
    assert_refused(&mut h, t, p, &frame, ErrorCode::TooLarge);
    // Exactly at the limit is fine.
    let pad = 64 * 1024 - r#"{"type":"chat","text":""}"#.len();
    let text = "x".repeat(pad);
    let frame = format!(r#"{{"type":"chat","text":"{text}"}}"#);
    assert_eq!(frame.len(), 64 * 1024);
    h.send_raw(t, &frame);
    // Too many characters for a chat line, but not too large a frame.
    assert_eq!(error_code(&h.take_one(t)), ErrorCode::InvalidFields);
}

#[test]
fn wrong_state_changes_nothing() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    let p = h.join(Role::Patient);
    h.take(t);
    h.take(p);
    h.take_events();
    // Before admission nothing is relayed, in either direction.
    for msg in [
        json!({"type": "offer", "sdp": "v=0\r\n"}),
        json!({"type": "answer", "sdp": "v=0\r\n"}),
        json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 203.0.113.1 5 typ relay"}),
        json!({"type": "end_of_candidates"}),
        json!({"type": "ice_restart"}),
        json!({"type": "chat", "text": "hej"}),
        json!({"type": "stats", "connection_state": "connected", "bytes_received": 1,
               "frames_received": 1, "audio_packets_received": 1}),
    ] {
        assert_refused(&mut h, t, p, &msg.to_string(), ErrorCode::WrongState);
        assert_refused(&mut h, p, t, &msg.to_string(), ErrorCode::WrongState);
    }
    // A second hello.
    let hello = json!({"type": "hello", "version": 1, "auth": {"link_token": "x"}});
    assert_refused(&mut h, p, t, &hello.to_string(), ErrorCode::WrongState);
}

#[test]
fn a_burst_above_the_rate_is_rate_limited() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    h.take(p);
    // 55 pings at the same instant: the burst of 50 passes, 5 are refused.
    for _ in 0..55 {
        h.send(p, &ClientMessage::Ping {});
    }
    let replies = h.take(p);
    let pongs = replies
        .iter()
        .filter(|m| m.body == ServerBody::Pong {})
        .count();
    let limited: Vec<_> = replies
        .iter()
        .filter(|m| matches!(&m.body, ServerBody::Error(e) if e.code == ErrorCode::RateLimited))
        .collect();
    assert_eq!(pongs, 50);
    assert_eq!(limited.len(), 5);
    assert!(
        h.take_closes().is_empty(),
        "5 errors are below the abuse limit"
    );
    // 20 per second refill.
    h.advance(std::time::Duration::from_millis(100));
    h.send(p, &ClientMessage::Ping {});
    h.send(p, &ClientMessage::Ping {});
    h.send(p, &ClientMessage::Ping {});
    assert_eq!(h.types(p), ["pong", "pong", "error"]);
}

#[test]
fn ten_errors_within_a_minute_close_the_connection() {
    let mut h = Harness::new();
    let (t, p) = h.admitted_pair();
    for i in 0..9 {
        h.send_raw(p, "garbage");
        assert_eq!(
            error_code(&h.take_one(p)),
            ErrorCode::Malformed,
            "error {i}"
        );
    }
    assert!(h.take_closes().is_empty());
    h.send_raw(p, "garbage");
    let replies = h.take(p);
    assert_eq!(replies.len(), 2);
    assert_eq!(error_code(&replies[0]), ErrorCode::Malformed);
    assert_eq!(error_code(&replies[1]), ErrorCode::TooManyErrors);
    assert_eq!(h.take_closes(), [(p, CloseReason::TooManyErrors)]);
    // Like a drop: the patient may resume; the therapist is not told yet.
    assert!(matches!(
        h.room().unwrap().patient,
        Some(Presence::Disconnected { .. })
    ));
    assert!(h.take(t).is_empty());
    // Further frames on the closed connection are ignored.
    h.send_raw(p, "garbage");
    assert!(h.take(p).is_empty());
}

#[test]
fn errors_spread_over_more_than_a_minute_do_not_close() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    h.take(p);
    for _ in 0..9 {
        h.send_raw(p, "garbage");
    }
    h.advance_pinging(secs(61), &[p]);
    for _ in 0..9 {
        h.send_raw(p, "garbage");
    }
    assert!(h.take_closes().is_empty());
}

#[test]
fn limits_are_configurable() {
    let mut h = Harness::with_config(Config {
        max_frame_bytes: 100,
        max_errors: 2,
        ..Config::default()
    });
    let p = h.join(Role::Patient);
    h.take(p);
    h.send_raw(
        p,
        &format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(100)),
    );
    assert_eq!(error_code(&h.take_one(p)), ErrorCode::TooLarge);
    h.send_raw(p, "x");
    assert_eq!(h.take_closes(), [(p, CloseReason::TooManyErrors)]);
}

#[test]
fn hello_checks_happen_before_join() {
    let h = Harness::new();
    let ok = h
        .hub
        .parse_hello(r#"{"type":"hello","version":1,"auth":{"session":{"consultation":"00000000-0000-0000-0000-000000000001"}}}"#)
        .unwrap();
    assert!(ok.resume.is_none());
    let cases = [
        (
            r#"{"type":"hello","version":3,"auth":{"link_token":"a"}}"#,
            ErrorCode::VersionMismatch,
        ),
        (r#"{"type":"ping"}"#, ErrorCode::HelloRequired),
        ("nope", ErrorCode::Malformed),
        (r#"{"type":"hello","version":1}"#, ErrorCode::InvalidFields),
    ];
    for (text, code) in cases {
        let err = h.hub.parse_hello(text).unwrap_err();
        assert_eq!(err.code, code, "{text}");
        assert_eq!(error_code(&err.to_message()), code);
    }
    let huge = format!(
        r#"{{"type":"hello","version":1,"auth":{{"link_token":"{}"}}}}"#,
        "a".repeat(70_000)
    );
    assert_eq!(
        h.hub.parse_hello(&huge).unwrap_err().code,
        ErrorCode::TooLarge
    );
}

#[test]
fn joining_a_connection_twice_is_a_pump_bug() {
    let mut h = Harness::new();
    let p = h.join(Role::Patient);
    let token = h.fresh_token();
    let err = h
        .hub
        .handle_join(
            h.now,
            p,
            konsult_signal::JoinRequest {
                consultation: CONSULTATION,
                participant: common::participant_id(Role::Therapist),
                role: Role::Therapist,
                version: 1,
                candidate_policy: konsult_protocol::CandidatePolicy::All,
                evidence_policy: konsult_signal::EvidencePolicy::ClientReported,
                call_started: false,
                link: None,
                ice_servers: vec![],
                resume_token_for_new: token,
                resume: None,
                features: konsult_protocol::Features::default(),
                context: konsult_signal::RoomContext::default(),
            },
        )
        .unwrap_err();
    assert_eq!(err, konsult_signal::JoinError::AlreadyJoined(p));
    assert!(h.hub.poll_output().is_none());
    assert_eq!(h.room().unwrap().therapist, None);
}

#[test]
fn frames_from_unknown_connections_are_ignored() {
    let mut h = Harness::new();
    h.send_raw(konsult_signal::ConnId(999), r#"{"type":"ping"}"#);
    h.disconnect(konsult_signal::ConnId(999));
    assert!(h.hub.poll_output().is_none());
    assert_eq!(h.hub.connection_count(), 0);
}
