//! Error codes on the wire, WebSocket close codes, and frame parse errors.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The stable, machine-readable code of an `error` message.
///
/// Clients switch on these; their names never change within a protocol
/// version. Unknown codes from a newer server deserialize as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object with a string `type`.
    Malformed,
    /// The `type` is not one this protocol version knows.
    UnknownType,
    /// The `type` is known but a field is missing, unknown or invalid.
    InvalidFields,
    /// The frame is larger than the limit (`welcome.limits.max_frame_bytes`).
    TooLarge,
    /// The connection sends faster than the rate limit.
    RateLimited,
    /// The message is not allowed in the current state (e.g. `offer` before
    /// admission, `admit` with nobody waiting, a second `hello`).
    WrongState,
    /// The message is not allowed for your role (e.g. a patient sending `admit`).
    Forbidden,
    /// `hello.version` differs from the server's protocol version.
    VersionMismatch,
    /// The first frame was not a `hello`.
    HelloRequired,
    /// Credentials missing or invalid (no session, forged link, other clinic).
    Unauthorized,
    /// The join link has expired.
    LinkExpired,
    /// The join link's consultation window has not opened yet.
    LinkNotYetOpen,
    /// The eligibility check failed (see `failures`).
    NotEligible,
    /// The eligibility check could not be completed in time; try `admit` again.
    AdmissionCheckFailed,
    /// This connection was taken over by a newer one of the same participant.
    Replaced,
    /// Too many errors in a short time; the connection is being closed.
    TooManyErrors,
    /// Something went wrong on the server; nothing changed.
    Internal,
    /// A code this client version does not know.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The wire name, e.g. `"wrong_state"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidFields => "invalid_fields",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::LinkExpired => "link_expired",
            ErrorCode::LinkNotYetOpen => "link_not_yet_open",
            ErrorCode::NotEligible => "not_eligible",
            ErrorCode::AdmissionCheckFailed => "admission_check_failed",
            ErrorCode::Replaced => "replaced",
            ErrorCode::TooManyErrors => "too_many_errors",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server uses (RFC 6455 section 7.4; 4000-4999
/// are application codes). A client must not auto-reconnect after
/// [`CloseCode::REPLACED`], [`CloseCode::DENIED`] or [`CloseCode::BYE`].
pub struct CloseCode;

impl CloseCode {
    /// Normal closure after `bye`.
    pub const BYE: u16 = 1000;
    /// Policy violation: the hello was rejected (see the preceding `error`).
    pub const REJECTED: u16 = 1008;
    /// Another connection of the same participant took over.
    pub const REPLACED: u16 = 4001;
    /// The patient was denied entry (see the preceding `denied`).
    pub const DENIED: u16 = 4002;
    /// Too many errors; reconnecting with resume is allowed.
    pub const TOO_MANY_ERRORS: u16 = 4003;
    /// No frame within the heartbeat timeout; reconnect with resume.
    pub const HEARTBEAT_TIMEOUT: u16 = 4004;
    /// The consultation's server is changing (its room moves to another
    /// node of a cluster); reconnect with resume (IANA: try again later).
    pub const MOVED: u16 = 1013;
}

/// Why a text frame could not be turned into a [`crate::ClientMessage`].
///
/// The three kinds map to three [`ErrorCode`]s, so a client can tell a
/// broken encoder from a too-new client from a wrong field. Display texts
/// never repeat field values (which may be SDP or addresses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, not an object, or no string `type`.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A `type` this protocol version does not know.
    #[error("unknown message type")]
    UnknownType {
        /// The received type, cut to 64 bytes and reduced to `[a-z0-9_]`.
        type_name: String,
    },
    /// A known `type` with missing, unknown or invalid fields.
    #[error("invalid fields in `{message_type}` message: {problem}")]
    InvalidFields {
        /// The message type.
        message_type: &'static str,
        /// What is wrong, without the offending value.
        problem: String,
    },
}

impl ParseError {
    /// The wire error code for this parse error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::Malformed(_) => ErrorCode::Malformed,
            ParseError::UnknownType { .. } => ErrorCode::UnknownType,
            ParseError::InvalidFields { .. } => ErrorCode::InvalidFields,
        }
    }
}
