//! Messages the server sends to a client.

use crate::client::{EndOfCandidates, IceCandidate};
use crate::error::ErrorCode;
use crate::types::{CandidatePolicy, ChatText, IceServer, Note, ResumeToken, Role, Sdp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A message from the server: a [`ServerBody`] plus its sequence number.
///
/// On the wire the two are one flat JSON object, `{"type": …, "seq": n, …}`.
///
/// `seq` numbers the messages of one *participant* (not of one WebSocket):
/// they start at 1 and grow by one per message, across resumes and device
/// takeovers. Messages that only concern the current WebSocket (`welcome`,
/// `pong`, `error`, `replaced`) carry `seq: 0`, are not counted and are never
/// replayed. A client remembers the highest `seq` it has processed and sends it
/// as `resume.last_seq` when it reconnects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMessage {
    /// What happened.
    #[serde(flatten)]
    pub body: ServerBody,
    /// Per-participant sequence number; 0 for connection-scoped messages.
    pub seq: u64,
    /// Version 2: the id of the participant the message comes from or is
    /// about (relayed negotiation, `chat`, `media_state`,
    /// `media_established`). Never sent to version 1 clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Uuid>,
}

impl ServerMessage {
    /// A connection-scoped message (`seq` 0).
    pub fn unsequenced(body: ServerBody) -> Self {
        ServerMessage {
            body,
            seq: 0,
            sender: None,
        }
    }

    /// A connection-scoped `error` message, for example for the pump to
    /// answer a hello it rejects (`unauthorized`, `link_expired`, …).
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::unsequenced(ServerBody::Error(ErrorBody {
            code,
            message: message.into(),
            failures: Vec::new(),
        }))
    }

    /// Serializes to the JSON text frame.
    pub fn to_json(&self) -> String {
        // A ServerMessage holds only strings, numbers, booleans, UUIDs and
        // enums with string keys, which serde_json always serializes.
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// The content of a server message, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerBody {
    /// Answer to `hello`: the connection is joined.
    Welcome(Welcome),
    /// Version 2: a participant is now where you can see it, or starts
    /// anew (replaces what you knew of it; with `state` `admitted` while
    /// you are in the call, start a new peer connection with it).
    ParticipantJoined {
        /// Who, and where it stands.
        participant: ParticipantInfo,
    },
    /// Version 2: a participant is gone from where you can see it (close
    /// any peer connection with it).
    ParticipantLeft {
        /// Its id.
        participant: Uuid,
    },
    /// Patient: you are in the waiting room until the therapist admits you.
    Waiting {},
    /// Therapist: a patient is in the waiting room.
    PatientWaiting {},
    /// Patient: the therapist admitted you; `peer_joined` follows.
    Admitted {},
    /// Patient: you were not let in. The connection is closed after this.
    Denied(Denied),
    /// The peer is in the call: create the peer connection and negotiate.
    PeerJoined {
        /// The peer's role.
        role: Role,
    },
    /// The peer left (the waiting room or the call), or its connection was
    /// lost for longer than the resume grace period. Tear down the peer
    /// connection.
    PeerLeft {
        /// The peer's role.
        role: Role,
    },
    /// The peer's SDP offer (filtered under `relay_only`).
    Offer {
        /// The session description.
        sdp: Sdp,
    },
    /// The peer's SDP answer (filtered under `relay_only`).
    Answer {
        /// The session description.
        sdp: Sdp,
    },
    /// A candidate trickled by the peer (only relay ones under `relay_only`).
    Candidate(IceCandidate),
    /// The peer has no more candidates in this ICE generation.
    EndOfCandidates(EndOfCandidates),
    /// The peer asks for an ICE restart.
    IceRestart {},
    /// Answer to `ping`.
    Pong {},
    /// A request failed; nothing changed on the server.
    Error(ErrorBody),
    /// Another connection of the same participant (a second device or tab)
    /// took over. The connection is closed after this; do not reconnect
    /// automatically.
    Replaced {},
    /// Both sides reported received media: the two-way call is established.
    MediaEstablished {},
    /// A chat line from the peer.
    Chat {
        /// Who wrote it.
        from: Role,
        /// The line.
        text: ChatText,
    },
    /// The peer's microphone, camera and screen sharing (only to a client
    /// whose hello asked for `media_state`).
    MediaState {
        /// Whose.
        from: Role,
        /// Their microphone is on.
        audio: bool,
        /// Their camera (or shared screen) is on.
        video: bool,
        /// Their video is a shared screen.
        screen: bool,
    },
    /// Your session ends; the connection is closed after this.
    Bye {
        /// Why.
        reason: ByeReason,
    },
}

/// Every `type` value the server may send, in documentation order.
pub const SERVER_MESSAGE_TYPES: &[&str] = &[
    "welcome",
    "participant_joined",
    "participant_left",
    "waiting",
    "patient_waiting",
    "admitted",
    "denied",
    "peer_joined",
    "peer_left",
    "offer",
    "answer",
    "candidate",
    "end_of_candidates",
    "ice_restart",
    "pong",
    "error",
    "replaced",
    "media_established",
    "chat",
    "media_state",
    "bye",
];

impl ServerBody {
    /// The wire `type`; safe to log (carries no content).
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerBody::Welcome(_) => "welcome",
            ServerBody::ParticipantJoined { .. } => "participant_joined",
            ServerBody::ParticipantLeft { .. } => "participant_left",
            ServerBody::Waiting {} => "waiting",
            ServerBody::PatientWaiting {} => "patient_waiting",
            ServerBody::Admitted {} => "admitted",
            ServerBody::Denied(_) => "denied",
            ServerBody::PeerJoined { .. } => "peer_joined",
            ServerBody::PeerLeft { .. } => "peer_left",
            ServerBody::Offer { .. } => "offer",
            ServerBody::Answer { .. } => "answer",
            ServerBody::Candidate(_) => "candidate",
            ServerBody::EndOfCandidates(_) => "end_of_candidates",
            ServerBody::IceRestart {} => "ice_restart",
            ServerBody::Pong {} => "pong",
            ServerBody::Error(_) => "error",
            ServerBody::Replaced {} => "replaced",
            ServerBody::MediaEstablished {} => "media_established",
            ServerBody::Chat { .. } => "chat",
            ServerBody::MediaState { .. } => "media_state",
            ServerBody::Bye { .. } => "bye",
        }
    }

    /// True for the messages that concern only the current WebSocket and
    /// therefore carry `seq: 0` and are never replayed.
    pub fn is_connection_scoped(&self) -> bool {
        matches!(
            self,
            ServerBody::Welcome(_)
                | ServerBody::Pong {}
                | ServerBody::Error(_)
                | ServerBody::Replaced {}
        )
    }
}

/// The answer to `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// The protocol version the server speaks.
    pub version: u32,
    /// Your role in this consultation.
    pub role: Role,
    /// The consultation id.
    pub consultation: Uuid,
    /// For `new RTCPeerConnection({iceServers})`.
    pub ice_servers: Vec<IceServer>,
    /// `relay_only` means: set `iceTransportPolicy: "relay"`; the server
    /// removes non-relay candidates anyway.
    pub candidate_policy: CandidatePolicy,
    /// Whether the other participant is currently in the consultation
    /// (connected, or disconnected within its resume grace period).
    pub peer_present: bool,
    /// Perfect-negotiation role: the patient is polite, the therapist not.
    pub polite: bool,
    /// Present this in `hello.resume` to resume after a dropped WebSocket.
    /// It stays the same across resumes; a join without a valid resume (a new
    /// device or tab) gets a new one, and the previous device's token then
    /// answers `error` `replaced`.
    pub resume_token: ResumeToken,
    /// True when this connection resumed the previous one: the messages the
    /// client missed (`seq > last_seq`) follow. False means a fresh start: drop
    /// any previous call state and wait for the state messages that follow.
    pub resumed: bool,
    /// Limits the client must respect.
    pub limits: Limits,
    /// Version 2: your participant id (others address you by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<Uuid>,
    /// Version 2: the participants you can see now (the therapist sees
    /// everyone, a patient the therapist and, once admitted, the others in
    /// the call). Information only: peer connections start on
    /// `participant_joined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ParticipantInfo>>,
}

/// Version 2: a participant as another sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantInfo {
    /// Its id, for `to` and `from`.
    pub id: Uuid,
    /// What it is in the consultation.
    pub role: Role,
    /// Where it stands.
    pub state: ParticipantState,
    /// Your perfect-negotiation role in the pair of you and it: the
    /// therapist is never polite; of two patients, the one with the greater
    /// id is.
    pub polite: bool,
}

/// Version 2: where a participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantState {
    /// In the waiting room (only the therapist sees waiting participants).
    Waiting,
    /// In the call (the therapist is always).
    Admitted,
}

/// Limits announced in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted text frame, in bytes (UTF-8).
    pub max_frame_bytes: usize,
    /// How often the client should send `ping`, in milliseconds.
    pub ping_interval_ms: u64,
    /// A connection silent for longer than this is treated as dropped.
    pub heartbeat_timeout_ms: u64,
    /// How long a dropped participant may resume.
    pub resume_grace_ms: u64,
    /// Sustained message rate allowed per connection (messages per second).
    pub rate_per_second: u32,
    /// Burst allowed above the sustained rate (messages).
    pub rate_burst: u32,
    /// Longest chat line, in characters.
    pub max_chat_chars: usize,
}

/// Content of `denied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denied {
    /// Why entry was refused.
    pub reason: DeniedReason,
    /// The therapist's note, if they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Note>,
    /// For `not_eligible`: the failed eligibility criteria (stable codes from
    /// the domain, e.g. `assessment_revoked`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Why a patient was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeniedReason {
    /// The therapist sent `deny`.
    ByTherapist,
    /// The eligibility re-check at admission failed (see `failures`).
    NotEligible,
}

/// Content of `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable English explanation; never contains SDP or addresses.
    pub message: String,
    /// For `not_eligible`: the failed eligibility criteria.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Why a session ended (`bye`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    /// You sent `leave`.
    Left,
    /// The therapist ended the consultation (sent `leave` during the call).
    EndedByTherapist,
}
