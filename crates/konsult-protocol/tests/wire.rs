//! Wire-format tests: round trips, strictness, and the typed parse errors.

use konsult_protocol::*;
use serde_json::{json, Value};
use uuid::Uuid;

fn sdp() -> Sdp {
    Sdp::parse("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".into()).unwrap()
}

fn all_client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            auth: Auth::LinkToken(LinkToken::parse("tok.en-1".into()).unwrap()),
            resume: Some(Resume {
                token: ResumeToken::parse("r".repeat(43)).unwrap(),
                last_seq: 7,
            }),
            features: Features { media_state: true },
        }),
        ClientMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            auth: Auth::Session(SessionAuth {
                consultation: Uuid::from_u128(1),
            }),
            resume: None,
            features: Features::default(),
        }),
        ClientMessage::Admit {},
        ClientMessage::Deny { reason: None },
        ClientMessage::Deny {
            reason: Some(Note::parse("Ring til klinikken".into()).unwrap()),
        },
        ClientMessage::Offer { sdp: sdp() },
        ClientMessage::Answer { sdp: sdp() },
        ClientMessage::Candidate(IceCandidate {
            candidate: CandidateLine::parse(
                "candidate:1 1 udp 41885439 203.0.113.5 3478 typ relay raddr 0.0.0.0 rport 0"
                    .into(),
            )
            .unwrap(),
            sdp_mid: Some(Mid::parse("0".into()).unwrap()),
            sdp_m_line_index: Some(0),
            username_fragment: Some(Ufrag::parse("abcd".into()).unwrap()),
        }),
        ClientMessage::EndOfCandidates(EndOfCandidates::default()),
        ClientMessage::IceRestart {},
        ClientMessage::Leave {},
        ClientMessage::Ping {},
        ClientMessage::Stats(Stats {
            connection_state: ConnectionState::Connected,
            selected_candidate_type: Some(CandidateType::Relay),
            bytes_received: 1000,
            frames_received: 30,
            audio_packets_received: 50,
            bytes_sent: Some(2000),
        }),
        ClientMessage::Chat {
            text: ChatText::parse("Kan du høre mig?".into()).unwrap(),
        },
        ClientMessage::MediaState(MediaState {
            audio: false,
            video: true,
            screen: true,
        }),
    ]
}

#[test]
fn every_client_message_round_trips_and_is_listed() {
    let mut seen = std::collections::BTreeSet::new();
    for msg in all_client_messages() {
        let text = serde_json::to_string(&msg).unwrap();
        let back = parse_client_message(&text).unwrap();
        assert_eq!(back, msg, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], msg.type_name());
        seen.insert(msg.type_name());
    }
    let listed: std::collections::BTreeSet<_> = CLIENT_MESSAGE_TYPES.iter().copied().collect();
    assert_eq!(seen, listed);
}

fn all_server_bodies() -> Vec<ServerBody> {
    vec![
        ServerBody::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            role: Role::Patient,
            consultation: Uuid::from_u128(2),
            ice_servers: vec![IceServer {
                urls: vec!["turn:turn.example.dk:3478?transport=udp".into()],
                username: Some("1700000000:abc".into()),
                credential: Some("c2VjcmV0".into()),
            }],
            candidate_policy: CandidatePolicy::RelayOnly,
            peer_present: false,
            polite: true,
            resume_token: ResumeToken::parse("t".repeat(43)).unwrap(),
            resumed: false,
            limits: Limits {
                max_frame_bytes: 65536,
                ping_interval_ms: 10_000,
                heartbeat_timeout_ms: 30_000,
                resume_grace_ms: 30_000,
                rate_per_second: 20,
                rate_burst: 50,
                max_chat_chars: MAX_CHAT_CHARS,
            },
            participant: Some(Uuid::from_u128(3)),
            participants: Some(vec![ParticipantInfo {
                id: Uuid::from_u128(4),
                role: Role::Therapist,
                state: ParticipantState::Admitted,
                polite: true,
            }]),
        }),
        ServerBody::ParticipantJoined {
            participant: ParticipantInfo {
                id: Uuid::from_u128(5),
                role: Role::Patient,
                state: ParticipantState::Waiting,
                polite: false,
            },
        },
        ServerBody::ParticipantLeft {
            participant: Uuid::from_u128(5),
        },
        ServerBody::Waiting {},
        ServerBody::PatientWaiting {},
        ServerBody::Admitted {},
        ServerBody::Denied(Denied {
            reason: DeniedReason::NotEligible,
            note: None,
            failures: vec!["assessment_revoked".into()],
        }),
        ServerBody::PeerJoined {
            role: Role::Therapist,
        },
        ServerBody::PeerLeft {
            role: Role::Patient,
        },
        ServerBody::Offer { sdp: sdp() },
        ServerBody::Answer { sdp: sdp() },
        ServerBody::Candidate(IceCandidate {
            candidate: CandidateLine::parse(
                "candidate:1 1 udp 1 203.0.113.5 3478 typ relay".into(),
            )
            .unwrap(),
            sdp_mid: None,
            sdp_m_line_index: Some(1),
            username_fragment: None,
        }),
        ServerBody::EndOfCandidates(EndOfCandidates::default()),
        ServerBody::IceRestart {},
        ServerBody::Pong {},
        ServerBody::Error(ErrorBody {
            code: ErrorCode::WrongState,
            message: "not admitted".into(),
            failures: vec![],
        }),
        ServerBody::Replaced {},
        ServerBody::MediaEstablished {},
        ServerBody::Chat {
            from: Role::Therapist,
            text: ChatText::parse("Hej".into()).unwrap(),
        },
        ServerBody::MediaState {
            from: Role::Patient,
            audio: true,
            video: false,
            screen: false,
        },
        ServerBody::Bye {
            reason: ByeReason::EndedByTherapist,
        },
    ]
}

#[test]
fn every_server_message_round_trips_flat_with_seq() {
    let mut seen = std::collections::BTreeSet::new();
    for (i, body) in all_server_bodies().into_iter().enumerate() {
        let msg = ServerMessage {
            body,
            seq: i as u64,
            sender: None,
        };
        let text = msg.to_json();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["seq"], json!(i), "{text}");
        assert_eq!(v["type"], msg.body.type_name(), "{text}");
        let back: ServerMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(back, msg);
        seen.insert(msg.body.type_name());
    }
    let listed: std::collections::BTreeSet<_> = SERVER_MESSAGE_TYPES.iter().copied().collect();
    assert_eq!(seen, listed);
}

#[test]
fn server_messages_reject_unknown_fields_and_missing_seq() {
    assert!(serde_json::from_str::<ServerMessage>(r#"{"type":"waiting","seq":1}"#).is_ok());
    assert!(serde_json::from_str::<ServerMessage>(r#"{"type":"waiting"}"#).is_err());
    assert!(serde_json::from_str::<ServerMessage>(
        r#"{"type":"peer_left","role":"patient","seq":1,"x":1}"#
    )
    .is_err());
}

#[test]
fn malformed_frames_are_malformed() {
    for text in [
        "",
        "not json",
        "{",
        "[]",
        "42",
        r#""hello""#,
        r#"{"no_type":1}"#,
        r#"{"type":7}"#,
        r#"{"type":null}"#,
    ] {
        let err = parse_client_message(text).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Malformed, "{text}: {err}");
    }
}

#[test]
fn unknown_types_are_unknown() {
    let err = parse_client_message(r#"{"type":"subscribe","x":1}"#).unwrap_err();
    assert_eq!(
        err,
        ParseError::UnknownType {
            type_name: "subscribe".into()
        }
    );
    assert_eq!(err.code(), ErrorCode::UnknownType);
    // Type names are case-sensitive.
    assert_eq!(
        parse_client_message(r#"{"type":"Ping"}"#)
            .unwrap_err()
            .code(),
        ErrorCode::UnknownType
    );
}

#[test]
fn bad_fields_are_invalid_fields_and_do_not_echo_values() {
    let cases = [
        r#"{"type":"offer"}"#,
        r#"{"type":"offer","sdp":"10.0.0.1 not an sdp"}"#,
        r#"{"type":"offer","sdp":"v=0\r\n","extra":"10.0.0.1"}"#,
        r#"{"type":"admit","extra":"10.0.0.1"}"#,
        r#"{"type":"ping","x":1}"#,
        r#"{"type":"chat","text":""}"#,
        r#"{"type":"candidate","candidate":"10.0.0.1","sdp_m_line_index":"10.0.0.1"}"#,
        r#"{"type":"stats","connection_state":"connected","bytes_received":-1,"frames_received":0,"audio_packets_received":0}"#,
        r#"{"type":"stats","connection_state":"10.0.0.1","bytes_received":1,"frames_received":0,"audio_packets_received":0}"#,
        r#"{"type":"hello","version":1,"auth":{"link_token":"a","session":{"consultation":"00000000-0000-0000-0000-000000000001"}}}"#,
        r#"{"type":"hello","version":1}"#,
    ];
    for text in cases {
        let err = parse_client_message(text).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidFields, "{text}: {err}");
        assert!(!err.to_string().contains("10.0.0.1"), "{err}");
    }
}

#[test]
fn hello_features_name_what_the_client_understands() {
    let hello = |features: Value| {
        parse_client_message(
            &json!({"type": "hello", "version": 1, "auth": {"link_token": "t"}, "features": features})
                .to_string(),
        )
    };
    let Ok(ClientMessage::Hello(h)) = hello(json!(["media_state"])) else {
        panic!("media_state accepted");
    };
    assert!(h.features.media_state);
    // A name this server does not know is ignored; null and [] ask for none.
    for none in [json!(["from_the_future"]), json!([]), Value::Null] {
        let Ok(ClientMessage::Hello(h)) = hello(none.clone()) else {
            panic!("{none} accepted");
        };
        assert!(h.features.is_empty(), "{none}");
    }
    // Not a list of short snake_case names: refused.
    for bad in [
        json!("media_state"),
        json!(["Media State"]),
        json!([""]),
        json!(["x".repeat(33)]),
        json!(vec!["a"; 17]),
        json!([1]),
    ] {
        assert_eq!(
            hello(bad.clone()).unwrap_err().code(),
            ErrorCode::InvalidFields,
            "{bad}"
        );
    }
    // A hello without features serializes without the field.
    let plain = serde_json::to_value(ClientMessage::Hello(Hello {
        version: 1,
        auth: Auth::LinkToken(LinkToken::parse("t".into()).unwrap()),
        resume: None,
        features: Features::default(),
    }))
    .unwrap();
    assert!(plain.get("features").is_none(), "{plain}");
}

#[test]
fn media_state_needs_audio_and_video() {
    let parse = |v: Value| parse_client_message(&v.to_string());
    assert_eq!(
        parse(json!({"type": "media_state", "audio": true, "video": false})).unwrap(),
        ClientMessage::MediaState(MediaState {
            audio: true,
            video: false,
            screen: false
        })
    );
    for bad in [
        json!({"type": "media_state", "audio": true}),
        json!({"type": "media_state", "audio": "yes", "video": true}),
        json!({"type": "media_state", "audio": true, "video": true, "volume": 3}),
    ] {
        assert_eq!(
            parse(bad.clone()).unwrap_err().code(),
            ErrorCode::InvalidFields,
            "{bad}"
        );
    }
}

#[test]
fn chat_length_is_limited() {
    let ok = json!({"type": "chat", "text": "x".repeat(MAX_CHAT_CHARS)}).to_string();
    assert!(parse_client_message(&ok).is_ok());
    let long = json!({"type": "chat", "text": "x".repeat(MAX_CHAT_CHARS + 1)}).to_string();
    let err = parse_client_message(&long).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidFields);
    assert!(
        err.to_string().contains("longer than 2000 characters"),
        "{err}"
    );
}

#[test]
fn hello_checks_version_and_kind() {
    let good = r#"{"type":"hello","version":1,"auth":{"link_token":"abc"}}"#;
    let hello = parse_hello(good).unwrap();
    assert_eq!(
        hello.auth,
        Auth::LinkToken(LinkToken::parse("abc".into()).unwrap())
    );
    assert!(hello.resume.is_none());

    let old = r#"{"type":"hello","version":0,"auth":{"link_token":"abc"}}"#;
    let err = parse_hello(old).unwrap_err();
    assert_eq!(err.code(), ErrorCode::VersionMismatch);
    assert_eq!(
        err,
        HelloError::VersionMismatch {
            got: 0,
            supported: PROTOCOL_VERSION_2
        }
    );

    let err = parse_hello(r#"{"type":"ping"}"#).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HelloRequired);
    assert_eq!(
        parse_hello("nope").unwrap_err().code(),
        ErrorCode::Malformed
    );
}

#[test]
fn unknown_error_codes_from_newer_servers_are_other() {
    let msg: ServerMessage =
        serde_json::from_str(r#"{"type":"error","seq":0,"code":"some_future_code","message":"m"}"#)
            .unwrap();
    match msg.body {
        ServerBody::Error(e) => assert_eq!(e.code, ErrorCode::Other),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_codes_serialize_as_their_wire_names() {
    for code in [
        ErrorCode::Malformed,
        ErrorCode::UnknownType,
        ErrorCode::InvalidFields,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::WrongState,
        ErrorCode::Forbidden,
        ErrorCode::VersionMismatch,
        ErrorCode::HelloRequired,
        ErrorCode::Unauthorized,
        ErrorCode::LinkExpired,
        ErrorCode::LinkNotYetOpen,
        ErrorCode::NotEligible,
        ErrorCode::AdmissionCheckFailed,
        ErrorCode::Replaced,
        ErrorCode::TooManyErrors,
        ErrorCode::Internal,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
    }
}

#[test]
fn connection_scoped_bodies() {
    for body in all_server_bodies() {
        let expected = matches!(body.type_name(), "welcome" | "pong" | "error" | "replaced");
        assert_eq!(
            body.is_connection_scoped(),
            expected,
            "{}",
            body.type_name()
        );
    }
}

#[test]
fn media_flowing_needs_connection_bytes_and_frames_or_audio() {
    let base = Stats {
        connection_state: ConnectionState::Connected,
        selected_candidate_type: None,
        bytes_received: 10,
        frames_received: 0,
        audio_packets_received: 1,
        bytes_sent: None,
    };
    assert!(base.media_flowing());
    assert!(!Stats {
        bytes_received: 0,
        ..base
    }
    .media_flowing());
    assert!(!Stats {
        audio_packets_received: 0,
        ..base
    }
    .media_flowing());
    assert!(Stats {
        audio_packets_received: 0,
        frames_received: 3,
        ..base
    }
    .media_flowing());
    assert!(!Stats {
        connection_state: ConnectionState::Connecting,
        ..base
    }
    .media_flowing());
}

#[test]
fn to_is_accepted_only_where_it_addresses_and_only_as_an_id() {
    let id = Uuid::from_u128(7);
    let admit = parse_addressed(&format!(r#"{{"type":"admit","to":"{id}"}}"#)).unwrap();
    assert_eq!(admit.message, ClientMessage::Admit {});
    assert_eq!(admit.to, Some(id));
    let plain = parse_addressed(r#"{"type":"admit"}"#).unwrap();
    assert_eq!(plain.to, None);
    for (text, code) in [
        (
            r#"{"type":"ping","to":"00000000-0000-0000-0000-000000000007"}"#,
            ErrorCode::InvalidFields,
        ),
        (
            r#"{"type":"chat","text":"hej","to":"00000000-0000-0000-0000-000000000007"}"#,
            ErrorCode::InvalidFields,
        ),
        (
            r#"{"type":"admit","to":"therapist"}"#,
            ErrorCode::InvalidFields,
        ),
        (r#"{"type":"admit","to":7}"#, ErrorCode::InvalidFields),
        (
            r#"{"type":"teleport","to":"00000000-0000-0000-0000-000000000007"}"#,
            ErrorCode::UnknownType,
        ),
    ] {
        let err = parse_addressed(text).unwrap_err();
        assert_eq!(err.code(), code, "{text}");
        assert!(!err.to_string().contains("therapist"), "no echo: {err}");
    }
    // Version 1's parser still refuses `to` as an unknown field.
    let err = parse_client_message(&format!(r#"{{"type":"admit","to":"{id}"}}"#)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidFields);
    // Every listed version is accepted, and only those.
    for version in SUPPORTED_VERSIONS {
        let text =
            format!(r#"{{"type":"hello","version":{version},"auth":{{"link_token":"abc"}}}}"#);
        assert_eq!(parse_hello(&text).unwrap().version, version);
    }
    let text = r#"{"type":"hello","version":3,"auth":{"link_token":"abc"}}"#;
    assert_eq!(
        parse_hello(text).unwrap_err().code(),
        ErrorCode::VersionMismatch
    );
}
