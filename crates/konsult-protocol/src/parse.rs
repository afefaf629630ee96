//! Turning a raw text frame into a [`ClientMessage`], with a typed error.

use crate::client::{ClientMessage, Hello, CLIENT_MESSAGE_TYPES};
use crate::error::{ErrorCode, ParseError};
use serde::Deserialize;
use uuid::Uuid;

/// Parses one text frame into a [`ClientMessage`].
///
/// Distinguishes a frame that is not a JSON object with a string `type`
/// ([`ParseError::Malformed`]) from an unknown `type`
/// ([`ParseError::UnknownType`]) from a known type with bad fields
/// ([`ParseError::InvalidFields`]). The frame size limit is the caller's job.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    let value = parse_object(text)?;
    deserialize_message(value)
}

/// A client message with its version 2 address.
#[derive(Debug, Clone, PartialEq)]
pub struct Addressed {
    /// The message.
    pub message: ClientMessage,
    /// `to`: the participant the message is for or about (version 2).
    pub to: Option<Uuid>,
}

impl Addressed {
    /// A message for no one in particular (version 1, or a message that
    /// goes to everyone in the call).
    pub fn new(message: ClientMessage) -> Self {
        Addressed { message, to: None }
    }

    /// The text frame: the message's JSON with `to` beside its fields.
    pub fn to_json(&self) -> String {
        // Client messages hold strings, numbers and UUIDs only.
        let mut value = serde_json::to_value(&self.message).expect("client messages serialize");
        if let (Some(to), Some(object)) = (self.to, value.as_object_mut()) {
            object.insert("to".into(), to.to_string().into());
        }
        value.to_string()
    }

    /// Whether this kind of message may carry `to`.
    pub fn addressable(message: &ClientMessage) -> bool {
        ADDRESSABLE.contains(&message.type_name())
    }
}

/// The messages that may carry `to`.
const ADDRESSABLE: &[&str] = &[
    "admit",
    "deny",
    "offer",
    "answer",
    "candidate",
    "end_of_candidates",
    "ice_restart",
    "stats",
];

/// Parses a client text frame that may carry version 2's `to` (a
/// participant id) beside the message's own fields. Same checks as
/// [`parse_client_message`]; `to` on a message that cannot carry it, or
/// that is not a UUID, is `invalid_fields`.
pub fn parse_addressed(text: &str) -> Result<Addressed, ParseError> {
    let mut value = parse_object(text)?;
    let to = match value.as_object_mut().and_then(|o| o.remove("to")) {
        None => None,
        Some(to) => {
            let message_type = message_type(&value)?;
            if !ADDRESSABLE.contains(&message_type) {
                return Err(ParseError::InvalidFields {
                    message_type,
                    problem: "`to` is not allowed on this message".into(),
                });
            }
            let id = to
                .as_str()
                .and_then(|t| Uuid::parse_str(t).ok())
                .ok_or_else(|| ParseError::InvalidFields {
                    message_type,
                    problem: "`to` must be a participant id (a UUID)".into(),
                })?;
            Some(id)
        }
    };
    Ok(Addressed {
        message: deserialize_message(value)?,
        to,
    })
}

fn parse_object(text: &str) -> Result<serde_json::Value, ParseError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| ParseError::Malformed("not valid JSON"))?;
    if !value.is_object() {
        return Err(ParseError::Malformed("not a JSON object"));
    }
    Ok(value)
}

fn message_type(value: &serde_json::Value) -> Result<&'static str, ParseError> {
    let type_value = value
        .get("type")
        .ok_or(ParseError::Malformed("no `type` field"))?;
    let type_str = type_value
        .as_str()
        .ok_or(ParseError::Malformed("`type` is not a string"))?;
    CLIENT_MESSAGE_TYPES
        .iter()
        .copied()
        .find(|t| *t == type_str)
        .ok_or_else(|| ParseError::UnknownType {
            type_name: sanitize_type_name(type_str),
        })
}

fn deserialize_message(value: serde_json::Value) -> Result<ClientMessage, ParseError> {
    let message_type = message_type(&value)?;
    ClientMessage::deserialize(value).map_err(|e| ParseError::InvalidFields {
        message_type,
        problem: describe_serde_error(&e.to_string()),
    })
}

/// Why the first frame of a connection could not be accepted as a `hello`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The frame did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The frame parsed, but is not a `hello`.
    #[error("the first message must be `hello`, got `{0}`")]
    NotHello(&'static str),
    /// The client speaks another protocol version.
    #[error("protocol version {got} is not supported; this server speaks 1 to {supported}")]
    VersionMismatch {
        /// What the client sent.
        got: u32,
        /// The latest version the server speaks.
        supported: u32,
    },
}

impl HelloError {
    /// The wire error code to answer with before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            HelloError::Parse(e) => e.code(),
            HelloError::NotHello(_) => ErrorCode::HelloRequired,
            HelloError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
        }
    }
}

/// Parses the first frame of a connection, which must be a `hello` of this
/// protocol version.
pub fn parse_hello(text: &str) -> Result<Hello, HelloError> {
    match parse_client_message(text)? {
        ClientMessage::Hello(hello) => {
            if hello.check_version().is_err() {
                return Err(HelloError::VersionMismatch {
                    got: hello.version,
                    supported: crate::PROTOCOL_VERSION_2,
                });
            }
            Ok(hello)
        }
        other => Err(HelloError::NotHello(other.type_name())),
    }
}

/// Keeps an unknown type name printable and short, so it can go in a reply
/// or a log line without carrying arbitrary client text.
fn sanitize_type_name(raw: &str) -> String {
    raw.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Rewrites a serde error message so it names the problem but never repeats
/// the client's value (which may be an SDP, a candidate or a chat line).
fn describe_serde_error(raw: &str) -> String {
    // serde_json appends " at line L column C" for text input; from a Value
    // there is no position, but strip it defensively.
    let msg = match raw.rfind(" at line ") {
        Some(i) => &raw[..i],
        None => raw,
    };
    // The "expected …" tail is generated from our own types; the part before
    // it may quote the client's value.
    let expected = msg.rfind(", expected ").map(|i| &msg[i + 2..]);
    let with_expected = |what: &str| match expected {
        Some(tail) => format!("{what}, {tail}"),
        None => what.to_string(),
    };
    if msg.starts_with("missing field ") || msg.starts_with("duplicate field ") {
        // The field name is one of ours.
        msg.to_string()
    } else if msg.starts_with("invalid type") {
        with_expected("invalid type")
    } else if msg.starts_with("invalid value") {
        with_expected("invalid value")
    } else if msg.starts_with("invalid length") {
        with_expected("invalid length")
    } else if msg.starts_with("unknown field") {
        with_expected("unknown field")
    } else if msg.starts_with("unknown variant") {
        with_expected("unknown variant")
    } else if known_validation_message(msg) {
        msg.to_string()
    } else {
        "invalid value".to_string()
    }
}

/// Messages produced by our own newtype validation, which never quote input.
fn known_validation_message(msg: &str) -> bool {
    msg == "must not be empty"
        || msg.starts_with("longer than ")
        || msg == "contains a character that is not allowed here"
        || msg.starts_with("an SDP must start")
        || msg.starts_with("a resume token has")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_client_values() {
        let m = describe_serde_error(
            "invalid type: string \"192.0.2.1\", expected u16 at line 1 column 9",
        );
        assert_eq!(m, "invalid type, expected u16");
        let m = describe_serde_error("unknown field `10.0.0.1`, expected `sdp`");
        assert_eq!(m, "unknown field, expected `sdp`");
        assert_eq!(
            describe_serde_error("missing field `sdp`"),
            "missing field `sdp`"
        );
        assert_eq!(describe_serde_error("something 10.1.1.1"), "invalid value");
    }

    #[test]
    fn unknown_type_names_are_sanitized() {
        assert_eq!(sanitize_type_name("Evil<script>"), "?vil?script?");
        assert_eq!(sanitize_type_name(&"a".repeat(500)).len(), 64);
    }
}
