//! Pins `docs/protocol.md` to the code: every JSON example parses into the
//! protocol types and serializes back to the same JSON, every message type
//! has an example, and every error code and close code is documented.

use konsult_protocol::*;
use serde_json::Value;
use std::collections::BTreeSet;

const DOC: &str = include_str!("../../../docs/protocol.md");

/// (info string, body) of every fenced block tagged `json client` or `json server`.
fn examples(kind: &str) -> Vec<String> {
    let fence = format!("```json {kind}");
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if line.trim() == fence {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push(body.join("\n"));
        }
    }
    out
}

#[test]
fn client_examples_parse_and_round_trip() {
    let examples = examples("client");
    assert!(examples.len() >= CLIENT_MESSAGE_TYPES.len());
    let mut seen = BTreeSet::new();
    for text in examples {
        // Version 2's `to` sits beside the message's own fields.
        let Addressed { message: msg, to } =
            parse_addressed(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let expected: Value = serde_json::from_str(&text).unwrap();
        let mut back = serde_json::to_value(&msg).unwrap();
        if let Some(to) = to {
            back["to"] = to.to_string().into();
        }
        assert_eq!(back, expected, "{text}");
        seen.insert(msg.type_name());
    }
    let all: BTreeSet<_> = CLIENT_MESSAGE_TYPES.iter().copied().collect();
    assert_eq!(seen, all, "every client message has an example");
}

#[test]
fn server_examples_parse_and_round_trip() {
    let mut seen = BTreeSet::new();
    for text in examples("server") {
        let msg: ServerMessage =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let expected: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&msg).unwrap(), expected, "{text}");
        assert_eq!(
            msg.seq == 0,
            msg.body.is_connection_scoped(),
            "seq 0 exactly for connection-scoped messages: {text}"
        );
        seen.insert(msg.body.type_name());
    }
    let all: BTreeSet<_> = SERVER_MESSAGE_TYPES.iter().copied().collect();
    assert_eq!(seen, all, "every server message has an example");
}

#[test]
fn every_error_code_is_documented() {
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
        let row = format!("| `{}` |", code.as_str());
        assert!(
            DOC.contains(&row),
            "error code {code} missing from the table"
        );
    }
}

#[test]
fn every_close_code_is_documented() {
    for code in [
        CloseCode::BYE,
        CloseCode::REJECTED,
        CloseCode::REPLACED,
        CloseCode::DENIED,
        CloseCode::TOO_MANY_ERRORS,
        CloseCode::HEARTBEAT_TIMEOUT,
    ] {
        assert!(
            DOC.contains(&format!("| {code} |")),
            "close code {code} missing"
        );
    }
}

#[test]
fn the_documented_version_is_the_code_version() {
    assert!(DOC.starts_with(&format!(
        "# Konsult signaling protocol, versions {PROTOCOL_VERSION} and {PROTOCOL_VERSION_2}"
    )));
    assert_eq!(SUPPORTED_VERSIONS, [PROTOCOL_VERSION, PROTOCOL_VERSION_2]);
    assert!(DOC.contains(&format!("**`{WS_PATH}`**")));
}
