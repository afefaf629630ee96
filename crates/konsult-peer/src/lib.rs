//! Headless WebRTC peer for Konsult.
//!
//! Used by the end-to-end tests (two real peers completing a DTLS-SRTP call
//! through signaling and the relay), by the load generator and by the
//! patient's connection check. Built on the `webrtc` crate of the webrtc-rs
//! project, with synthetic media: Opus silence and a VP8 test picture
//! encoded by [`vp8`], so no camera, microphone or C codec is needed.
//!
//! Layers, bottom up:
//! - [`Peer`]: one `RTCPeerConnection`, its tracks and counters. Knows
//!   nothing of signaling.
//! - [`Call`] ([`driver`]): negotiates a peer with `konsult-protocol`
//!   messages over any [`SignalTransport`]; [`direct_link`] wires two calls
//!   back to back in one process.
//! - [`PeerClient`] ([`client`]): joins a consultation over the server's
//!   WebSocket like a browser, with resume after a dropped connection.
//!
//! Nothing here logs SDP, candidates or addresses: tracing fields carry
//! states, kinds and counters only.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod driver;
pub mod peer;
pub mod report;
pub mod vp8;

pub use client::{CallReport, ClientError, ClientOptions, Credentials, PeerClient};
pub use config::{FrameRate, IcePolicy, IceServer, NetworkScope, PeerConfig, VideoConfig};
pub use driver::{direct_link, Call, CallError, DirectTransport, Negotiation, SignalTransport};
pub use peer::{ConnectionState, IceCandidate, Peer, PeerError, PeerEvent};
pub use report::{
    AcknowledgedStats, CandidateType, DirectionStats, FlowStats, MediaKind, MediaReport,
    SelectedPair,
};
