//! The signaling WebSocket, `GET /ws`: a pump around the sans-I/O room core
//! (`konsult_signal::Hub`).
//!
//! - [`connection`]: one task per WebSocket. It checks the `Origin` of the
//!   upgrade, reads the hello (with the core's own parsing rules),
//!   authenticates it against the store ([`auth`]: join link, or session
//!   cookie plus a consultation of the therapist's clinic), mints the ICE
//!   servers with fresh TURN credentials ([`crate::relay::Turn`]) and a
//!   fresh resume token, and hands the connection to the hub task. Then a
//!   reader and a writer move frames; `select!` ends both when one ends.
//! - [`hub`]: the one task that owns the `Hub`. It feeds it inputs with the
//!   real monotonic time, writes its outputs, runs admission checks against
//!   the store, and sends room events to a recorder that writes them to the
//!   store in order ([`ledger`] decides which).
//!
//! Nothing here logs or stores SDP, candidates, chat or addresses: log
//! lines carry connection numbers, consultation ids, roles, message types
//! and codes.

pub mod auth;
pub mod connection;
pub mod hub;
pub mod ledger;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use konsult_protocol::Hello;
use konsult_signal::{Config, ConnId, HelloRejected, Hub};
use konsult_store::Store;
use tokio::sync::{mpsc, watch};

pub use connection::ws_handler;

use crate::relay::Turn;
use crate::state::Clock;
use hub::{HubInput, HubTask};

/// Inputs queued for the hub task before connections wait.
const HUB_QUEUE: usize = 4096;

/// The running signaling service; cheap to clone (one per handler).
#[derive(Clone)]
pub struct Signaling {
    inner: Arc<Inner>,
}

struct Inner {
    hub: mpsc::Sender<HubInput>,
    /// An empty hub with the same configuration, only for
    /// `Hub::parse_hello`, which is pure: connection tasks check their hello
    /// by the core's rules without a round trip to the hub task.
    hello_rules: Hub,
    turn: Arc<Turn>,
    next_conn: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaling").finish_non_exhaustive()
    }
}

impl Signaling {
    /// Starts the hub task (and its recorder) on the current runtime.
    pub fn start(config: Config, store: Store, clock: Clock, turn: Arc<Turn>) -> Self {
        let (tx, rx) = mpsc::channel(HUB_QUEUE);
        let task = HubTask::new(
            Hub::new(config.clone()),
            rx,
            tx.downgrade(),
            store,
            clock,
            Arc::clone(&turn),
        );
        tokio::spawn(task.run());
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                hub: tx,
                hello_rules: Hub::new(config),
                turn,
                next_conn: AtomicU64::new(1),
                shutdown,
            }),
        }
    }

    /// TURN credentials and the embedded relay.
    pub fn turn(&self) -> &Turn {
        &self.inner.turn
    }

    /// The WebSocket message size limit: above the core's frame limit, so
    /// an oversized frame reaches the core and gets `too_large` instead of
    /// tearing down the socket.
    pub fn max_message_bytes(&self) -> usize {
        self.inner.hello_rules.config().max_frame_bytes + 64 * 1024
    }

    /// Closes every signaling connection (close 1001) and stops the
    /// embedded relay. Clients reconnect with resume.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        self.inner.turn.shutdown().await;
    }

    /// Tells every connection to close (close 1001); returns at once.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn parse_hello(&self, text: &str) -> Result<Hello, HelloRejected> {
        self.inner.hello_rules.parse_hello(text)
    }

    fn next_conn_id(&self) -> ConnId {
        ConnId(self.inner.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    async fn send(&self, input: HubInput) -> Result<(), ()> {
        self.inner.hub.send(input).await.map_err(|_| ())
    }
}
