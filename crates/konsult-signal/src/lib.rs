//! The Konsult signaling room core, sans I/O.
//!
//! [`Hub`] holds every consultation room of one node. The WebSocket server
//! is a pump around it: it feeds inputs (`handle_join`, `handle_text`,
//! `handle_disconnect`, `handle_admission_check`, `handle_timeout`) and
//! carries out the outputs ([`Hub::poll_output`], [`Hub::poll_timeout`]).
//! Time comes in as `now`, tokens and ids as arguments; nothing here touches
//! a clock, a random number generator, a socket or a log. See [`Hub`] for
//! the calling order and an example pump, and `docs/protocol.md` for the
//! rules the core enforces.
//!
//! [`filter`] is the pure relay-only filter for SDP and ICE candidates.

#![warn(missing_docs)]

mod config;
pub mod filter;
mod hub;
mod output;
mod ratelimit;

pub use config::Config;
pub use hub::{AdmissionState, HelloRejected, Hub, JoinError, JoinRequest, Presence, RoomSnapshot};
pub use output::{AdmissionCheckId, CloseReason, ConnId, EndReason, LeftReason, Output, RoomEvent};
