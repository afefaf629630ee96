//! Limits and durations of the signaling core.

use konsult_domain::EvidenceRules;
use std::time::Duration;

/// All limits and durations the core enforces. [`Config::default`] gives the
/// values documented in `docs/protocol.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest accepted text frame in bytes; larger frames get `too_large`.
    pub max_frame_bytes: usize,
    /// Sustained messages per second per connection (token-bucket rate).
    pub rate_per_second: u32,
    /// Messages a connection may send at once above the sustained rate
    /// (token-bucket size).
    pub rate_burst: u32,
    /// Errors within [`Config::error_window`] after which the connection is
    /// closed (`too_many_errors`).
    pub max_errors: u32,
    /// The window for [`Config::max_errors`].
    pub error_window: Duration,
    /// How often clients should ping (announced in `welcome`).
    pub ping_interval: Duration,
    /// A connection with no frame for this long is treated as dropped.
    pub heartbeat_timeout: Duration,
    /// How long a dropped participant may resume before the peer is told
    /// `peer_left`.
    pub resume_grace: Duration,
    /// How many sequenced messages per participant are kept for replay.
    pub replay_buffer: usize,
    /// How long the core waits for `handle_admission_check` before it gives
    /// up and tells the therapist `admission_check_failed`.
    pub admission_check_timeout: Duration,
    /// How long participants of a room restored after a restart
    /// (`Hub::restore`) have to come back before they count as gone. Longer
    /// than [`Config::resume_grace`]: every client reconnects at once, with
    /// back-off, to a server that is only just up.
    pub restore_grace: Duration,
    /// What counts as two-way media (`konsult_domain::evidence`).
    pub evidence: EvidenceRules,
    /// The relays whose addresses relay-only candidates may carry (none by
    /// default: under relay-only no candidate passes until the relays are
    /// set).
    pub relays: crate::filter::Relays,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_bytes: 64 * 1024,
            rate_per_second: 20,
            rate_burst: 50,
            max_errors: 10,
            error_window: Duration::from_secs(60),
            ping_interval: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(30),
            resume_grace: Duration::from_secs(30),
            replay_buffer: 256,
            admission_check_timeout: Duration::from_secs(15),
            restore_grace: Duration::from_secs(60),
            evidence: EvidenceRules::DEFAULT,
            relays: crate::filter::Relays::default(),
        }
    }
}

impl Config {
    /// The limits as announced to clients in `welcome`.
    pub fn limits(&self) -> konsult_protocol::Limits {
        konsult_protocol::Limits {
            max_frame_bytes: self.max_frame_bytes,
            ping_interval_ms: millis(self.ping_interval),
            heartbeat_timeout_ms: millis(self.heartbeat_timeout),
            resume_grace_ms: millis(self.resume_grace),
            rate_per_second: self.rate_per_second,
            rate_burst: self.rate_burst,
            max_chat_chars: konsult_protocol::MAX_CHAT_CHARS,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
