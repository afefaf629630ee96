//! The Konsult signaling room core, sans I/O.
//!
//! [`Hub`] holds every consultation room of one node. The WebSocket server
//! is a pump around it: it feeds inputs (`handle_join`, `handle_text`,
//! `handle_disconnect`, `handle_admission_check`, `handle_timeout`) and
//! carries out the outputs ([`Hub::poll_output`], [`Hub::poll_timeout`]).
//! Time comes in as `now`, tokens and ids as arguments. See [`Hub`] for the
//! calling order and a runnable example, and `docs/protocol.md` for the
//! rules the core enforces.
//!
//! [`filter`] is the pure relay-only filter for SDP and ICE candidates;
//! [`record`] is what a room saves so a restarted server can take its
//! participants back ([`RoomRecord`]).
//!
//! What happens to the consultation is reported as the domain's
//! [`CallEvent`]s (`konsult_domain::lifecycle`: one name table, one state
//! machine, shared with the store) in [`Output::Write`]s. Events clients may
//! only hear of once committed hold the room's messages back until the pump
//! acknowledges the write ([`Hub::handle_written`]).
//!
//! What the pump needs per room to carry out those outputs (which clinic to
//! write to, what to check at admission) it hands the core as an opaque
//! [`RoomContext`] with each join; the core keeps it with the room and
//! echoes it in the outputs, so the pump keeps no table of rooms.
//!
//! # Architecture invariants
//!
//! - No clock, no randomness, no async runtime, no sockets, no database:
//!   the crate depends only on the pure crates `konsult-protocol` and
//!   `konsult-domain`, and `uuid`, `serde`, `sha2`, `thiserror`.
//!   Every behaviour is testable with a fake clock (`tests/common`).
//! - No logging at all, and so never SDP, candidates, chat or addresses in a
//!   log line. The pump logs [`RoomEvent`]s, [`CloseReason`]s and message
//!   type names only (`ServerBody::type_name`), with pseudonymous ids.
//! - Nothing outlives a room: relayed messages are held in memory only in a
//!   participant's bounded replay buffer.
//!
//! # The pump in the server
//!
//! One task owns the `Hub` (or one per shard of consultations); each
//! WebSocket task authenticates its hello, then forwards frames to the hub
//! task over a channel and writes what comes back on its own channel. A
//! sketch with tokio (not compiled here: this crate has no tokio):
//!
//! ```ignore
//! enum In {
//!     Join(ConnId, JoinRequest, mpsc::Sender<Out>), // after hello + DB auth
//!     Text(ConnId, String),
//!     Gone(ConnId),
//!     Checked(Uuid, AdmissionCheckId, Result<(), Vec<String>>),
//!     Written(Uuid, WriteId, Result<(), WriteRefused>),
//! }
//! enum Out { Frame(String), Close(u16, &'static str) }
//!
//! async fn hub_task(mut hub: Hub, mut rx: mpsc::Receiver<In>, checks: CheckSpawner) {
//!     let mut writers: HashMap<ConnId, mpsc::Sender<Out>> = HashMap::new();
//!     loop {
//!         let deadline = hub.poll_timeout();
//!         tokio::select! {
//!             input = rx.recv() => match input {
//!                 None => return,
//!                 Some(In::Join(conn, req, tx)) => {
//!                     writers.insert(conn, tx);
//!                     hub.handle_join(Instant::now(), conn, req).expect("fresh conn id");
//!                 }
//!                 Some(In::Text(conn, text)) => hub.handle_text(Instant::now(), conn, &text),
//!                 Some(In::Gone(conn)) => {
//!                     writers.remove(&conn);
//!                     hub.handle_disconnect(Instant::now(), conn);
//!                 }
//!                 Some(In::Checked(c, id, result)) =>
//!                     hub.handle_admission_check(Instant::now(), c, id, result),
//!                 Some(In::Written(c, id, result)) =>
//!                     hub.handle_written(Instant::now(), c, id, result),
//!             },
//!             _ = sleep_until_opt(deadline) => hub.handle_timeout(Instant::now()),
//!         }
//!         while let Some(output) = hub.poll_output() {
//!             match output {
//!                 Output::Send { conn, message } => {
//!                     if let Some(tx) = writers.get(&conn) {
//!                         let _ = tx.try_send(Out::Frame(message.to_json()));
//!                     }
//!                 }
//!                 Output::Close { conn, reason } => {
//!                     if let Some(tx) = writers.get(&conn) {
//!                         let _ = tx.try_send(Out::Close(reason.code(), reason.as_str()));
//!                     }
//!                 }
//!                 // Commits in order per consultation (retrying), to the
//!                 // clinic the context names, then sends In::Written back.
//!                 Output::Write { consultation, write, events, room, context, .. } =>
//!                     writer.queue(clinic_of(&context), consultation, write, events, room),
//!                 // Runs the eligibility query and sends In::Checked back.
//!                 Output::AdmissionCheck { consultation, check, context, .. } =>
//!                     checks.spawn(clinic_of(&context), consultation, check),
//!                 Output::RoomClosed { .. } => { /* nothing kept per room to forget */ }
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! Per connection, split the socket (axum's chat example): the reader sends
//! `In::Text` for each text frame and `In::Gone` when it ends; the writer
//! drains the `Out` channel and closes the socket on `Out::Close`; a
//! `select!` ends both when either ends. Set the WebSocket's maximum message
//! size somewhat above [`Config::max_frame_bytes`] so an oversized frame
//! reaches the core and gets `too_large` instead of killing the socket. If a
//! writer's channel is full (a client that does not read), close that
//! connection: the participant can resume and get the missed messages.

#![warn(missing_docs)]

mod config;
pub mod filter;
mod hub;
mod output;
mod ratelimit;
pub mod record;
mod room;

pub use config::Config;
pub use hub::{
    AdmissionState, Census, HelloRejected, Hub, JoinError, JoinRequest, ParticipantSnapshot,
    Presence, RoomSnapshot, WriteRefused,
};
pub use konsult_domain::evidence::ObservedFlow;
pub use konsult_domain::{CallEvent, EndReason, Evidence, EvidencePolicy};
pub use output::{AdmissionCheckId, CloseReason, ConnId, Output, RoomContext, WriteId};
pub use record::{LinkRef, RecordError, RoomRecord};
