//! Konsult's embedded TURN relay.
//!
//! A consultation's two browsers often cannot reach each other directly
//! (symmetric NAT, clinic firewalls, mobile carriers), and in relay-only mode
//! they must not learn each other's addresses at all. Both then talk through
//! a TURN relay. For the single-machine default Konsult runs this one, a
//! TURN server of its own on the [`stun`] and [`turn`] crates' message
//! codecs; in production any coturn-compatible relay can take its place,
//! because both check the same credentials.
//!
//! It serves RFC 8656 over UDP (several `SO_REUSEPORT` sockets on one port,
//! one per core by default) and over TCP on the same port, and over any
//! stream handed to [`Relay::serve_stream`]: Konsult's HTTPS listener passes
//! on TLS connections for the relay's host name, so a patient behind a
//! firewall that lets only HTTPS out still reaches it on port 443. It also
//! answers plain STUN Binding requests, so clients need no third-party STUN
//! server to learn their public address.
//!
//! # Why TURN REST credentials
//!
//! [`TurnCredentials`] implements the "TURN REST API" scheme that coturn
//! checks with `use-auth-secret`: username `"<expiry>:<reference>"`, password
//! `base64(HMAC-SHA1(secret, username))`. Konsult's server and the relay
//! share one secret and nothing else: the server mints credentials for a
//! consultation, capped to the consultation's window, and hands them to the
//! browsers; the relay recomputes the password from the username. There
//! is no user database to keep in sync, a credential expires by itself, and
//! the same secret works for this relay and for a coturn fleet. The
//! [`Reference`] in the username is a pseudonymous, consultation-scoped id
//! (never a name, CPR number or contact detail): the username travels in
//! clear text in every STUN request. It names either a whole consultation
//! (`"c"`) or one participant of it (`"c.p1"`,
//! [`Reference::for_participant`]); with participant references the relay
//! can evict one participant and count media per participant.
//!
//! # Why a peer deny list
//!
//! A relay sends datagrams wherever an authenticated client asks. Without a
//! deny list, a credential from one consultation link would let its holder
//! probe the relay host's loopback services, the hosting network's private
//! ranges and cloud metadata endpoints, or send to multicast. A real call
//! peer is never on such an address as seen from the relay, so the
//! [`peer_policy`] refuses them, as RFC 8656 allows a server to: a
//! CreatePermission or ChannelBind naming one gets 403 Forbidden IP, a Send
//! indication to one is dropped, and the relay sockets themselves never send
//! to or deliver from one. Loopback is allowed only by
//! [`PeerPolicy::allow_loopback`], for tests.
//!
//! # Where the checks sit
//!
//! Every request goes through a sans-I/O gate before the server acts on it:
//! authenticated requests need valid, unexpired, not-closed credentials and
//! a matching MESSAGE-INTEGRITY (else 401), an Allocate beyond
//! [`RelayConfig::allocations_per_consultation`] or
//! [`RelayConfig::max_allocations`] gets 486, and denied peers get 403. Nonces
//! are stateless (an HMAC of issue time and client address), so a flood of
//! unauthenticated requests costs the relay no memory.
//!
//! # How `close_reference` works
//!
//! When a consultation ends, or one participant must go (a patient whose
//! join link was revoked), [`Relay::close_reference`] closes a reference: a
//! consultation-only one closes the consultation and every participant
//! under it, a participant one only that participant
//! ([`Reference::covers`]). It first marks the reference closed in the gate,
//! so every later request with a credential of a covered reference
//! (Allocate, Refresh, CreatePermission, ChannelBind) is refused with 401.
//! It then removes the covered allocations, under the lock an Allocate
//! takes to insert (which checks the mark again, so none slips in between),
//! shuts their valves so they start relaying nothing more in either
//! direction, ends their relay sockets (freeing ports and quota) and their
//! TCP/TLS connections, and waits for any datagram still being written
//! (writes never wait, so this is at most a moment). When it returns, no
//! datagram of those allocations is relayed any more. The closed mark is
//! kept for [`RelayConfig::max_credential_ttl`], the longest any accepted
//! credential can live, so credentials issued before the close cannot
//! revive the consultation. Closing again is cheap and harmless, and
//! [`Relay::close_references`] closes many at once (a server re-closes
//! what it closed recently when it starts, because the relay remembers
//! closed references in memory only).
//!
//! # Observed media
//!
//! Whether a consultation had media both ways should not rest on what the
//! clients report. [`Relay::media_counters`] returns what the relay itself
//! relayed for each participant reference: [`MediaCounters`] with a
//! [`Flow`] per direction (packets, payload bytes, first and last instant),
//! counting only payloads that look like RTP/RTCP (first byte 128..=191,
//! RFC 7983), not ICE checks or DTLS. A datagram counts once the relay has
//! forwarded it: client → peer when the allocation's relay socket sent it,
//! peer → client when the relay wrote it to the client. It is attributed
//! through the allocation that relayed it, whose owner (client address and
//! reference) the gate learnt from the Allocate that created it, and which
//! is forgotten with the allocation. Only counts and instants are stored,
//! never an address or a payload; the counters outlive the allocations and
//! are forgotten once a reference has been idle for
//! [`RelayConfig::max_credential_ttl`].
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, SystemTime};
//! use konsult_relay::{Reference, Relay, RelayConfig, TurnCredentials};
//! use secrecy::SecretString;
//!
//! let secret = SecretString::from("from-configuration");
//! let mut config = RelayConfig::new(secret.clone());
//! config.public_ip = Some("203.0.113.10".parse()?);
//! let relay = Relay::start(config).await?;
//!
//! let consultation = Reference::parse("7f1c2e9a-0d4b-4e55-9a57-1b2c3d4e5f60")?;
//! let patient = Reference::for_participant(&consultation, "a1")?;
//! let creds = TurnCredentials::issue(&secret, &patient, SystemTime::now(),
//!                                    Duration::from_secs(45 * 60))?;
//! // ... hand creds.username() and creds.password() to the patient's browser,
//! // and a credential of another participant reference to the therapist's ...
//!
//! // The patient's link is revoked: the therapist keeps the relay.
//! relay.close_reference(&patient).await?;
//! // The consultation ends: what did the relay see, per participant?
//! for (participant, seen) in relay.media_counters(&consultation) {
//!     println!("{participant}: sent {} packets, received {}",
//!              seen.sent.packets, seen.received.packets);
//! }
//! relay.close_reference(&consultation).await?;
//! relay.shutdown().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod credentials;
mod engine;
mod framing;
mod gate;
mod grants;
mod media;
mod nonce;
pub mod peer_policy;
mod relay;
mod stats;
mod transport;

pub use credentials::{CredentialError, Reference, TurnCredentials, TurnUsername};
pub use media::{Flow, MediaCounters};

/// `tracing_subscriber::EnvFilter` directives that silence the logs of the
/// `turn`, `stun` and `webrtc-util` crates.
///
/// They log through the `log` crate, which `tracing-subscriber` forwards by
/// default, and some of their lines carry client and peer IP addresses even
/// at info and error level (the `turn` client a process may also run, e.g.
/// for `konsult relay-check`, and the `webrtc` stack log addresses). Konsult
/// never logs addresses, so the telemetry filter should append these
/// directives, e.g. `format!("info,{}", konsult_relay::SILENCE_DEPENDENCY_LOGS)`.
/// The relay itself logs no address at any level.
pub const SILENCE_DEPENDENCY_LOGS: &str = "turn=off,stun=off,webrtc_util=off";
pub use engine::RelayAddress;
pub use peer_policy::{denied_range, is_denied_peer, DeniedRange, PeerPolicy};
pub use relay::{Relay, RelayConfig, RelayError};
pub use stats::{RelayStats, Totals};
