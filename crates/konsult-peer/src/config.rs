//! How a [`Peer`](crate::Peer) is set up: ICE servers, transport policy,
//! which local networks it may use, and the synthetic media it sends.

use std::time::Duration;

use crate::vp8::FrameSize;

/// One STUN or TURN server, as handed out by the signaling server's
/// `welcome` (the `RTCIceServer` dictionary of the W3C API).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceServer {
    /// `stun:`/`turn:`/`turns:` URLs of the server.
    pub urls: Vec<String>,
    /// TURN username (for Konsult a TURN REST username, `expiry:id`).
    pub username: Option<String>,
    /// TURN password.
    pub credential: Option<String>,
}

/// Which candidates ICE may use (`RTCIceTransportPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IcePolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// Relay candidates only: neither side learns the other's address.
    Relay,
}

/// Which local network interfaces the peer gathers host candidates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkScope {
    /// Every interface, IPv4 and IPv6, as a browser would.
    #[default]
    Any,
    /// Only IPv4 loopback (127.0.0.0/8). For tests and local development:
    /// the peer then never sends a packet off this machine. Candidates
    /// from a relay are not affected (the relay's address is what it is).
    Loopback,
}

/// Frames per second of the synthetic video, 1 to 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate(u32);

/// A frame rate outside 1..=60.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame rate {0} is outside 1..=60 frames per second")]
pub struct FrameRateError(pub u32);

impl FrameRate {
    /// A frame rate of `fps` frames per second.
    pub fn new(fps: u32) -> Result<Self, FrameRateError> {
        if (1..=60).contains(&fps) {
            Ok(Self(fps))
        } else {
            Err(FrameRateError(fps))
        }
    }

    /// Frames per second.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Time between two frames.
    pub fn interval(self) -> Duration {
        Duration::from_secs(1) / self.0
    }
}

impl Default for FrameRate {
    /// 15 frames per second: enough to count, cheap for load tests.
    fn default() -> Self {
        Self(15)
    }
}

/// The synthetic video a peer sends; see [`crate::vp8`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoConfig {
    /// Picture size.
    pub size: FrameSize,
    /// Frame rate.
    pub rate: FrameRate,
}

/// Everything needed to create a [`Peer`](crate::Peer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerConfig {
    /// STUN/TURN servers; empty means host candidates only.
    pub ice_servers: Vec<IceServer>,
    /// Which candidate types ICE may use.
    pub ice_policy: IcePolicy,
    /// Which local interfaces to gather on.
    pub network: NetworkScope,
    /// The synthetic video sent to the other side.
    pub video: VideoConfig,
}
