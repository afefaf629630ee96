//! A hub task: the one owner of a `konsult_signal::Hub`, which holds one
//! shard of the node's rooms (`super::shard_of`).
//!
//! Connection tasks and the API send [`HubInput`]s over the shard's
//! channel; the task feeds each to the core with the real monotonic `Instant`, and
//! carries out the core's outputs: frames and closes to the connections'
//! channels, admission checks to spawned store queries, writes to the
//! [`Recorder`]. Every second it feeds the core what the embedded relay
//! counted for the rooms in a call. It sleeps until the core's next
//! deadline.
//!
//! What the task needs per room to carry out its outputs (the clinic to
//! write to, the patient's link window to check at admission) travels with
//! the room in the core, as the [`RoomContext`] each join gives it
//! ([`PumpContext`]): the task keeps no table of rooms.
//!
//! The recorder commits writes in the order the core emitted them for each
//! consultation (a few workers, each consultation always on the same one),
//! retrying failed writes until they commit, and answers each with
//! [`HubInput::Written`]. The core holds a room's messages back until its
//! durable writes are answered, so what a client hears is already in the
//! database.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use konsult_domain::{CallEvent, ClinicId, ConsultationId};
use konsult_protocol::{CloseCode, ErrorCode, ServerBody, ServerMessage};
use konsult_signal::{
    AdmissionCheckId, Census, ConnId, Hub, JoinRequest, LinkRef, Output, RoomContext, RoomRecord,
    WriteId, WriteRefused,
};
use konsult_store::consultations::{CallWriteRequest, RoomWrite};
use konsult_store::therapists::SessionKey;
use konsult_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

use super::outbox::{Outbox, Refused};
use crate::cluster::{Cluster, Notice};
use crate::metrics::Metrics;
use crate::relay::Turn;
use crate::state::Clock;

/// Failure code when the patient's join link closed before admission.
pub const WINDOW_CLOSED: &str = "window_closed";
/// Failure code when the consultation was ended, completed or cancelled
/// before admission.
pub const CONSULTATION_CLOSED: &str = "consultation_closed";
/// Close reason when the therapist's login session ended.
pub const SESSION_ENDED: &str = "session_ended";
/// How long an ended session is remembered against a late join (longer
/// than a hello's check in the store takes).
const ENDED_SESSION_MEMORY: Duration = Duration::from_secs(60);
/// How often the rooms in a call are checked against the relay's counts.
const RELAY_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Workers committing writes; each consultation always goes to the same one.
const WRITE_WORKERS: usize = 4;
/// At most this many queued writes of one worker share a transaction.
const WRITE_BATCH: usize = 128;
/// Back-off between attempts of a failed write: doubling up to the last.
const WRITE_BACKOFF: [Duration; 6] = [
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// What a connection task, the API or the recorder tells the hub task.
#[derive(Debug)]
pub enum HubInput {
    /// A hello passed authentication: join the room.
    Join {
        /// The connection.
        conn: ConnId,
        /// For `Hub::handle_join`, with its [`PumpContext`].
        request: JoinRequest,
        /// Therapist: the login session the connection rests on.
        session: Option<SessionKey>,
        /// Where the connection's frames go.
        writer: Outbox,
    },
    /// A text frame.
    Text {
        /// The connection.
        conn: ConnId,
        /// The frame, as the WebSocket read it.
        text: Utf8Bytes,
    },
    /// The connection ended.
    Gone {
        /// The connection.
        conn: ConnId,
    },
    /// An admission check finished.
    Checked {
        /// The consultation.
        consultation: Uuid,
        /// The check it answers.
        check: AdmissionCheckId,
        /// `Err` holds failure codes.
        result: Result<(), Vec<String>>,
    },
    /// A write was committed (or refused for good).
    Written {
        /// The consultation.
        consultation: Uuid,
        /// The write it answers.
        write: WriteId,
        /// The outcome.
        result: Result<(), WriteRefused>,
    },
    /// The clinic closed the consultation (committed already).
    Closed {
        /// The consultation.
        consultation: Uuid,
    },
    /// The clinic revoked a join link (committed already).
    LinkRevoked {
        /// The consultation.
        consultation: Uuid,
        /// The link's reference.
        link: LinkRef,
    },
    /// Login sessions ended (logout, password change or reset,
    /// deactivation; committed already): their connections end.
    SessionsEnded {
        /// The sessions.
        sessions: Vec<SessionKey>,
    },
    /// The login sessions of this shard's therapists' connections (a
    /// cluster sweep checks them against the database).
    Sessions {
        /// Where they go.
        reply: oneshot::Sender<Vec<SessionKey>>,
    },
    /// This node now owns a room another node ran (its lease ran out):
    /// restore it from its saved record, unless it runs here already.
    Adopt {
        /// The room's saved record.
        saved: konsult_store::consultations::SavedRoom,
    },
    /// This node lost the room's lease to another node: forget the room
    /// without writing and close its connections so that they resume on
    /// the new owner.
    Relinquish {
        /// The consultation.
        consultation: Uuid,
    },
    /// Count the rooms and participants (a metrics scrape).
    Census {
        /// Where the count goes.
        reply: oneshot::Sender<Census>,
    },
}

/// What the hub task tells a connection's writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Write this JSON text frame.
    Frame(String),
    /// Send a close frame and stop.
    Close {
        /// The close code.
        code: u16,
        /// The reason text.
        reason: &'static str,
    },
}

/// The way back to the hub tasks for answers (admission checks, writes):
/// each to the shard of its consultation. Weak, so the tasks end when every
/// connection and the server are gone.
#[derive(Clone)]
pub struct Feedback {
    shards: Arc<[mpsc::WeakSender<HubInput>]>,
}

impl Feedback {
    /// The shards' senders, by shard.
    pub fn new(shards: Vec<mpsc::WeakSender<HubInput>>) -> Self {
        Self {
            shards: shards.into(),
        }
    }

    /// Sends `input` to the hub task of `consultation`'s room, if it runs.
    async fn send(&self, consultation: Uuid, input: HubInput) {
        let shard = super::shard_of(consultation, self.shards.len());
        if let Some(hub) = self.shards[shard].upgrade() {
            let _ = hub.send(input).await;
        }
    }
}

/// Sessions ended within [`ENDED_SESSION_MEMORY`], oldest first.
#[derive(Default)]
struct EndedSessions {
    order: std::collections::VecDeque<(Instant, SessionKey)>,
    keys: std::collections::HashSet<SessionKey>,
}

impl EndedSessions {
    fn insert(&mut self, session: SessionKey, now: Instant) {
        self.forget_old(now);
        if self.keys.insert(session.clone()) {
            self.order.push_back((now, session));
        }
    }

    fn contains(&self, session: &SessionKey, now: Instant) -> bool {
        self.keys.contains(session)
            && self
                .order
                .iter()
                .any(|(at, s)| s == session && now.duration_since(*at) < ENDED_SESSION_MEMORY)
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < ENDED_SESSION_MEMORY {
                break;
            }
            if let Some((_, s)) = self.order.pop_front() {
                self.keys.remove(&s);
            }
        }
    }
}

/// What the hub task needs to carry out a room's outputs, kept by the core
/// as the room's opaque [`RoomContext`] (JSON) and echoed in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PumpContext {
    /// The consultation's clinic (for store writes and admission checks).
    pub clinic: ClinicId,
    /// Patient: when the join link closes (checked again at admission).
    pub closes_at: Option<DateTime<Utc>>,
}

impl PumpContext {
    /// As the core carries it.
    pub fn encode(&self) -> RoomContext {
        RoomContext::new(serde_json::to_vec(self).expect("a pump context serialises"))
    }

    /// Read back from an output of the core.
    fn decode(context: &RoomContext) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(context.as_bytes())
    }
}

/// What the hub task works with besides the core and its channels.
pub struct HubDeps {
    /// The store (admission checks).
    pub store: Store,
    /// The clock for stored times.
    pub clock: Clock,
    /// The relay (observed media).
    pub turn: Arc<Turn>,
    /// Commits the core's writes.
    pub recorder: Recorder,
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// In a cluster: told of each room that closed here, so that its lease
    /// is released.
    pub rooms_closed: Option<mpsc::UnboundedSender<Uuid>>,
}

/// Everything the hub task needs besides the core.
pub struct HubTask {
    hub: Hub,
    inputs: mpsc::Receiver<HubInput>,
    /// For admission checks and writes to answer; weak, so the task ends
    /// when every connection and the server are gone.
    feedback: Feedback,
    writers: HashMap<ConnId, Outbox>,
    /// The login session of each therapist's connection: the core knows
    /// participants by role, not by account.
    sessions: HashMap<ConnId, SessionKey>,
    /// Sessions ended lately, so that a connection whose hello was checked
    /// just before its session ended is closed when it joins.
    ended: EndedSessions,
    recorder: Recorder,
    store: Store,
    clock: Clock,
    turn: Arc<Turn>,
    metrics: Arc<Metrics>,
    rooms_closed: Option<mpsc::UnboundedSender<Uuid>>,
}

impl HubTask {
    /// Prepares the task: restores the rooms saved before a restart (their
    /// participants may resume without a new admission) and starts the
    /// recorder.
    pub fn new(
        hub: Hub,
        inputs: mpsc::Receiver<HubInput>,
        feedback: Feedback,
        deps: HubDeps,
        saved: Vec<konsult_store::consultations::SavedRoom>,
    ) -> Self {
        let HubDeps {
            store,
            clock,
            turn,
            recorder,
            metrics,
            rooms_closed,
        } = deps;
        let mut task = Self {
            hub,
            inputs,
            feedback,
            writers: HashMap::new(),
            sessions: HashMap::new(),
            ended: EndedSessions::default(),
            recorder,
            store,
            clock,
            turn,
            metrics,
            rooms_closed,
        };
        let now = Instant::now();
        for saved in saved {
            task.restore(now, saved);
            task.drain();
        }
        tracing::debug!(rooms = task.hub.room_count(), "signaling rooms restored");
        task
    }

    /// Restores a saved room (its participants may resume without a new
    /// admission).
    fn restore(&mut self, now: Instant, saved: konsult_store::consultations::SavedRoom) {
        let id = saved.consultation.as_uuid();
        match RoomRecord::from_json(&saved.record) {
            Ok(record) => {
                // The link window comes with the patient's next join.
                let context = PumpContext {
                    clinic: saved.clinic,
                    closes_at: None,
                };
                if let Err(error) = self.hub.restore(now, id, &record, context.encode()) {
                    tracing::error!(consultation = %id, %error, "could not restore a room");
                }
            }
            Err(error) => {
                tracing::error!(consultation = %id, %error, "a saved room is unreadable")
            }
        }
    }

    /// Runs until every sender of inputs is gone.
    pub async fn run(mut self) {
        let mut relay_check = tokio::time::interval(RELAY_CHECK_INTERVAL);
        relay_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.hub.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => return,
                },
                () = sleep => self.hub.handle_timeout(Instant::now()),
                _ = relay_check.tick() => self.check_relay().await,
            }
            self.drain();
        }
    }

    /// Feeds one input to the core.
    fn on_input(&mut self, input: HubInput) {
        let now = Instant::now();
        match input {
            HubInput::Join {
                conn,
                request,
                session,
                writer,
            } => {
                self.writers.insert(conn, writer);
                let role = request.role;
                match self.hub.handle_join(now, conn, request) {
                    Ok(()) => self.metrics.joined(role),
                    Err(error) => tracing::error!(%error, "joining a connection failed"),
                }
                if let Some(session) = session {
                    let gone = self.ended.contains(&session, now);
                    self.sessions.insert(conn, session);
                    if gone {
                        self.end_session_conns(now, |_| false);
                    }
                }
            }
            HubInput::Text { conn, text } => self.hub.handle_text(now, conn, text.as_str()),
            HubInput::Gone { conn } => {
                self.writers.remove(&conn);
                self.sessions.remove(&conn);
                self.hub.handle_disconnect(now, conn);
            }
            HubInput::Checked {
                consultation,
                check,
                result,
            } => {
                self.metrics.admission_checked(result.is_ok());
                self.hub
                    .handle_admission_check(now, consultation, check, result)
            }
            HubInput::Written {
                consultation,
                write,
                result,
            } => self.hub.handle_written(now, consultation, write, result),
            HubInput::Closed { consultation } => {
                self.hub.handle_consultation_closed(now, consultation)
            }
            HubInput::LinkRevoked { consultation, link } => {
                self.hub.handle_link_revoked(now, consultation, &link)
            }
            HubInput::SessionsEnded { sessions } => {
                for session in &sessions {
                    self.ended.insert(session.clone(), now);
                }
                self.end_session_conns(now, |s| sessions.contains(s));
            }
            HubInput::Sessions { reply } => {
                // The sweep removes the repeats (a therapist's several
                // connections, in several shards).
                let _ = reply.send(self.sessions.values().cloned().collect());
            }
            HubInput::Adopt { saved } => {
                let id = saved.consultation.as_uuid();
                if !self.hub.has_room(id) {
                    tracing::info!(consultation = %id, "adopting a room from its saved record");
                    self.restore(now, saved);
                }
            }
            HubInput::Relinquish { consultation } => {
                if self.hub.has_room(consultation) {
                    tracing::warn!(%consultation, "another node owns this room now; giving it up");
                    self.hub.relinquish(now, consultation);
                }
            }
            HubInput::Census { reply } => {
                // Nobody waiting for it any more is not an error.
                let _ = reply.send(self.hub.census());
            }
        }
    }

    /// Ends the therapists' connections whose session `ended` says ended,
    /// and whose sessions were ended lately: tells each `unauthorized`,
    /// closes it with 1008 (no automatic reconnect; a new hello would be
    /// refused anyway) and lets the core treat it as gone.
    fn end_session_conns(&mut self, now: Instant, ended: impl Fn(&SessionKey) -> bool) {
        let conns: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| ended(s) || self.ended.contains(s, now))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in conns {
            tracing::info!(%conn, "session ended; closing its connection");
            self.sessions.remove(&conn);
            let error = ServerMessage::error(
                ErrorCode::Unauthorized,
                "the login session ended (logged out, password changed or account deactivated)",
            );
            self.write(conn, Outbound::Frame(error.to_json()));
            self.write(
                conn,
                Outbound::Close {
                    code: CloseCode::REJECTED,
                    reason: SESSION_ENDED,
                },
            );
            self.writers.remove(&conn);
            self.hub.handle_disconnect(now, conn);
        }
    }

    /// Feeds the core what the relay counted for every room in a call that
    /// has no relay-observed evidence yet.
    async fn check_relay(&mut self) {
        for consultation in self.hub.rooms_awaiting_relay_evidence() {
            if let Some((to_therapist, to_patient)) = self.turn.observed(consultation).await {
                self.hub
                    .handle_relay_media(Instant::now(), consultation, to_therapist, to_patient);
            }
        }
    }

    /// Carries out everything the core asked for.
    fn drain(&mut self) {
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Send { conn, message } => {
                    if matches!(&message.body, ServerBody::Welcome(w) if w.resumed) {
                        self.metrics.resumed();
                    }
                    self.write(conn, Outbound::Frame(message.to_json()));
                }
                Output::Close { conn, reason } => {
                    tracing::debug!(%conn, reason = reason.as_str(), "closing connection");
                    self.write(
                        conn,
                        Outbound::Close {
                            code: reason.code(),
                            reason: reason.as_str(),
                        },
                    );
                    // Nothing more goes to a closed connection.
                    self.writers.remove(&conn);
                    self.sessions.remove(&conn);
                }
                Output::Write {
                    consultation,
                    write,
                    events,
                    room,
                    hold,
                    context,
                } => self.record(consultation, write, events, room, hold, &context),
                Output::AdmissionCheck {
                    consultation,
                    check,
                    context,
                    ..
                } => self.spawn_check(consultation, check, &context),
                Output::RoomClosed { consultation, .. } => {
                    if let Some(closed) = &self.rooms_closed {
                        let _ = closed.send(consultation);
                    }
                }
            }
        }
    }

    fn write(&mut self, conn: ConnId, frame: Outbound) {
        let Some(writer) = self.writers.get(&conn) else {
            return;
        };
        if let Err(refused) = writer.try_send(frame) {
            if refused == Refused::Full {
                // A client that does not read: drop it; it can resume and
                // get what it missed from the replay buffer.
                tracing::warn!(%conn, "connection does not keep up; closing it");
            }
            // Dropping the outbox ends the connection's pump.
            self.writers.remove(&conn);
        }
    }

    fn record(
        &mut self,
        consultation: Uuid,
        write: WriteId,
        events: Vec<CallEvent>,
        room: Option<RoomRecord>,
        hold: bool,
        context: &RoomContext,
    ) {
        for event in &events {
            tracing::info!(consultation = %consultation, event = event.code(), detail = event.detail(), "room event");
        }
        let clinic = match PumpContext::decode(context) {
            Ok(context) => context.clinic,
            Err(error) => {
                // Cannot happen (every join and restore gives one); refuse
                // rather than leave the room waiting for ever.
                tracing::error!(consultation = %consultation, %write, %error, "a write without a readable room context");
                self.hub
                    .handle_written(Instant::now(), consultation, write, Err(WriteRefused));
                return;
            }
        };
        self.recorder.submit(WriteJob {
            clinic,
            consultation,
            write,
            events,
            room: room.map(|r| r.to_json()),
            hold,
            at: self.clock.now(),
        });
    }

    fn spawn_check(&self, consultation: Uuid, check: AdmissionCheckId, context: &RoomContext) {
        let PumpContext { clinic, closes_at } = match PumpContext::decode(context) {
            Ok(context) => context,
            Err(error) => {
                // Cannot happen; the core times the check out.
                tracing::error!(consultation = %consultation, %error, "an admission check without a readable room context");
                return;
            }
        };
        let store = self.store.clone();
        let clock = self.clock.clone();
        let feedback = self.feedback.clone();
        tokio::spawn(async move {
            let id = ConsultationId::from_uuid(consultation);
            let Some(result) = admission_check(&store, &clock, clinic, id, closes_at).await else {
                // The core gives up after its timeout and tells the
                // therapist `admission_check_failed`.
                return;
            };
            feedback
                .send(
                    consultation,
                    HubInput::Checked {
                        consultation,
                        check,
                        result,
                    },
                )
                .await;
        });
    }
}

/// Re-checks, at admission, the link window and the patient's eligibility.
/// `None` when the store failed (the core then times the check out).
async fn admission_check(
    store: &Store,
    clock: &Clock,
    clinic: ClinicId,
    consultation: ConsultationId,
    closes_at: Option<DateTime<Utc>>,
) -> Option<Result<(), Vec<String>>> {
    let now = clock.now();
    if closes_at.is_some_and(|closes| now >= closes) {
        return Some(Err(vec![WINDOW_CLOSED.to_owned()]));
    }
    match store.admission_check(clinic, consultation, now).await {
        Ok(Ok(())) => Some(Ok(())),
        Ok(Err(failures)) => Some(Err(failures.iter().map(|f| f.code().to_owned()).collect())),
        // An erased patient, or a duplicate merged away, is never admitted.
        Err(StoreError::Refused { code, .. }) => Some(Err(vec![code.to_owned()])),
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
            Some(Err(vec![CONSULTATION_CLOSED.to_owned()]))
        }
        Err(error) => {
            tracing::error!(%consultation, %error, "admission check failed");
            None
        }
    }
}

/// One write of the core, to commit.
#[derive(Debug)]
pub struct WriteJob {
    clinic: ClinicId,
    consultation: Uuid,
    write: WriteId,
    events: Vec<CallEvent>,
    room: Option<String>,
    hold: bool,
    at: DateTime<Utc>,
}

/// Commits the core's writes: in order per consultation, retried until
/// they commit or the store refuses them for good, each answered to the
/// hub. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    workers: Arc<[mpsc::UnboundedSender<WriteJob>]>,
    pending: Arc<Pending>,
}

/// Writes submitted and not yet answered, for draining at shutdown.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl Recorder {
    /// Starts the workers. They answer through `feedback` and close the
    /// relay of consultations whose call ended (on every node of the
    /// `cluster`).
    pub fn start(
        store: Store,
        turn: Arc<Turn>,
        feedback: Feedback,
        metrics: Arc<Metrics>,
        cluster: Option<Cluster>,
    ) -> Self {
        let pending = Arc::new(Pending::default());
        let workers = (0..WRITE_WORKERS)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(work(
                    rx,
                    Worker {
                        store: store.clone(),
                        turn: Arc::clone(&turn),
                        feedback: feedback.clone(),
                        pending: Arc::clone(&pending),
                        metrics: Arc::clone(&metrics),
                        cluster: cluster.clone(),
                        admitted: HashMap::new(),
                    },
                ));
                tx
            })
            .collect();
        Self { workers, pending }
    }

    fn submit(&self, job: WriteJob) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        job.consultation.hash(&mut hasher);
        let worker = (hasher.finish() % self.workers.len() as u64) as usize;
        self.pending.count.fetch_add(1, Ordering::SeqCst);
        if self.workers[worker].send(job).is_err() {
            self.pending.done();
        }
    }

    /// Waits until every write submitted so far (and every write those
    /// caused) is answered, or `limit` passes. Returns how many are left.
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.pending.idle.notified();
            let left = self.pending.count.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.pending.count.load(Ordering::SeqCst);
            }
        }
    }
}

impl Pending {
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// A recorder worker's state. A consultation's writes always go to the
/// same worker, so it can time a call's set-up on its own.
struct Worker {
    store: Store,
    turn: Arc<Turn>,
    feedback: Feedback,
    pending: Arc<Pending>,
    metrics: Arc<Metrics>,
    /// The other nodes, whose relays close a call that ended too.
    cluster: Option<Cluster>,
    /// When each call's admission was committed, until its two-way media
    /// or its end is.
    admitted: HashMap<Uuid, Instant>,
}

impl Worker {
    /// Counts the events of a committed write.
    fn committed(&mut self, consultation: Uuid, events: &[CallEvent]) {
        for event in events {
            self.metrics.call_event(event);
            match event {
                CallEvent::Admitted => {
                    self.admitted.insert(consultation, Instant::now());
                }
                CallEvent::TwoWayEstablished { .. } => {
                    if let Some(at) = self.admitted.remove(&consultation) {
                        self.metrics.call_set_up(at.elapsed());
                    }
                }
                CallEvent::PatientLeft | CallEvent::Ended { .. } => {
                    self.admitted.remove(&consultation);
                }
                _ => {}
            }
        }
    }
}

async fn work(mut jobs: mpsc::UnboundedReceiver<WriteJob>, mut worker: Worker) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    // Whatever queued while the last batch committed goes in the next one.
    while jobs.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        commit(&mut worker, &batch).await;
        batch.clear();
    }
}

/// Commits a batch of writes (in one transaction where the store can),
/// answering each as it is committed or refused for good, and retrying
/// the rest until then.
async fn commit(worker: &mut Worker, batch: &[WriteJob]) {
    let mut rest = batch;
    let mut attempt = 0;
    while !rest.is_empty() {
        let requests: Vec<CallWriteRequest<'_>> = rest.iter().map(WriteJob::request).collect();
        let (answers, error) = worker.store.write_calls(&requests).await;
        let answered = answers.len();
        for (job, answer) in rest.iter().zip(answers) {
            let result = match answer {
                Ok(written) => {
                    worker.committed(job.consultation, &job.events);
                    if written.effects.close_relay {
                        close_relay(&worker.turn, worker.cluster.clone(), job.consultation);
                    }
                    Ok(())
                }
                Err(_) => {
                    tracing::warn!(
                        consultation = %job.consultation,
                        write = %job.write,
                        "the store refused a room's write: the consultation is over"
                    );
                    Err(WriteRefused)
                }
            };
            worker
                .feedback
                .send(
                    job.consultation,
                    HubInput::Written {
                        consultation: job.consultation,
                        write: job.write,
                        result,
                    },
                )
                .await;
            worker.pending.done();
        }
        rest = &rest[answered..];
        if let Some(error) = error {
            let wait = WRITE_BACKOFF[attempt.min(WRITE_BACKOFF.len() - 1)];
            attempt += 1;
            tracing::warn!(
                writes = rest.len(),
                held = rest.iter().filter(|job| job.hold).count(),
                attempt,
                %error,
                "could not record call writes; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Media of a consultation that is over stops now, on every node's relay.
fn close_relay(turn: &Arc<Turn>, cluster: Option<Cluster>, consultation: Uuid) {
    let turn = Arc::clone(turn);
    tokio::spawn(async move {
        if let Some(cluster) = cluster {
            cluster.tell(Notice::CallEnded { consultation }).await;
        }
        match turn.close_consultation(consultation).await {
            Ok(closed) => tracing::info!(
                consultation = %consultation,
                allocations = closed,
                "closed the consultation on the relay"
            ),
            Err(error) => tracing::warn!(
                consultation = %consultation,
                %error,
                "could not close the consultation on the relay"
            ),
        }
    });
}

impl WriteJob {
    fn request(&self) -> CallWriteRequest<'_> {
        CallWriteRequest {
            clinic: self.clinic,
            id: ConsultationId::from_uuid(self.consultation),
            events: &self.events,
            room: match &self.room {
                Some(record) => RoomWrite::Save(record),
                None => RoomWrite::Delete,
            },
            at: self.at,
        }
    }
}
