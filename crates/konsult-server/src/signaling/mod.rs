//! The signaling WebSocket, `GET /ws`: a pump around the sans-I/O room core
//! (`konsult_signal::Hub`).
//!
//! - [`connection`]: one task per WebSocket. It checks the `Origin` of the
//!   upgrade, reads the hello (with the core's own parsing rules),
//!   authenticates it against the store ([`auth`]: join link, or session
//!   cookie plus a consultation of the therapist's clinic), mints the ICE
//!   servers with fresh TURN credentials ([`crate::relay::Turn`]) and a
//!   fresh resume token, and hands the connection to the hub task of its
//!   room. Then the same task pumps frames both ways in one `select!` until
//!   either side ends.
//! - [`hub`]: the hub tasks, each the one owner of a `Hub` holding a shard
//!   of the rooms (a consultation's room always lives on the same shard, by
//!   its id; one shard per core by default, `signaling.hub_shards`), so
//!   rooms are served in parallel and no room waits behind the node's
//!   others. Each feeds its core inputs with the real monotonic time,
//!   writes its outputs, runs admission checks against the store, feeds it
//!   what the embedded relay counted, and hands its writes (the
//!   consultation's call events and the room's record) to a recorder that
//!   commits them in order and answers each: the core holds back what
//!   clients may hear only after a commit. At start-up each restores the
//!   rooms saved before a restart that fall in its shard.
//!
//! Nothing here logs or stores SDP, candidates, chat or addresses: log
//! lines carry connection numbers, consultation ids, roles, message types
//! and codes.

pub mod auth;
pub mod connection;
pub mod hub;
pub mod outbox;
pub mod remote;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use konsult_domain::ConsultationId;
use konsult_protocol::Hello;
use konsult_signal::{Census, Config, ConnId, HelloRejected, Hub, LinkRef};
use konsult_store::therapists::SessionKey;
use konsult_store::Store;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

pub use connection::ws_handler;

use crate::cluster::{Cluster, Notice};
use crate::lease::{Claim, Lease, Leases};
use crate::metrics::Metrics;
use crate::relay::Turn;
use crate::state::Clock;
use hub::{Feedback, HubDeps, HubInput, HubTask, Recorder};

/// How long a graceful shutdown waits for the room writes still queued.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// Inputs queued for each hub task before connections wait.
const HUB_QUEUE: usize = 4096;

/// How far back each sweep looks beyond the previous one: what another
/// node stamped with a clock a little behind, or committed a little after
/// its stamp, is still found.
const SWEEP_OVERLAP: Duration = Duration::from_secs(120);

/// How long a closed room's lease is kept before it is released: a hello
/// routed here just before the room closed still finds its lease.
const RELEASE_GRACE: Duration = Duration::from_secs(5);

/// This node as one of a cluster.
pub struct ClusterMode {
    /// The NATS link to the other nodes.
    pub nodes: Cluster,
    /// How often the database is swept for endings NATS may have missed.
    pub sweep: Duration,
    /// A room lease's time to live.
    pub lease_ttl: Duration,
}

/// Where a connection's room runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On this node.
    Local,
    /// On that node.
    Remote(Uuid),
}

/// A room lease this node holds.
struct Held {
    lease: Lease,
    /// When the room closed here (its hub emitted `RoomClosed`), if it did
    /// and no connection was routed to it since.
    closed_at: Option<std::time::Instant>,
}

/// The shard of `consultation`'s room among `shards` hub tasks. Ids are
/// random (UUID v4), so their low bits spread rooms evenly.
pub fn shard_of(consultation: Uuid, shards: usize) -> usize {
    let low = consultation.as_u64_pair().1;
    (low % shards.max(1) as u64) as usize
}

/// The running signaling service; cheap to clone (one per handler).
#[derive(Clone)]
pub struct Signaling {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each hub task's inputs, by shard ([`shard_of`]).
    hubs: Box<[mpsc::Sender<HubInput>]>,
    /// An empty hub with the same configuration, only for
    /// `Hub::parse_hello`, which is pure: connection tasks check their hello
    /// by the core's rules without a round trip to the hub task.
    hello_rules: Hub,
    turn: Arc<Turn>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// The other nodes, in cluster mode.
    cluster: Option<Cluster>,
    /// Room ownership, in cluster mode.
    leases: Option<Leases>,
    /// The rooms this node owns.
    held: std::sync::Mutex<std::collections::HashMap<Uuid, Held>>,
    /// Hellos route one room one at a time ([`Signaling::route`]).
    routing: std::sync::Mutex<std::collections::HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// Connections whose room is on another node, and rooms with
    /// connections on other nodes.
    remote: std::sync::OnceLock<Arc<remote::Remote>>,
    /// For adopting rooms' saved records.
    store: Store,
    /// The hellos' reads, batched.
    hello_reads: auth::HelloReads,
    next_conn: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaling").finish_non_exhaustive()
    }
}

impl Signaling {
    /// Starts `hub_shards` hub tasks (at least one) and their recorder on
    /// the current runtime, after
    /// settling what a previous run left: the rooms it saved are restored
    /// (their participants resume without a new admission), a consultation
    /// left waiting or in its call with no room to restore is settled, and
    /// the relay refuses again the credentials of consultations and links
    /// closed recently (it forgot them with the restart). In a `cluster`
    /// it tells the other nodes what ends here, and sweeps the database
    /// every `sweep` for what it may have missed of theirs (what they tell
    /// reaches it through [`Signaling::act`]). A node of a cluster restores
    /// and settles nothing at start: the saved rooms may run on other
    /// nodes; it adopts a room when it claims the room's lease
    /// ([`Signaling::route`]).
    pub async fn start(
        config: Config,
        hub_shards: usize,
        store: Store,
        clock: Clock,
        turn: Arc<Turn>,
        metrics: Arc<Metrics>,
        cluster: Option<ClusterMode>,
    ) -> anyhow::Result<Self> {
        // Relay-only candidates must carry one of the relays handed out.
        let config = Config {
            relays: turn.relays().clone(),
            ..config
        };
        let now = clock.now();
        let alone = cluster.is_none();
        let saved = if alone {
            store.saved_rooms().await?
        } else {
            Vec::new()
        };
        if alone {
            for (_, consultation) in store.settle_orphaned_calls(now).await? {
                turn.close_consultation(consultation.as_uuid()).await?;
            }
        }
        let since = now
            - chrono::Duration::from_std(crate::relay::MAX_CREDENTIAL_TTL)
                .expect("twelve hours fit");
        let (closed, links) = store.closed_since(since).await?;
        let closed: Vec<_> = closed.iter().map(ConsultationId::as_uuid).collect();
        let links: Vec<_> = links
            .into_iter()
            .map(|(c, link)| (c.as_uuid(), link))
            .collect();
        turn.reclose(&closed, &links).await?;
        if !saved.is_empty() || !closed.is_empty() {
            tracing::info!(
                rooms = saved.len(),
                closed = closed.len(),
                links = links.len(),
                "settled what the previous run left"
            );
        }
        let shards = hub_shards.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::channel(HUB_QUEUE)).unzip();
        let feedback = Feedback::new(senders.iter().map(mpsc::Sender::downgrade).collect());
        let (nodes, sweep_every, leases) = match cluster {
            Some(mode) => {
                let leases = Leases::open(
                    mode.nodes.client(),
                    mode.nodes.prefix(),
                    mode.nodes.node(),
                    mode.lease_ttl,
                )
                .await?;
                (Some(mode.nodes), Some(mode.sweep), Some(leases))
            }
            None => (None, None, None),
        };
        let (rooms_closed, closed_rooms) = mpsc::unbounded_channel();
        let recorder = Recorder::start(
            store.clone(),
            Arc::clone(&turn),
            feedback.clone(),
            Arc::clone(&metrics),
            nodes.clone(),
        );
        let mut saved_by_shard: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
        for room in saved {
            saved_by_shard[shard_of(room.consultation.as_uuid(), shards)].push(room);
        }
        for (inputs, saved) in receivers.into_iter().zip(saved_by_shard) {
            let task = HubTask::new(
                Hub::new(config.clone()),
                inputs,
                feedback.clone(),
                HubDeps {
                    store: store.clone(),
                    clock: clock.clone(),
                    turn: Arc::clone(&turn),
                    recorder: recorder.clone(),
                    metrics: Arc::clone(&metrics),
                    rooms_closed: leases.is_some().then(|| rooms_closed.clone()),
                },
                saved,
            );
            tokio::spawn(task.run());
        }
        tracing::info!(shards, "signaling hub started");
        let (shutdown, _) = watch::channel(false);
        let signaling = Self {
            inner: Arc::new(Inner {
                hubs: senders.into_boxed_slice(),
                hello_rules: Hub::new(config),
                turn,
                recorder,
                metrics,
                // Unique in the cluster: a node's counter starts at a
                // random multiple of 2^32.
                next_conn: AtomicU64::new(match nodes {
                    Some(_) => (u64::from(rand::random::<u32>()) << 32) | 1,
                    None => 1,
                }),
                cluster: nodes,
                leases,
                held: std::sync::Mutex::default(),
                routing: std::sync::Mutex::default(),
                remote: std::sync::OnceLock::new(),
                hello_reads: auth::HelloReads::start(&store),
                store: store.clone(),
                shutdown,
            }),
        };
        if let Some(every) = sweep_every {
            tokio::spawn(sweep(signaling.downgrade(), store, clock, every));
        }
        if let (Some(nodes), Some(leases)) = (&signaling.inner.cluster, &signaling.inner.leases) {
            let remote = remote::Remote::start(
                nodes.client(),
                nodes.prefix(),
                nodes.node(),
                signaling.downgrade(),
            )
            .await?;
            let _ = signaling.inner.remote.set(remote);
            tokio::spawn(keep_leases(
                signaling.downgrade(),
                closed_rooms,
                leases.ttl() / 3,
            ));
        }
        Ok(signaling)
    }

    /// Where the room of `consultation` runs: here when this node holds
    /// its lease or can claim it, else on the node that holds it. Alone,
    /// or when NATS cannot be asked, here.
    ///
    /// Hellos of one room route one at a time: when the first claims a room
    /// that another node ran, its adoption reaches the hub before any later
    /// hello's join (which would otherwise start the room afresh and lose
    /// its participants' resume tokens).
    pub async fn route(&self, consultation: Uuid) -> Route {
        let Some(leases) = &self.inner.leases else {
            return Route::Local;
        };
        let gate = Arc::clone(
            self.inner
                .routing
                .lock()
                .expect("routing lock")
                .entry(consultation)
                .or_default(),
        );
        let route = {
            let _turn = gate.lock().await;
            self.route_now(leases, consultation).await
        };
        let mut routing = self.inner.routing.lock().expect("routing lock");
        // Nobody else waits (the map's and this one are the only handles,
        // and no new one can be taken while the map is locked).
        if Arc::strong_count(&gate) == 2 {
            routing.remove(&consultation);
        }
        route
    }

    async fn route_now(&self, leases: &Leases, consultation: Uuid) -> Route {
        let stale = {
            let mut held = self.inner.held.lock().expect("leases lock");
            match held.get_mut(&consultation) {
                Some(h) if leases.valid(&h.lease, std::time::Instant::now()) => {
                    h.closed_at = None;
                    return Route::Local;
                }
                Some(_) => held.remove(&consultation).is_some(),
                None => false,
            }
        };
        if stale {
            // Out of date by this node's own clock: another node may hold
            // the room now. Give it up before claiming again.
            self.to_room(consultation, HubInput::Relinquish { consultation })
                .await;
        }
        match leases.claim(consultation).await {
            Ok(Claim::Owned(lease)) => {
                self.inner.held.lock().expect("leases lock").insert(
                    consultation,
                    Held {
                        lease,
                        closed_at: None,
                    },
                );
                // A room another node ran (and stopped running) is taken
                // over from its saved record, before this join reaches it.
                match self
                    .inner
                    .store
                    .saved_room(ConsultationId::from_uuid(consultation))
                    .await
                {
                    Ok(Some(saved)) => {
                        self.to_room(consultation, HubInput::Adopt { saved }).await;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%consultation, %error, "could not read a room to adopt")
                    }
                }
                Route::Local
            }
            Ok(Claim::OwnedBy(owner)) if owner != leases.node() => Route::Remote(owner),
            // Claimed by a hello of this node a moment ago.
            Ok(Claim::OwnedBy(_)) => Route::Local,
            Err(error) => {
                tracing::warn!(%consultation, %error, "could not ask NATS who owns a room; serving it here");
                Route::Local
            }
        }
    }

    /// Whether this node holds a valid lease on `consultation`'s room (alone:
    /// always), for a join from another node: the lease is kept (not
    /// released as a closed room's would be).
    pub(crate) fn owns_for_join(&self, consultation: Uuid) -> bool {
        let Some(leases) = &self.inner.leases else {
            return true;
        };
        let mut held = self.inner.held.lock().expect("leases lock");
        match held.get_mut(&consultation) {
            Some(h) if leases.valid(&h.lease, std::time::Instant::now()) => {
                h.closed_at = None;
                true
            }
            _ => false,
        }
    }

    /// Sends a connection's join to its room: to the hub task here, or to
    /// the node that owns the room. When that node does not take it (it
    /// stopped), asks again until its lease has run out and the room is
    /// claimed here, within `patience`. Returns where the pump sends the
    /// connection's frames, `None` when the room could be reached nowhere.
    pub(crate) async fn join(
        &self,
        consultation: Uuid,
        mut join: HubInput,
        patience: Duration,
    ) -> Option<mpsc::Sender<HubInput>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match (self.route(consultation).await, self.inner.remote.get()) {
                (Route::Remote(owner), Some(remote)) => match remote.join(owner, join).await {
                    Ok(hub) => return Some(hub),
                    Err(Some(back)) => join = back,
                    Err(None) => return None,
                },
                _ => {
                    let hub = self.hub(consultation).clone();
                    hub.send(join).await.ok()?;
                    return Some(hub);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// How long a join may wait for a stopped owner's room to move: its
    /// lease's time to live and a margin.
    pub(crate) fn move_patience(&self) -> Duration {
        self.inner
            .leases
            .as_ref()
            .map_or(Duration::ZERO, |l| l.ttl() * 2 + Duration::from_secs(1))
    }

    /// Gives up every room lease (a graceful stop): other nodes may take
    /// the rooms over at once.
    async fn release_leases(&self) {
        let Some(leases) = &self.inner.leases else {
            return;
        };
        let held: Vec<Held> = self
            .inner
            .held
            .lock()
            .expect("leases lock")
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in held {
            leases.release(h.lease).await;
        }
    }

    /// A handle that does not keep the service (and its hub tasks) alive.
    pub fn downgrade(&self) -> WeakSignaling {
        WeakSignaling(Arc::downgrade(&self.inner))
    }

    /// Acts on what was committed (here or on another node), on this node
    /// only: ends the connections that rest on it and closes it on the
    /// embedded relay. Notices that are not signaling's are ignored.
    pub async fn act(&self, notice: Notice) {
        match notice {
            Notice::SessionsEnded { sessions } => {
                let sessions: Vec<SessionKey> = sessions
                    .iter()
                    .filter_map(|s| SessionKey::from_hex(s))
                    .collect();
                self.end_sessions_here(sessions).await;
            }
            Notice::ConsultationClosed { consultation } => {
                self.to_room(consultation, HubInput::Closed { consultation })
                    .await;
                self.close_on_relay(consultation).await;
            }
            Notice::LinksRevoked {
                consultation,
                links,
            } => {
                for link in links {
                    if let Err(error) = self.inner.turn.close_link(consultation, &link).await {
                        tracing::warn!(%consultation, %error, "could not close a link on the relay");
                    }
                    self.to_room(
                        consultation,
                        HubInput::LinkRevoked {
                            consultation,
                            link: LinkRef(link),
                        },
                    )
                    .await;
                }
            }
            Notice::CallEnded { consultation } => self.close_on_relay(consultation).await,
            Notice::LoginOutcome { .. } => {}
        }
    }

    /// Acts on `notice` here and tells the other nodes.
    async fn act_and_tell(&self, notice: Notice) {
        self.act(notice.clone()).await;
        if let Some(cluster) = &self.inner.cluster {
            cluster.tell(notice).await;
        }
    }

    async fn close_on_relay(&self, consultation: Uuid) {
        if let Err(error) = self.inner.turn.close_consultation(consultation).await {
            tracing::warn!(%consultation, %error, "could not close the consultation on the relay");
        }
    }

    async fn end_sessions_here(&self, sessions: Vec<SessionKey>) {
        if sessions.is_empty() {
            return;
        }
        // A therapist's connections may be in any shard.
        for hub in self.inner.hubs.iter() {
            let _ = hub
                .send(HubInput::SessionsEnded {
                    sessions: sessions.clone(),
                })
                .await;
        }
    }

    /// One sweep: acts here on what the database says ended since `since`
    /// (consultations and links closed, login sessions of this node's
    /// connections gone), whether or not NATS told of it. Returns whether
    /// the database answered.
    async fn sweep_once(&self, store: &Store, since: chrono::DateTime<chrono::Utc>) -> bool {
        let (closed, links) = match store.closed_since(since).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "the cluster sweep could not read closed consultations");
                return false;
            }
        };
        let closed: Vec<Uuid> = closed.iter().map(ConsultationId::as_uuid).collect();
        let links: Vec<(Uuid, String)> = links.into_iter().map(|(c, l)| (c.as_uuid(), l)).collect();
        if let Err(error) = self.inner.turn.reclose(&closed, &links).await {
            tracing::warn!(%error, "the cluster sweep could not close on the relay");
        }
        for consultation in closed {
            self.to_room(consultation, HubInput::Closed { consultation })
                .await;
        }
        for (consultation, link) in links {
            self.to_room(
                consultation,
                HubInput::LinkRevoked {
                    consultation,
                    link: LinkRef(link),
                },
            )
            .await;
        }
        self.adopt_orphans(store).await;
        let mut sessions = Vec::new();
        for hub in self.inner.hubs.iter() {
            let (reply, answer) = oneshot::channel();
            if hub.send(HubInput::Sessions { reply }).await.is_ok() {
                sessions.extend(answer.await.unwrap_or_default());
            }
        }
        sessions.sort_by(|a, b| a.as_hex().cmp(b.as_hex()));
        sessions.dedup();
        match store.ended_sessions(&sessions).await {
            Ok(ended) => {
                if !ended.is_empty() {
                    tracing::info!(
                        sessions = ended.len(),
                        "the cluster sweep found ended login sessions with connections here"
                    );
                }
                self.end_sessions_here(ended).await;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "the cluster sweep could not read login sessions");
                false
            }
        }
    }

    /// Adopts the saved rooms no node runs: their node died and none of
    /// their participants came back to another. The adopted room waits
    /// `signaling.restore_grace_seconds` for them, as after a restart,
    /// then settles (a started call ends as abandoned): no consultation
    /// stays in its call for ever. Several nodes may find the same room;
    /// the lease makes one of them its owner.
    async fn adopt_orphans(&self, store: &Store) {
        let Some(leases) = &self.inner.leases else {
            return;
        };
        let held = match leases.held().await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "the cluster sweep could not list the rooms' leases");
                return;
            }
        };
        // Read after the leases: a room made meanwhile is saved after its
        // claim, and claiming it again here finds its owner.
        let saved = match store.saved_room_ids().await {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(%error, "the cluster sweep could not read the saved rooms");
                return;
            }
        };
        for room in saved.iter().map(ConsultationId::as_uuid) {
            if held.contains(&room) {
                continue;
            }
            if let Route::Local = self.route(room).await {
                tracing::info!(consultation = %room, "adopted a room no node ran");
            }
        }
    }

    /// The hellos' reads ([`auth::authenticate`]).
    pub(crate) fn hello_reads(&self) -> &auth::HelloReads {
        &self.inner.hello_reads
    }

    /// TURN credentials and the embedded relay.
    pub fn turn(&self) -> &Turn {
        &self.inner.turn
    }

    /// The node's counters (`GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The rooms and participants of every hub task, or `None` when one
    /// did not answer within `wait` (a scrape must not hang on a busy hub).
    pub async fn census(&self, wait: Duration) -> Option<Census> {
        let count = async {
            let mut total = Census::default();
            for hub in self.inner.hubs.iter() {
                let (reply, answer) = oneshot::channel();
                hub.send(HubInput::Census { reply }).await.ok()?;
                total += answer.await.ok()?;
            }
            Some(total)
        };
        tokio::time::timeout(wait, count).await.ok().flatten()
    }

    /// The WebSocket message size limit: above the core's frame limit, so
    /// an oversized frame reaches the core and gets `too_large` instead of
    /// tearing down the socket.
    pub fn max_message_bytes(&self) -> usize {
        self.inner.hello_rules.config().max_frame_bytes + 64 * 1024
    }

    /// Closes every signaling connection (close 1001), commits the room
    /// writes still queued, and stops the embedded relay. Clients reconnect
    /// with resume, to this server when it is back.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let left = self.inner.recorder.drain(DRAIN_LIMIT).await;
        self.release_leases().await;
        if left > 0 {
            tracing::error!(
                writes = left,
                "shutting down with room writes not committed"
            );
        }
        self.inner.turn.shutdown().await;
    }

    /// The clinic closed the consultation (and committed it): end every
    /// connection of it at once and close it on the relay, on every node.
    pub async fn consultation_closed(&self, consultation: ConsultationId) {
        let consultation = consultation.as_uuid();
        self.act_and_tell(Notice::ConsultationClosed { consultation })
            .await;
    }

    /// The clinic revoked join links (and committed it): end the
    /// connections that hold them and close them on the relay, on every
    /// node.
    pub async fn links_revoked(&self, consultation: ConsultationId, links: &[String]) {
        if links.is_empty() {
            return;
        }
        self.act_and_tell(Notice::LinksRevoked {
            consultation: consultation.as_uuid(),
            links: links.to_vec(),
        })
        .await;
    }

    /// Login sessions ended (and that was committed): end the signaling
    /// connections that rest on them (`error` `unauthorized`, close 1008),
    /// on every node.
    pub async fn sessions_ended(&self, sessions: Vec<SessionKey>) {
        if sessions.is_empty() {
            return;
        }
        let keys = sessions.iter().map(|s| s.as_hex().to_owned()).collect();
        self.end_sessions_here(sessions).await;
        if let Some(cluster) = &self.inner.cluster {
            cluster.tell(Notice::SessionsEnded { sessions: keys }).await;
        }
    }

    /// This node's id in the cluster, `None` when it runs alone.
    pub fn cluster_node(&self) -> Option<Uuid> {
        self.inner.cluster.as_ref().map(Cluster::node)
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

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Sends `input` to the hub task of `consultation`'s room; a hub task
    /// that is gone (the service is stopping) has nothing left to do.
    async fn to_room(&self, consultation: Uuid, input: HubInput) {
        let _ = self.hub(consultation).send(input).await;
    }

    /// The input channel of the hub task that holds `consultation`'s room.
    fn hub(&self, consultation: Uuid) -> &mpsc::Sender<HubInput> {
        &self.inner.hubs[shard_of(consultation, self.inner.hubs.len())]
    }
}

/// A [`Signaling`] that does not keep it alive.
#[derive(Clone)]
pub struct WeakSignaling(std::sync::Weak<Inner>);

impl WeakSignaling {
    /// The service, while it runs.
    pub fn upgrade(&self) -> Option<Signaling> {
        self.0.upgrade().map(|inner| Signaling { inner })
    }
}

/// Sweeps the database every `every` for what this node may have missed on
/// NATS ([`Signaling::sweep_once`]), until the service is gone.
async fn sweep(weak: WeakSignaling, store: Store, clock: Clock, every: Duration) {
    let overlap = chrono::Duration::from_std(SWEEP_OVERLAP).expect("two minutes fit");
    let mut since = clock.now() - overlap;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(signaling) = weak.upgrade() else {
            return;
        };
        let now = clock.now();
        let ok = signaling.sweep_once(&store, since).await;
        signaling.metrics().cluster_swept(ok);
        if ok {
            since = now - overlap;
        }
    }
}

/// Renews this node's room leases every `every`, and releases those whose
/// room closed here ([`RELEASE_GRACE`] later), until the service is gone.
async fn keep_leases(
    weak: WeakSignaling,
    mut closed: mpsc::UnboundedReceiver<Uuid>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            room = closed.recv() => {
                let Some(room) = room else { return };
                let Some(signaling) = weak.upgrade() else { return };
                let mut held = signaling.inner.held.lock().expect("leases lock");
                if let Some(h) = held.get_mut(&room) {
                    h.closed_at = Some(std::time::Instant::now());
                }
            }
            _ = ticks.tick() => {
                let Some(signaling) = weak.upgrade() else { return };
                renew_leases(&signaling).await;
            }
        }
    }
}

/// Renewals of one node's leases in flight at once.
const RENEWALS_IN_FLIGHT: usize = 64;

/// Renews every lease this node holds, [`RENEWALS_IN_FLIGHT`] at a time,
/// and releases those of rooms closed [`RELEASE_GRACE`] ago. The map keeps
/// its entries while the renewals are out (a hello routed meanwhile finds
/// its room held); an entry a new claim replaced meanwhile is left alone.
async fn renew_leases(signaling: &Signaling) {
    use futures_util::StreamExt as _;
    let Some(leases) = signaling.inner.leases.clone() else {
        return;
    };
    let now = std::time::Instant::now();
    let mut renew = Vec::new();
    let mut release = Vec::new();
    {
        let mut held = signaling.inner.held.lock().expect("leases lock");
        held.retain(|room, h| {
            let closed = h
                .closed_at
                .is_some_and(|at| now.duration_since(at) >= RELEASE_GRACE);
            if closed {
                release.push(h.lease.clone());
            } else {
                renew.push((*room, h.lease.clone()));
            }
            !closed
        });
    }
    for lease in release {
        leases.release(lease).await;
    }
    let renewed: Vec<_> = futures_util::stream::iter(renew)
        .map(|(room, mut lease)| {
            let leases = leases.clone();
            async move {
                let was = lease.revision;
                let result = leases.renew(&mut lease).await;
                (room, was, lease, result)
            }
        })
        .buffer_unordered(RENEWALS_IN_FLIGHT)
        .collect()
        .await;
    for (room, was, lease, result) in renewed {
        let lost = {
            let mut held = signaling.inner.held.lock().expect("leases lock");
            match held.get_mut(&room) {
                Some(h) if h.lease.revision == was => match result {
                    Ok(()) => {
                        h.lease = lease;
                        None
                    }
                    Err(lost) => {
                        held.remove(&room);
                        Some(lost)
                    }
                },
                // Released, or claimed again, meanwhile.
                _ => None,
            }
        };
        if let Some(lost) = lost {
            tracing::error!(%room, %lost, "this node lost a room's lease");
            signaling
                .to_room(room, HubInput::Relinquish { consultation: room })
                .await;
        }
    }
}
