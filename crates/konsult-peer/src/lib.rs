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
//! An end-to-end test joins both sides of a consultation like this:
//!
//! ```no_run
//! # async fn call(server: &str, link: &str, cookie: &str, id: uuid::Uuid)
//! #     -> Result<(), konsult_peer::ClientError> {
//! use std::time::Duration;
//! use konsult_peer::{ClientOptions, Credentials, NetworkScope, PeerClient};
//! use konsult_protocol::LinkToken;
//!
//! let local = ClientOptions { network: NetworkScope::Loopback, ..ClientOptions::default() };
//! let patient = Credentials::Patient { link_token: LinkToken::parse(link.into()).unwrap() };
//! let therapist = Credentials::Therapist { cookie: cookie.into(), consultation: id };
//! let mut p = PeerClient::connect(server, patient, local.clone()).await?;
//! let mut t = PeerClient::connect(server, therapist, ClientOptions { admit: true, ..local })
//!     .await?;
//! let timeout = Duration::from_secs(60);
//! let (p_report, t_report) =
//!     tokio::join!(p.run_until_established(timeout), t.run_until_established(timeout));
//! assert!(p_report?.media_flowed_both_ways && t_report?.media_flowed_both_ways);
//! t.leave().await?;
//! # Ok(()) }
//! ```
//!
//! Nothing here logs SDP, candidates or addresses: tracing fields carry
//! states, kinds and counters only. The WebRTC stack itself logs addresses
//! through the `log` crate at debug level and below (a few lines even at
//! info): a process that forwards `log` records to `tracing` should append
//! [`SILENCE_WEBRTC_LOGS`] to its filter.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod driver;
pub mod peer;
pub mod report;
pub mod vp8;

/// `tracing_subscriber::EnvFilter` directives that silence the crates of
/// the WebRTC stack, which log through the `log` crate and put candidate
/// addresses into some of their lines (for example
/// `format!("info,{}", konsult_peer::SILENCE_WEBRTC_LOGS)`). Only matters
/// where `log` records are forwarded to `tracing` (`tracing-subscriber`'s
/// `init()` does that); the `konsult-peer` binary does not forward them.
pub const SILENCE_WEBRTC_LOGS: &str = "webrtc=off,webrtc_ice=off,webrtc_dtls=off,\
webrtc_srtp=off,webrtc_sctp=off,webrtc_mdns=off,webrtc_data=off,webrtc_media=off,\
webrtc_util=off,interceptor=off,rtp=off,rtcp=off,sdp=off,turn=off,stun=off";

pub use client::{CallReport, ClientError, ClientOptions, Credentials, PeerClient};
pub use config::{FrameRate, IcePolicy, IceServer, NetworkScope, PeerConfig, VideoConfig};
pub use driver::{direct_link, Call, CallError, DirectTransport, Negotiation, SignalTransport};
pub use peer::{ConnectionState, IceCandidate, Peer, PeerError, PeerEvent};
pub use report::{
    AcknowledgedStats, CandidateType, DirectionStats, FlowStats, MediaKind, MediaReport,
    SelectedPair,
};
