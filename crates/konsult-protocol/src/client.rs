//! Messages a client sends to the server.

use crate::types::{
    CandidateLine, CandidateType, ChatText, ConnectionState, LinkToken, Mid, Note, ResumeToken,
    Sdp, Ufrag,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A message from a client (patient page, therapist dashboard, test peer).
///
/// JSON objects tagged by `"type"`; unknown fields are rejected. The first
/// frame on a connection must be [`ClientMessage::Hello`]; see
/// `docs/protocol.md` for the states in which each message is allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First frame: protocol version, credentials and an optional resume.
    Hello(Hello),
    /// Therapist: let the waiting patient into the call.
    Admit {},
    /// Therapist: turn the waiting patient away, optionally with a note.
    Deny {
        /// Shown to the patient.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Note>,
    },
    /// An SDP offer for the peer (`RTCSessionDescription` of type offer).
    Offer {
        /// The session description.
        sdp: Sdp,
    },
    /// An SDP answer for the peer.
    Answer {
        /// The session description.
        sdp: Sdp,
    },
    /// A trickled ICE candidate for the peer.
    Candidate(IceCandidate),
    /// No more candidates in this ICE generation.
    EndOfCandidates(EndOfCandidates),
    /// Ask the peer to take part in an ICE restart (it should restart ICE or
    /// expect a restart offer).
    IceRestart {},
    /// Leave the consultation for good (no resume).
    Leave {},
    /// Heartbeat; answered with `pong`.
    Ping {},
    /// Call-quality statistics from `RTCPeerConnection.getStats()`.
    Stats(Stats),
    /// An in-call chat line for the peer.
    Chat {
        /// The line.
        text: ChatText,
    },
    /// This side's microphone, camera and screen sharing, for the peer's
    /// screen (relayed only to a peer that asked for `media_state`).
    MediaState(MediaState),
}

/// Whether one side's microphone and camera are on and whether it shares
/// its screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaState {
    /// The microphone is on.
    pub audio: bool,
    /// The camera (or the shared screen) is on.
    pub video: bool,
    /// The video is a shared screen, not the camera.
    #[serde(default)]
    pub screen: bool,
}

/// Every `type` value a client may send, in documentation order.
pub const CLIENT_MESSAGE_TYPES: &[&str] = &[
    "hello",
    "admit",
    "deny",
    "offer",
    "answer",
    "candidate",
    "end_of_candidates",
    "ice_restart",
    "leave",
    "ping",
    "stats",
    "chat",
    "media_state",
];

impl ClientMessage {
    /// The wire `type` of this message; safe to log (carries no content).
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello(_) => "hello",
            ClientMessage::Admit {} => "admit",
            ClientMessage::Deny { .. } => "deny",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate(_) => "candidate",
            ClientMessage::EndOfCandidates(_) => "end_of_candidates",
            ClientMessage::IceRestart {} => "ice_restart",
            ClientMessage::Leave {} => "leave",
            ClientMessage::Ping {} => "ping",
            ClientMessage::Stats(_) => "stats",
            ClientMessage::Chat { .. } => "chat",
            ClientMessage::MediaState(_) => "media_state",
        }
    }
}

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Must equal [`crate::PROTOCOL_VERSION`].
    pub version: u32,
    /// Who is connecting.
    pub auth: Auth,
    /// Present when reconnecting after a dropped WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// Optional server messages this client understands (section 15); names
    /// the server does not know are ignored.
    #[serde(default, skip_serializing_if = "Features::is_empty")]
    pub features: Features,
}

/// `hello.features`: the optional server messages a client asks for. A
/// client that names none never receives them, so a client written to an
/// earlier text of the protocol sees no new message types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `media_state`: the peer's microphone, camera and screen sharing.
    pub media_state: bool,
}

impl Features {
    /// The feature name of [`Features::media_state`].
    pub const MEDIA_STATE: &'static str = "media_state";
    /// At most this many names are accepted (`invalid_fields` beyond).
    pub const MAX_NAMES: usize = 16;
    /// A name is 1–32 characters of `a-z 0-9 _`.
    pub const MAX_NAME_CHARS: usize = 32;

    /// True when no feature is asked for.
    pub fn is_empty(&self) -> bool {
        !self.media_state
    }
}

impl Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = [(self.media_state, Self::MEDIA_STATE)]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        names.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let names = Option::<Vec<String>>::deserialize(deserializer)?.unwrap_or_default();
        if names.len() > Self::MAX_NAMES {
            return Err(D::Error::custom("too many features"));
        }
        let mut features = Features::default();
        for name in &names {
            let valid = !name.is_empty()
                && name.len() <= Self::MAX_NAME_CHARS
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(D::Error::custom("invalid feature name"));
            }
            if name == Self::MEDIA_STATE {
                features.media_state = true;
            }
        }
        Ok(features)
    }
}

impl Hello {
    /// `Ok` when the client speaks one of this server's protocol versions.
    pub fn check_version(&self) -> Result<(), crate::ErrorCode> {
        if crate::SUPPORTED_VERSIONS.contains(&self.version) {
            Ok(())
        } else {
            Err(crate::ErrorCode::VersionMismatch)
        }
    }
}

/// Credentials in `hello`.
///
/// JSON: `{"link_token": "…"}` for a patient, `{"session": {"consultation":
/// "<uuid>"}}` for a therapist (the login itself is the session cookie of the
/// WebSocket upgrade request; this names the consultation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// Patient: the opaque token of the join link.
    LinkToken(LinkToken),
    /// Therapist: the consultation to run, authenticated by the session cookie.
    Session(SessionAuth),
}

/// Therapist credentials in `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionAuth {
    /// The consultation id.
    pub consultation: Uuid,
}

/// Resume request in `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// The `resume_token` from the latest `welcome`.
    pub token: ResumeToken,
    /// The highest `seq` the client has processed (0 if none).
    pub last_seq: u64,
}

/// A trickled ICE candidate (`RTCIceCandidateInit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceCandidate {
    /// `candidate:…` attribute.
    pub candidate: CandidateLine,
    /// `sdpMid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<Mid>,
    /// `sdpMLineIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    /// `usernameFragment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<Ufrag>,
}

/// End of trickled candidates (`addIceCandidate({candidate: ""})`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndOfCandidates {
    /// `sdpMid`, if the end concerns one media section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<Mid>,
    /// `sdpMLineIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    /// `usernameFragment` of the ICE generation that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<Ufrag>,
}

/// Call-quality statistics a client reports while in a call. Counters are
/// totals since the peer connection started. Never addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// `RTCPeerConnection.connectionState`.
    pub connection_state: ConnectionState,
    /// Type of the local candidate of the selected pair, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_candidate_type: Option<CandidateType>,
    /// Sum of `bytesReceived` over inbound RTP streams.
    pub bytes_received: u64,
    /// `framesReceived` of the inbound video stream.
    pub frames_received: u64,
    /// `packetsReceived` of the inbound audio stream.
    pub audio_packets_received: u64,
    /// Sum of `bytesSent` over outbound RTP streams (optional; lets the server
    /// check that what the peer received fits what this side sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
}

impl Stats {
    /// True when this side demonstrably receives the peer's media: connected,
    /// bytes arrived, and decoded video frames or audio packets arrived.
    pub fn media_flowing(&self) -> bool {
        self.connection_state == ConnectionState::Connected
            && self.bytes_received > 0
            && (self.frames_received > 0 || self.audio_packets_received > 0)
    }
}
