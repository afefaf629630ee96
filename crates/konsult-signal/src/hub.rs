//! The hub: every room of one node, driven by inputs, polled for outputs.

use crate::config::Config;
use crate::filter::{filter_candidate, filter_sdp, Relays};
use crate::output::{AdmissionCheckId, CloseReason, ConnId, Output, RoomContext, WriteId};
use crate::ratelimit::RateLimiter;
use crate::record::{LinkRef, RecordError, RoomRecord};
use crate::room::{Ctx, Room, Seat};
use konsult_domain::evidence::ObservedFlow;
use konsult_domain::{EndReason, Evidence, EvidencePolicy};
use konsult_protocol::{
    parse_addressed, Addressed, CandidateLine, CandidatePolicy, ClientMessage, Denied,
    DeniedReason, ErrorCode, Features, Hello, IceCandidate, IceServer, Resume, ResumeToken, Role,
    Sdp, ServerBody, ServerMessage, PROTOCOL_VERSION,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What the pump knows about a connection after it authenticated the hello.
/// Serialisable: in a cluster, the node the connection reached sends it to
/// the node that owns the room.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    /// The consultation (from the link token or the therapist's hello).
    pub consultation: Uuid,
    /// Who is joining: the pump's id of the participant, stable for the
    /// consultation (a patient's joins all carry the same one). The
    /// therapist's seat is one per room whatever the id: another device or
    /// login of the therapist takes it over.
    pub participant: Uuid,
    /// What the participant may do.
    pub role: Role,
    /// `hello.version`: the protocol version of this connection.
    pub version: u32,
    /// The clinic's or consultation's candidate policy. If either
    /// participant's join says `relay_only`, the room is relay-only for
    /// its lifetime (the stricter policy wins).
    pub candidate_policy: CandidatePolicy,
    /// The clinic's evidence policy for two-way media.
    pub evidence_policy: EvidencePolicy,
    /// The stored consultation's call has started (it is `in_call`): a
    /// patient who joins is coming back.
    pub call_started: bool,
    /// The patient's join link (`None` for the therapist), so that revoking
    /// it ends this connection.
    pub link: Option<LinkRef>,
    /// ICE servers with this participant's TURN credentials.
    pub ice_servers: Vec<IceServer>,
    /// A fresh random token, used if this join starts a new device session
    /// (the core has no RNG). Unused when the join resumes.
    pub resume_token_for_new: ResumeToken,
    /// `hello.resume`, if the client sent one.
    pub resume: Option<Resume>,
    /// `hello.features`: the optional messages this connection receives.
    pub features: Features,
    /// What the pump needs back with the room's outputs (opaque to the
    /// core). When the join takes its participant's place, it becomes the
    /// room's context, echoed in the room's writes and close, and the
    /// participant's, echoed (for a patient) in admission checks. A refused
    /// join changes neither.
    pub context: RoomContext,
}

/// A pump bug: the core refuses the call and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// `handle_join` was called twice for the same connection.
    #[error("{0} has already joined")]
    AlreadyJoined(ConnId),
}

/// A first frame the pump must refuse: send [`HelloRejected::to_message`],
/// then close with [`konsult_protocol::CloseCode::REJECTED`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRejected {
    /// The error code.
    pub code: ErrorCode,
    /// A message without client values.
    pub message: String,
}

impl HelloRejected {
    /// The `error` message to send.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::error(self.code, self.message.clone())
    }
}

/// The store refused a write for good: the consultation is over or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRefused;

/// Where a participant's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Connected on this connection.
    Connected(ConnId),
    /// Dropped; may resume until the instant given.
    Disconnected {
        /// End of the grace period.
        grace_until: Instant,
    },
}

/// The patient's admission state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionState {
    /// In the waiting room.
    Waiting,
    /// The therapist admitted; the pump is re-checking eligibility.
    Checking,
    /// In the call.
    Admitted,
}

/// How many rooms and participants a hub holds, by state (for operators'
/// metrics; counts only, no ids).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Rooms.
    pub rooms: usize,
    /// Rooms whose call started (a patient was admitted at least once).
    pub rooms_in_call: usize,
    /// Therapists connected.
    pub therapists: usize,
    /// Patients connected in the waiting room (admission check included).
    pub patients_waiting: usize,
    /// Patients connected and admitted.
    pub patients_admitted: usize,
    /// Participants dropped and still within their grace period.
    pub participants_away: usize,
}

impl std::ops::AddAssign for Census {
    fn add_assign(&mut self, other: Census) {
        self.rooms += other.rooms;
        self.rooms_in_call += other.rooms_in_call;
        self.therapists += other.therapists;
        self.patients_waiting += other.patients_waiting;
        self.patients_admitted += other.patients_admitted;
        self.participants_away += other.participants_away;
    }
}

/// A read-only view of one room, for dashboards and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSnapshot {
    /// The effective candidate policy.
    pub candidate_policy: CandidatePolicy,
    /// The therapist, if in the consultation.
    pub therapist: Option<Presence>,
    /// The patient, if in the consultation.
    pub patient: Option<Presence>,
    /// The patient's admission state (`Waiting` when there is no patient).
    pub admission: AdmissionState,
    /// Whether two-way media was established in the current call.
    pub two_way_established: bool,
    /// The evidence of the current call's two-way media, if established.
    pub evidence: Option<Evidence>,
    /// The consultation's call has started (a patient was admitted).
    pub call_started: bool,
    /// Durable writes the room's messages wait for.
    pub pending_writes: usize,
    /// Everyone in the room, in the order they first came.
    pub participants: Vec<ParticipantSnapshot>,
}

/// A read-only view of one participant of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantSnapshot {
    /// The pump's id of the participant (the latest join's, for the
    /// therapist; nil for one restored from a record without ids until it
    /// joins again).
    pub id: Uuid,
    /// What it may do.
    pub role: Role,
    /// Its connection.
    pub presence: Presence,
    /// Its admission (the therapist's is `Admitted`).
    pub admission: AdmissionState,
    /// Its two-way media with the therapist in its current call, if
    /// established (a patient's).
    pub evidence: Option<Evidence>,
}

#[derive(Debug)]
struct Conn {
    consultation: Uuid,
    seat: Seat,
    role: Role,
    /// Its hello's protocol version.
    version: u32,
    /// Last frame received (or, once closed, when the core closed it).
    last_seen: Instant,
    limiter: RateLimiter,
    errors: VecDeque<Instant>,
    /// Set when the core emitted `Output::Close`; the entry stays until the
    /// pump reports `handle_disconnect` (or a heartbeat period passes).
    closed: Option<CloseReason>,
    /// The optional messages its hello asked for.
    features: Features,
}

/// A refusal of one frame: error code and message for the sender.
type Refusal = (ErrorCode, &'static str);

/// All signaling rooms of one node, as a sans-I/O state machine.
///
/// No async, no clock, no randomness, no I/O: time comes in as `now`, ids and
/// tokens come in as arguments, and everything that must happen comes out of
/// [`Hub::poll_output`]. Message bodies (SDP, candidates, chat) are never
/// logged; the core has no logging at all.
///
/// # Durable before visible
///
/// What happens to a consultation is reported as [`CallEvent`]s in
/// [`Output::Write`]s, one per room and input, in order. A write with an
/// event that billing or the lifecycle rests on (`admitted`,
/// `two_way_established`, `ended`: [`CallEvent::is_durable`]) holds the
/// room's messages back until the pump acknowledges it with
/// [`Hub::handle_written`]: no client hears of an admission, two-way media or
/// the end of a consultation before it is committed. Each write also carries
/// the room's [`RoomRecord`], so a restarted server can take the
/// participants back with [`Hub::restore`].
///
/// # The room's context
///
/// What the pump needs to carry out a room's outputs (in the server: the
/// clinic to write to, the patient's link window to check at admission)
/// it gives the core as an opaque [`RoomContext`] with each join
/// ([`JoinRequest::context`]) and with [`Hub::restore`]. The room keeps
/// the latest one and echoes it in its [`Output::Write`]s and its
/// [`Output::RoomClosed`]; an [`Output::AdmissionCheck`] carries the
/// patient's. So the pump keeps no table of rooms beside the core's.
///
/// # Calling order
///
/// 0. At start-up, [`Hub::restore`] every saved room, with its context.
/// 1. Accept a WebSocket and give it a fresh [`ConnId`]. Read the first text
///    frame and check it with [`Hub::parse_hello`]; on `Err` send the error,
///    close with [`konsult_protocol::CloseCode::REJECTED`] and stop.
/// 2. Authenticate the hello (link token or session cookie, consultation
///    window, tenant) in the database; on failure send
///    [`ServerMessage::error`] (`unauthorized`, `link_expired`,
///    `link_not_yet_open`, `not_eligible`) and close. On success call
///    [`Hub::handle_join`].
/// 3. For every later text frame call [`Hub::handle_text`]; when the socket
///    ends for any reason (also after an [`Output::Close`]) call
///    [`Hub::handle_disconnect`] once.
/// 4. For every [`Output::AdmissionCheck`] re-check eligibility and the
///    window, then call [`Hub::handle_admission_check`].
/// 5. For every [`Output::Write`], commit it (in order per consultation,
///    retrying failures) and call [`Hub::handle_written`].
/// 6. When the instant from [`Hub::poll_timeout`] is reached, call
///    [`Hub::handle_timeout`]. Every second or so, feed what the relay
///    counted for the rooms of [`Hub::rooms_awaiting_relay_evidence`] to
///    [`Hub::handle_relay_media`].
/// 7. When the clinic closes a consultation or revokes a link, call
///    [`Hub::handle_consultation_closed`] or [`Hub::handle_link_revoked`].
/// 8. After **every** `handle_*` call, drain [`Hub::poll_output`] until
///    `None`, writing `Send`s to their connections in order, closing on
///    `Close`, committing `Write`s, starting `AdmissionCheck`s (both with
///    what their context says); then re-read [`Hub::poll_timeout`].
///
/// # Example: a pump
///
/// A synchronous sketch of the loop the server runs in one task (the real
/// pump reads the socket and the timer with `tokio::select!`):
///
/// ```
/// use konsult_domain::EvidencePolicy;
/// use konsult_protocol::{CandidatePolicy, ResumeToken, Role};
/// use konsult_signal::{ConnId, Config, Hub, JoinRequest, Output, RoomContext};
/// use std::time::{Duration, Instant};
///
/// let mut hub = Hub::new(Config::default());
/// let now = Instant::now();
/// let consultation = uuid::Uuid::from_u128(7);
///
/// // 1-2. First frame: a hello, authenticated by the server.
/// let hello = hub
///     .parse_hello(r#"{"type":"hello","version":1,"auth":{"link_token":"opaque"}}"#)
///     .expect("valid hello");
/// // ... look the link token up: it names `consultation`, role patient ...
/// hub.handle_join(now, ConnId(1), JoinRequest {
///     consultation,
///     // The pump's id of the participant (the link names it).
///     participant: uuid::Uuid::from_u128(42),
///     role: Role::Patient,
///     version: hello.version,
///     candidate_policy: CandidatePolicy::RelayOnly,
///     evidence_policy: EvidencePolicy::ClientReported,
///     call_started: false,
///     link: None,
///     ice_servers: vec![],
///     resume_token_for_new: ResumeToken::parse("fresh-random-token-1".into()).unwrap(),
///     resume: hello.resume,
///     features: hello.features,
///     // What the pump will need to carry out this room's outputs.
///     context: RoomContext::new(*b"clinic-3"),
/// })?;
///
/// // 3. Later frames.
/// hub.handle_text(now, ConnId(1), r#"{"type":"ping"}"#);
///
/// // 8. Drain outputs after every call.
/// let mut sent = Vec::new();
/// let mut writes = Vec::new();
/// while let Some(output) = hub.poll_output() {
///     match output {
///         Output::Send { conn, message } => sent.push((conn, message.to_json())),
///         Output::Close { conn, reason } => { /* close `conn` with reason.code() */ }
///         Output::Write { consultation, write, events, context, .. } => {
///             // 5. commit `events` and the room record (to the clinic the
///             // context names), then acknowledge.
///             assert_eq!(context.as_bytes(), b"clinic-3");
///             writes.push((consultation, write, events));
///         }
///         Output::AdmissionCheck { consultation, check, context, .. } => {
///             /* query the database, then hub.handle_admission_check(..) */
///         }
///         Output::RoomClosed { .. } => {}
///     }
/// }
/// assert!(sent[0].1.contains(r#""type":"welcome""#));
/// assert!(sent[1].1.contains(r#""type":"waiting""#));
/// assert!(sent[2].1.contains(r#""type":"pong""#));
/// assert_eq!(writes[0].2[0].code(), "patient_waiting");
/// for (consultation, write, _) in writes {
///     hub.handle_written(now, consultation, write, Ok(()));
/// }
///
/// // 6. Timers: sleep until poll_timeout(), then handle_timeout(now).
/// let next = hub.poll_timeout().expect("heartbeat deadline");
/// hub.handle_timeout(next);
/// # Ok::<(), konsult_signal::JoinError>(())
/// ```
#[derive(Debug)]
pub struct Hub {
    config: Config,
    rooms: BTreeMap<Uuid, Room>,
    conns: BTreeMap<ConnId, Conn>,
    out: VecDeque<Output>,
    next_check: u64,
    next_write: u64,
    /// Rooms the current input touched (their writes go out at its end).
    touched: BTreeSet<Uuid>,
    /// Deadlines of connections (heartbeat, then forgetting a closed one)
    /// and rooms (grace periods, admission checks), earliest first, so a
    /// timeout or a `poll_timeout` costs O(log n) in what is due, not a scan
    /// of every connection and room. Entries are checked when they come
    /// due and may be stale (see [`Timers`]).
    timers: Timers,
}

/// What a timer entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Conn(ConnId),
    Room(Uuid),
}

/// A min-heap of deadlines with lazy deletion. A connection has one entry
/// at a time, at or before its real deadline (`last_seen` only moves
/// forward, so a frame costs nothing here; the entry is moved when it comes
/// due early). A room gets an entry when a step changes its deadline (most
/// steps, a relayed offer or candidate among them, do not); an entry for a
/// deadline the room no longer has is stale and skipped.
#[derive(Debug, Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// The deadline each room's live entry is for.
    rooms: HashMap<Uuid, Instant>,
}

impl Timers {
    fn push(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// Schedules `room` at `deadline` (none: no timer), unless it already
    /// is; its earlier entry, if any, becomes stale.
    fn schedule_room(&mut self, room: Uuid, deadline: Option<Instant>) {
        if self.rooms.get(&room) == deadline.as_ref() {
            return;
        }
        match deadline {
            Some(at) => {
                self.rooms.insert(room, at);
                self.push(at, Timer::Room(room));
            }
            None => {
                self.rooms.remove(&room);
            }
        }
    }

    /// Drops stale entries from the top, so [`Timers::next`] is a deadline
    /// something still has (a connection's may have moved later).
    fn prune(&mut self, conns: &BTreeMap<ConnId, Conn>) {
        while let Some(Reverse((at, timer))) = self.heap.peek() {
            let stale = match timer {
                Timer::Conn(conn) => !conns.contains_key(conn),
                Timer::Room(room) => self.rooms.get(room) != Some(at),
            };
            if !stale {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest entry due at `now`, removed.
    fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        let Reverse((at, _)) = self.heap.peek()?;
        if *at > now {
            return None;
        }
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(config: Config) -> Self {
        Hub {
            config,
            rooms: BTreeMap::new(),
            conns: BTreeMap::new(),
            out: VecDeque::new(),
            next_check: 1,
            next_write: 1,
            touched: BTreeSet::new(),
            timers: Timers::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Takes back a room saved before a restart (or run by another node),
    /// with the pump's `context` for it, as a join would give it. Its
    /// participants are disconnected with [`Config::restore_grace`] to
    /// resume; a patient who was admitted stays admitted. If nobody comes
    /// back, the room ends as any room does (a started call is `ended` as
    /// `abandoned`).
    pub fn restore(
        &mut self,
        now: Instant,
        consultation: Uuid,
        record: &RoomRecord,
        context: RoomContext,
    ) -> Result<(), RecordError> {
        if self.rooms.contains_key(&consultation) {
            return Err(RecordError::RoomExists);
        }
        if !RoomRecord::is_readable(record.version) {
            return Err(RecordError::Version(record.version));
        }
        let grace_until = after(now, self.config.restore_grace);
        let start = self.out.len();
        let mut room = Room::restore(
            consultation,
            record,
            context,
            grace_until,
            self.config.replay_buffer,
        );
        // An empty saved room is settled now (a started call ends as
        // abandoned, in `after`): its record goes.
        room.dirty = room.is_empty();
        self.rooms.insert(consultation, room);
        self.touched.insert(consultation);
        self.after(start, now);
        Ok(())
    }

    /// Checks the first frame of a connection: size limit, JSON, `hello`,
    /// protocol version. Pure; changes nothing.
    pub fn parse_hello(&self, text: &str) -> Result<Hello, HelloRejected> {
        if text.len() > self.config.max_frame_bytes {
            return Err(HelloRejected {
                code: ErrorCode::TooLarge,
                message: format!(
                    "frames are limited to {} bytes",
                    self.config.max_frame_bytes
                ),
            });
        }
        konsult_protocol::parse_hello(text).map_err(|e| HelloRejected {
            code: e.code(),
            message: e.to_string(),
        })
    }

    /// A connection authenticated its hello: join it to its consultation's
    /// room (creating the room), resuming or taking over as described in
    /// `docs/protocol.md`.
    pub fn handle_join(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: JoinRequest,
    ) -> Result<(), JoinError> {
        if self.conns.contains_key(&conn) {
            return Err(JoinError::AlreadyJoined(conn));
        }
        self.timers
            .push(after(now, self.config.heartbeat_timeout), Timer::Conn(conn));
        self.conns.insert(
            conn,
            Conn {
                consultation: req.consultation,
                seat: Seat::of(req.role, req.participant),
                role: req.role,
                version: req.version,
                last_seen: now,
                limiter: RateLimiter::new(now, self.config.rate_per_second, self.config.rate_burst),
                errors: VecDeque::new(),
                closed: None,
                features: req.features.clone(),
            },
        );
        let start = self.out.len();
        let room = self.rooms.entry(req.consultation).or_insert_with(|| {
            Room::new(req.consultation, req.candidate_policy, req.evidence_policy)
        });
        if req.candidate_policy == CandidatePolicy::RelayOnly
            && room.policy != CandidatePolicy::RelayOnly
        {
            room.policy = CandidatePolicy::RelayOnly;
            room.dirty = true;
        }
        self.touched.insert(req.consultation);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        room.join(&mut ctx, conn, req);
        self.after(start, now);
        Ok(())
    }

    /// A text frame arrived on a joined connection. Enforces rate and size
    /// limits, parses, checks role and state, and acts. A refused frame gets
    /// an `error` and changes nothing else. Frames on unknown or already
    /// closed connections are ignored.
    pub fn handle_text(&mut self, now: Instant, conn: ConnId, text: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closed.is_some() {
            return;
        }
        c.last_seen = now;
        self.touched.insert(c.consultation);
        let start = self.out.len();
        let refusal: Option<(ErrorCode, String)> = if !c.limiter.try_take(now) {
            Some((
                ErrorCode::RateLimited,
                "too many messages; slow down".into(),
            ))
        } else if text.len() > self.config.max_frame_bytes {
            Some((
                ErrorCode::TooLarge,
                format!(
                    "frames are limited to {} bytes",
                    self.config.max_frame_bytes
                ),
            ))
        } else {
            match parse_addressed(text) {
                Err(e) => Some((e.code(), e.to_string())),
                Ok(Addressed { message, to }) => self
                    .dispatch(now, conn, message, to)
                    .err()
                    .map(|(code, m)| (code, m.to_string())),
            }
        };
        if let Some((code, message)) = refusal {
            self.refuse(now, conn, code, &message);
        }
        self.after(start, now);
    }

    /// This node no longer owns the room (in a cluster, its lease was lost
    /// to another node): forgets it without any write (the new owner
    /// restores it from its saved record) and closes its connections with
    /// [`CloseReason::Moved`], so that their clients resume on the new
    /// owner. Nothing else is sent: what the room still held back for a
    /// write is replayed by the new owner from the record.
    pub fn relinquish(&mut self, now: Instant, consultation: Uuid) {
        let Some(room) = self.rooms.remove(&consultation) else {
            return;
        };
        self.timers.rooms.remove(&consultation);
        self.touched.remove(&consultation);
        for (conn, c) in self.conns.iter_mut() {
            if c.consultation == consultation && c.closed.is_none() {
                c.closed = Some(CloseReason::Moved);
                c.last_seen = now;
                self.out.push_back(Output::Close {
                    conn: *conn,
                    reason: CloseReason::Moved,
                });
            }
        }
        self.out.push_back(Output::RoomClosed {
            consultation,
            context: room.context,
        });
    }

    /// The connection ended (closed by either side, or failed). Its
    /// participant may resume within the grace period; the peer is told
    /// `peer_left` only when that expires. Unknown connections are ignored,
    /// so calling this after an [`Output::Close`] is fine.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if c.closed.is_some() {
            return;
        }
        let start = self.out.len();
        if let Some(room) = self.rooms.get_mut(&c.consultation) {
            self.touched.insert(c.consultation);
            let mut ctx = Ctx {
                cfg: &self.config,
                out: &mut self.out,
            };
            room.detach(&mut ctx, conn, c.seat, now);
        }
        self.after(start, now);
    }

    /// The answer to [`Output::AdmissionCheck`]: `Ok` admits the patient;
    /// `Err(failures)` denies it with those stable failure codes (e.g.
    /// `assessment_revoked`) and tells the therapist `not_eligible`. Answers
    /// to checks that are no longer pending (the patient left, the check
    /// timed out, a newer check started) are ignored.
    pub fn handle_admission_check(
        &mut self,
        now: Instant,
        consultation: Uuid,
        check: AdmissionCheckId,
        result: Result<(), Vec<String>>,
    ) {
        let Some(room) = self.rooms.get_mut(&consultation) else {
            return;
        };
        let Some(guest) = room.checking(check.0) else {
            return;
        };
        self.touched.insert(consultation);
        let start = self.out.len();
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        match result {
            Ok(()) => room.admit(&mut ctx, guest, now),
            Err(failures) => {
                if let Some(conn) = room.therapist().and_then(|t| t.stream.conn()) {
                    ctx.error(
                        conn,
                        ErrorCode::NotEligible,
                        "the patient is not eligible for a video consultation now",
                        failures.clone(),
                    );
                }
                room.deny(
                    &mut ctx,
                    guest,
                    Denied {
                        reason: DeniedReason::NotEligible,
                        note: None,
                        failures,
                    },
                );
            }
        }
        self.after(start, now);
    }

    /// The answer to an [`Output::Write`]: `Ok` once it is committed, `Err`
    /// when the store refused it for good (the consultation is over or
    /// gone). When the last write a room waits for is committed, its held
    /// messages go out. A refused write closes the room: what it held is
    /// dropped, and everyone is told the consultation is over.
    pub fn handle_written(
        &mut self,
        now: Instant,
        consultation: Uuid,
        write: WriteId,
        result: Result<(), WriteRefused>,
    ) {
        let Some(room) = self.rooms.get_mut(&consultation) else {
            return;
        };
        let start = self.out.len();
        self.touched.insert(consultation);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        match result {
            Ok(()) => {
                if room.held.remove(&write) && room.held.is_empty() {
                    room.release(&mut ctx);
                }
            }
            Err(WriteRefused) => {
                room.held.clear();
                for m in &mut room.members {
                    // What waited for the refused write was never true.
                    m.stream.drop_unreleased();
                }
                for d in std::mem::take(&mut room.departing) {
                    ctx.close(d.conn, d.reason);
                }
                room.over = true;
                room.close_everyone(&mut ctx);
            }
        }
        self.after(start, now);
    }

    /// The clinic closed the consultation (cancelled, no-show, technical
    /// failure, completed) and committed it: everyone in its room is told
    /// `bye` and closed, and nobody joins any more.
    pub fn handle_consultation_closed(&mut self, now: Instant, consultation: Uuid) {
        let Some(room) = self.rooms.get_mut(&consultation) else {
            return;
        };
        let start = self.out.len();
        self.touched.insert(consultation);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        room.over = true;
        room.close_everyone(&mut ctx);
        self.after(start, now);
    }

    /// The clinic revoked a join link (or issued a new one, which revokes
    /// the old): a patient in the room with that link is turned away
    /// (`denied` in the waiting room, `bye` in the call) and closed.
    pub fn handle_link_revoked(&mut self, now: Instant, consultation: Uuid, link: &LinkRef) {
        let Some(room) = self.rooms.get_mut(&consultation) else {
            return;
        };
        let Some(guest) = room
            .members
            .iter()
            .find(|m| m.stream.link_ref.as_ref() == Some(link))
            .map(|m| m.seat())
        else {
            return;
        };
        let start = self.out.len();
        self.touched.insert(consultation);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        room.send_away(
            &mut ctx,
            guest,
            Denied {
                reason: DeniedReason::ByTherapist,
                note: None,
                failures: Vec::new(),
            },
        );
        self.after(start, now);
    }

    /// What Konsult's relay counted between the two participants of a
    /// consultation (media packets each way, over what span). When both
    /// directions satisfy [`Config::evidence`] during a call, two-way media
    /// is established with [`Evidence::RelayObserved`].
    pub fn handle_relay_media(
        &mut self,
        now: Instant,
        consultation: Uuid,
        patient_to_therapist: ObservedFlow,
        therapist_to_patient: ObservedFlow,
    ) {
        let Some(room) = self.rooms.get_mut(&consultation) else {
            return;
        };
        let start = self.out.len();
        self.touched.insert(consultation);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        // Version 1's relay counts are of the one patient in the call.
        if let Some(guest) = room.counterpart(Seat::Therapist) {
            room.on_relay_media(
                &mut ctx,
                guest,
                &patient_to_therapist,
                &therapist_to_patient,
            );
        }
        self.after(start, now);
    }

    /// Rooms in a call whose media the relay has not yet been seen to carry
    /// both ways: the ones to feed [`Hub::handle_relay_media`].
    pub fn rooms_awaiting_relay_evidence(&self) -> Vec<Uuid> {
        self.rooms
            .values()
            .filter(|r| r.awaits_relay_evidence())
            .map(|r| r.id)
            .collect()
    }

    /// Time has reached `now`: close silent connections (heartbeat), expire
    /// grace periods, give up on overdue admission checks. Calling it early
    /// or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let start = self.out.len();
        let timeout = self.config.heartbeat_timeout;
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Conn(conn) => {
                    let Some(c) = self.conns.get(&conn) else {
                        continue;
                    };
                    let deadline = after(c.last_seen, timeout);
                    if deadline > now {
                        // Heard from since: look again then.
                        self.timers.push(deadline, timer);
                    } else if c.closed.is_none() {
                        // Silent for a heartbeat timeout: closed (its
                        // participant may resume), and forgotten a timeout
                        // later if the disconnect never comes.
                        self.drop_conn(now, conn, CloseReason::HeartbeatTimeout);
                        self.timers.push(after(now, timeout), timer);
                    } else {
                        // Closed by the core, and its disconnect never came.
                        self.conns.remove(&conn);
                    }
                }
                Timer::Room(consultation) => {
                    if self.timers.rooms.get(&consultation) != Some(&at) {
                        continue;
                    }
                    self.timers.rooms.remove(&consultation);
                    let Some(room) = self.rooms.get_mut(&consultation) else {
                        continue;
                    };
                    match room.next_deadline() {
                        Some(deadline) if deadline <= now => {
                            self.touched.insert(consultation);
                            let mut ctx = Ctx {
                                cfg: &self.config,
                                out: &mut self.out,
                            };
                            room.on_timeout(&mut ctx, now);
                        }
                        later => self.timers.schedule_room(consultation, later),
                    }
                }
            }
        }
        self.after(start, now);
    }

    /// The next thing the pump must do, if any.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Hub::handle_timeout`] must be called next, if ever.
    #[must_use]
    ///
    /// It may come early (a connection heard from since, a deadline that
    /// moved), never late; calling [`Hub::handle_timeout`] early is harmless.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Whether the consultation has a room here.
    pub fn has_room(&self, consultation: Uuid) -> bool {
        self.rooms.contains_key(&consultation)
    }

    /// A view of one consultation's room, if it exists.
    pub fn room(&self, consultation: Uuid) -> Option<RoomSnapshot> {
        self.rooms.get(&consultation).map(Room::snapshot)
    }

    /// What a room would save now, if it exists.
    pub fn room_record(&self, consultation: Uuid) -> Option<RoomRecord> {
        self.rooms.get(&consultation).map(Room::record)
    }

    /// The hub's rooms and participants by state. It visits every room:
    /// for a scrape now and then, not for each input.
    pub fn census(&self) -> Census {
        let mut census = Census {
            rooms: self.rooms.len(),
            ..Census::default()
        };
        for room in self.rooms.values() {
            census.rooms_in_call += usize::from(room.call_started);
            for m in &room.members {
                match (m.stream.link, m.role, m.admission.state()) {
                    (Presence::Disconnected { .. }, _, _) => census.participants_away += 1,
                    (Presence::Connected(_), Role::Therapist, _) => census.therapists += 1,
                    (Presence::Connected(_), _, AdmissionState::Admitted) => {
                        census.patients_admitted += 1;
                    }
                    (Presence::Connected(_), _, _) => census.patients_waiting += 1,
                }
            }
        }
        census
    }

    /// How many rooms exist.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// How many connections the core tracks (joined, not yet disconnected).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Acts on one parsed message from a joined, open connection.
    fn dispatch(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: ClientMessage,
        to: Option<Uuid>,
    ) -> Result<(), Refusal> {
        let (consultation, seat, role, version) = {
            let c = &self.conns[&conn];
            (c.consultation, c.seat, c.role, c.version)
        };
        let Some(room) = self.rooms.get_mut(&consultation) else {
            return Err((ErrorCode::Internal, "no such consultation"));
        };
        let v2 = version > PROTOCOL_VERSION;
        // Version 2 names the participant a message is for or about;
        // version 1 never does.
        let to = match (v2, to) {
            (false, Some(_)) => {
                return Err((
                    ErrorCode::InvalidFields,
                    "`to` is part of protocol version 2",
                ))
            }
            (_, to) => to.map(|id| room.seat_of(id)),
        };
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        match msg {
            ClientMessage::Hello(_) => Err((ErrorCode::WrongState, "already joined")),
            ClientMessage::Ping {} => {
                ctx.send_conn(conn, ServerBody::Pong {});
                Ok(())
            }
            ClientMessage::Leave {} => {
                room.leave(&mut ctx, seat);
                Ok(())
            }
            ClientMessage::Admit {} => {
                if role != Role::Therapist {
                    return Err((ErrorCode::Forbidden, "only the therapist can admit"));
                }
                let guest = match to {
                    Some(guest) => Some(guest).filter(|&g| {
                        room.member(g)
                            .is_some_and(|m| m.admission.state() == AdmissionState::Waiting)
                    }),
                    None if v2 => {
                        return Err((
                            ErrorCode::InvalidFields,
                            "`to` names the participant to admit",
                        ))
                    }
                    // Version 1: the one patient waiting.
                    None => room.first_guest(|state| state == AdmissionState::Waiting),
                };
                let Some(Seat::Guest(participant)) = guest else {
                    return Err((ErrorCode::WrongState, "no such participant is waiting"));
                };
                let context = room
                    .member(Seat::Guest(participant))
                    .map(|m| m.stream.context.clone())
                    .unwrap_or_default();
                let check = self.next_check;
                self.next_check += 1;
                room.start_check(
                    Seat::Guest(participant),
                    check,
                    after(now, self.config.admission_check_timeout),
                );
                ctx.out.push_back(Output::AdmissionCheck {
                    consultation,
                    participant,
                    check: AdmissionCheckId(check),
                    context,
                });
                Ok(())
            }
            ClientMessage::Deny { reason } => {
                if role != Role::Therapist {
                    return Err((ErrorCode::Forbidden, "only the therapist can deny"));
                }
                let not_admitted = |state| state != AdmissionState::Admitted;
                let guest = match to {
                    Some(guest) => Some(guest).filter(|&g| {
                        g != Seat::Therapist
                            && room
                                .member(g)
                                .is_some_and(|m| not_admitted(m.admission.state()))
                    }),
                    None if v2 => {
                        return Err((
                            ErrorCode::InvalidFields,
                            "`to` names the participant to deny",
                        ))
                    }
                    None => room.first_guest(not_admitted),
                };
                let Some(guest) = guest else {
                    return Err((ErrorCode::WrongState, "no such participant is waiting"));
                };
                room.deny(
                    &mut ctx,
                    guest,
                    Denied {
                        reason: DeniedReason::ByTherapist,
                        note: reason,
                        failures: Vec::new(),
                    },
                );
                Ok(())
            }
            in_call => {
                if !room.in_call(seat) {
                    return Err((ErrorCode::WrongState, "not in a call"));
                }
                let from = room.member(seat).map(|m| m.id);
                // Who hears it: version 1, the other side; version 2, the
                // participant named by `to`, or (chat, media state) everyone
                // in the call.
                // One recipient, or (version 2 chat and media state) all
                // partners: no allocation on the common path.
                let (one, all): (Option<Seat>, Vec<Seat>) = match (&in_call, to) {
                    (ClientMessage::Stats(stats), about) => {
                        if about.is_some_and(|a| !room.is_partner(seat, a)) {
                            return Err((
                                ErrorCode::WrongState,
                                "not in a call with that participant",
                            ));
                        }
                        room.on_stats(&mut ctx, seat, about, stats, now);
                        return Ok(());
                    }
                    (ClientMessage::Chat { .. } | ClientMessage::MediaState(_), _) if v2 => {
                        (None, room.partners(seat))
                    }
                    (_, Some(target)) => {
                        if !room.is_partner(seat, target) {
                            return Err((
                                ErrorCode::WrongState,
                                "not in a call with that participant",
                            ));
                        }
                        (Some(target), Vec::new())
                    }
                    (_, None) if v2 => {
                        return Err((
                            ErrorCode::InvalidFields,
                            "`to` names the participant it is for",
                        ))
                    }
                    (_, None) => (room.counterpart(seat), Vec::new()),
                };
                let policy = room.policy;
                let relays = &room.relays;
                let mut body = match in_call {
                    ClientMessage::Offer { sdp } => ServerBody::Offer {
                        sdp: filtered_sdp(&sdp, policy, relays)?,
                    },
                    ClientMessage::Answer { sdp } => ServerBody::Answer {
                        sdp: filtered_sdp(&sdp, policy, relays)?,
                    },
                    ClientMessage::Candidate(c) => {
                        let Some(kept) = filter_candidate(c.candidate.as_str(), policy, relays)
                        else {
                            // Silently dropped: an honest client that gathers
                            // host candidates is not misbehaving.
                            return Ok(());
                        };
                        let Ok(candidate) = CandidateLine::parse(kept) else {
                            return Ok(());
                        };
                        ServerBody::Candidate(IceCandidate { candidate, ..c })
                    }
                    ClientMessage::EndOfCandidates(e) => ServerBody::EndOfCandidates(e),
                    ClientMessage::IceRestart {} => ServerBody::IceRestart {},
                    ClientMessage::Chat { text } => ServerBody::Chat { from: role, text },
                    ClientMessage::MediaState(state) => ServerBody::MediaState {
                        from: role,
                        audio: state.audio,
                        video: state.video,
                        screen: state.screen,
                    },
                    ClientMessage::Hello(_)
                    | ClientMessage::Ping {}
                    | ClientMessage::Leave {}
                    | ClientMessage::Admit {}
                    | ClientMessage::Deny { .. }
                    | ClientMessage::Stats(_) => unreachable!("handled above"),
                };
                let media_state = matches!(body, ServerBody::MediaState { .. });
                // Media state only to a peer that asked for it in its hello.
                let conns = &self.conns;
                let wants = |room: &Room, peer: Seat| {
                    !media_state
                        || room
                            .member(peer)
                            .and_then(|m| m.stream.conn())
                            .and_then(|c| conns.get(&c))
                            .is_some_and(|c| c.features.media_state)
                };
                let mut targets = one.into_iter().chain(all);
                // The body is copied for all but the last recipient (a
                // 1:1 relay copies nothing).
                let mut next = targets.find(|&peer| wants(room, peer));
                while let Some(peer) = next {
                    next = targets.find(|&peer| wants(room, peer));
                    let body = if next.is_some() {
                        body.clone()
                    } else {
                        std::mem::replace(&mut body, ServerBody::Pong {})
                    };
                    room.send_from(&mut ctx, peer, body, from);
                }
                Ok(())
            }
        }
    }

    /// Answers a refused frame and counts it toward the error limit.
    fn refuse(&mut self, now: Instant, conn: ConnId, code: ErrorCode, message: &str) {
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        ctx.error(conn, code, message, Vec::new());
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let window = self.config.error_window;
        c.errors.push_back(now);
        while c.errors.front().is_some_and(|t| after(*t, window) <= now) {
            c.errors.pop_front();
        }
        if c.errors.len() >= self.config.max_errors as usize {
            ctx.error(
                conn,
                ErrorCode::TooManyErrors,
                "too many errors; closing the connection",
                Vec::new(),
            );
            self.drop_conn(now, conn, CloseReason::TooManyErrors);
        }
    }

    /// Closes an open connection whose participant may resume (heartbeat
    /// timeout, too many errors).
    fn drop_conn(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (consultation, seat) = (c.consultation, c.seat);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        ctx.close(conn, reason);
        if let Some(room) = self.rooms.get_mut(&consultation) {
            self.touched.insert(consultation);
            room.detach(&mut ctx, conn, seat, now);
        }
    }

    /// Bookkeeping after every input: mark connections the core closed in
    /// this step, emit each touched room's write, and drop rooms that are
    /// done.
    fn after(&mut self, start: usize, now: Instant) {
        for output in self.out.iter().skip(start) {
            if let Output::Close { conn, reason } = output {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.closed = Some(*reason);
                    c.last_seen = now;
                }
            }
        }
        for consultation in std::mem::take(&mut self.touched) {
            let Some(room) = self.rooms.get_mut(&consultation) else {
                continue;
            };
            if room.is_empty() && room.call_started && !room.over {
                // Nobody is left after a call (they left or stayed away past
                // their grace periods): it is over, with what was
                // established kept.
                let mut ctx = Ctx {
                    cfg: &self.config,
                    out: &mut self.out,
                };
                room.end(&mut ctx, EndReason::Abandoned);
            }
            // A departing connection is closed for the core now, though its
            // close goes out only when the room is released: its frames are
            // ignored and no timer runs for it.
            for d in &room.departing {
                if let Some(c) = self.conns.get_mut(&d.conn) {
                    if c.closed.is_none() {
                        c.closed = Some(d.reason);
                        c.last_seen = now;
                    }
                }
            }
            if room.dirty || !room.pending.is_empty() {
                let write = WriteId(self.next_write);
                self.next_write += 1;
                let hold = room.hold_step;
                if hold {
                    room.held.insert(write);
                }
                self.out.push_back(Output::Write {
                    consultation,
                    write,
                    events: std::mem::take(&mut room.pending),
                    room: (!room.is_empty() && !room.over).then(|| room.record()),
                    hold,
                    context: room.context.clone(),
                });
            }
            room.dirty = false;
            room.hold_step = false;
            if room.is_done() {
                let context = std::mem::take(&mut room.context);
                self.rooms.remove(&consultation);
                self.timers.rooms.remove(&consultation);
                self.out.push_back(Output::RoomClosed {
                    consultation,
                    context,
                });
            } else {
                self.timers
                    .schedule_room(consultation, room.next_deadline());
            }
        }
        self.timers.prune(&self.conns);
    }
}

/// `t + d`, or a far-off instant if a huge configured duration would
/// overflow `Instant` (which would otherwise panic).
pub(crate) fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(t)
}

fn filtered_sdp(sdp: &Sdp, policy: CandidatePolicy, relays: &Relays) -> Result<Sdp, Refusal> {
    match policy {
        CandidatePolicy::All => Ok(sdp.clone()),
        CandidatePolicy::RelayOnly => Sdp::parse(filter_sdp(sdp.as_str(), policy, relays))
            .map_err(|_| (ErrorCode::InvalidFields, "the SDP is not usable")),
    }
}
