//! The Konsult signaling wire protocol.
//!
//! One WebSocket endpoint, `/ws`, carries JSON text frames. Each frame is one
//! message, an object tagged by `"type"`:
//!
//! - client → server: [`ClientMessage`]; the first frame is always `hello`
//!   (parse it with [`parse_hello`], later frames with
//!   [`parse_client_message`]);
//! - server → client: [`ServerMessage`], a [`ServerBody`] plus a
//!   per-participant `seq` used to resume after a dropped connection.
//!
//! `docs/protocol.md` in the repository describes every message, the states
//! in which it is allowed, the error codes, the limits, resume, takeover and
//! relay-only filtering. The JSON examples there are pinned by this crate's
//! tests.
//!
//! This crate only describes the wire. The room logic (who may send what
//! when) lives in `konsult-signal`.

#![warn(missing_docs)]

mod client;
mod error;
mod parse;
mod server;
mod types;

pub use client::{
    Auth, ClientMessage, EndOfCandidates, Features, Hello, IceCandidate, MediaState, Resume,
    SessionAuth, Stats, CLIENT_MESSAGE_TYPES,
};
pub use error::{CloseCode, ErrorCode, ParseError};
pub use parse::{parse_addressed, parse_client_message, parse_hello, Addressed, HelloError};
pub use server::{
    ByeReason, Denied, DeniedReason, ErrorBody, Limits, ParticipantInfo, ParticipantState,
    ServerBody, ServerMessage, Welcome, SERVER_MESSAGE_TYPES,
};
pub use types::{
    CandidateLine, CandidatePolicy, CandidateType, ChatText, ConnectionState, IceServer,
    InvalidText, LinkToken, Mid, Note, ResumeToken, Role, Sdp, Ufrag, MAX_CANDIDATE_BYTES,
    MAX_CHAT_CHARS, MAX_LINK_TOKEN_BYTES, MAX_MID_BYTES, MAX_NOTE_CHARS,
};

/// Version 1 of the protocol: one therapist and one patient, each
/// addressing "the other side". Konsult's web client and konsult-peer
/// speak it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Version 2: participants by id (`to` and `from`), rooms of more than two.
pub const PROTOCOL_VERSION_2: u32 = 2;

/// The versions a server speaks. Any other `hello.version` is answered with
/// `error` `version_mismatch` and the connection is closed.
pub const SUPPORTED_VERSIONS: [u32; 2] = [PROTOCOL_VERSION, PROTOCOL_VERSION_2];

/// The WebSocket endpoint path.
pub const WS_PATH: &str = "/ws";
