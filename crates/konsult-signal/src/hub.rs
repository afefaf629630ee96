//! The hub: every room of one node, driven by inputs, polled for outputs.

use crate::config::Config;
use crate::filter::{filter_candidate, filter_sdp};
use crate::output::{
    AdmissionCheckId, CloseReason, ConnId, EndReason, LeftReason, Output, RoomEvent,
};
use crate::ratelimit::RateLimiter;
use konsult_protocol::{
    parse_client_message, ByeReason, CandidateLine, CandidatePolicy, ClientMessage, Denied,
    DeniedReason, ErrorBody, ErrorCode, Hello, IceCandidate, IceServer, Resume, ResumeToken, Role,
    Sdp, ServerBody, ServerMessage, Stats, Welcome, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How many superseded resume tokens a participant remembers, so an old
/// device that comes back gets `replaced` instead of taking over again.
const SUPERSEDED_TOKENS: usize = 8;

/// What the pump knows about a connection after it authenticated the hello.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The consultation (from the link token or the therapist's hello).
    pub consultation: Uuid,
    /// Who is joining.
    pub role: Role,
    /// The clinic's or consultation's candidate policy. If either
    /// participant's join says `relay_only`, the room is relay-only for
    /// its lifetime (the stricter policy wins).
    pub candidate_policy: CandidatePolicy,
    /// ICE servers with this participant's TURN credentials.
    pub ice_servers: Vec<IceServer>,
    /// A fresh random token, used if this join starts a new device session
    /// (the core has no RNG). Unused when the join resumes.
    pub resume_token_for_new: ResumeToken,
    /// `hello.resume`, if the client sent one.
    pub resume: Option<Resume>,
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
}

#[derive(Debug)]
struct Conn {
    consultation: Uuid,
    role: Role,
    /// Last frame received (or, once closed, when the core closed it).
    last_seen: Instant,
    limiter: RateLimiter,
    errors: VecDeque<Instant>,
    /// Set when the core emitted `Output::Close`; the entry stays until the
    /// pump reports `handle_disconnect` (or a heartbeat period passes).
    closed: Option<CloseReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Waiting,
    Checking { check: u64, deadline: Instant },
    Admitted,
}

#[derive(Debug, Default)]
struct Media {
    therapist: bool,
    patient: bool,
    established: bool,
}

#[derive(Debug)]
struct Participant {
    link: Presence,
    resume_token: ResumeToken,
    superseded: VecDeque<ResumeToken>,
    next_seq: u64,
    /// The latest sequenced messages, oldest first, contiguous seqs ending at
    /// `next_seq - 1`.
    buffer: VecDeque<ServerMessage>,
    ice_servers: Vec<IceServer>,
}

impl Participant {
    fn conn(&self) -> Option<ConnId> {
        match self.link {
            Presence::Connected(conn) => Some(conn),
            Presence::Disconnected { .. } => None,
        }
    }

    fn grace_deadline(&self) -> Option<Instant> {
        match self.link {
            Presence::Connected(_) => None,
            Presence::Disconnected { grace_until } => Some(grace_until),
        }
    }

    fn can_replay(&self, last_seq: u64) -> bool {
        let oldest = self.buffer.front().map_or(self.next_seq, |m| m.seq);
        last_seq < self.next_seq && last_seq.saturating_add(1) >= oldest
    }

    fn is_superseded(&self, token: &ResumeToken) -> bool {
        self.superseded.iter().any(|t| t.ct_eq(token))
    }
}

#[derive(Debug)]
struct Room {
    id: Uuid,
    policy: CandidatePolicy,
    therapist: Option<Participant>,
    patient: Option<Participant>,
    admission: Admission,
    media: Media,
}

/// Everything a room operation needs besides the room.
struct Ctx<'a> {
    cfg: &'a Config,
    out: &'a mut VecDeque<Output>,
}

impl Ctx<'_> {
    fn send_conn(&mut self, conn: ConnId, body: ServerBody) {
        self.out.push_back(Output::Send {
            conn,
            message: ServerMessage::unsequenced(body),
        });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: &str, failures: Vec<String>) {
        self.send_conn(
            conn,
            ServerBody::Error(ErrorBody {
                code,
                message: message.to_string(),
                failures,
            }),
        );
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.out.push_back(Output::Close { conn, reason });
    }
}

impl Room {
    fn new(id: Uuid, policy: CandidatePolicy) -> Self {
        Room {
            id,
            policy,
            therapist: None,
            patient: None,
            admission: Admission::Waiting,
            media: Media::default(),
        }
    }

    fn slot(&mut self, role: Role) -> &mut Option<Participant> {
        match role {
            Role::Therapist => &mut self.therapist,
            Role::Patient => &mut self.patient,
        }
    }

    fn get(&self, role: Role) -> Option<&Participant> {
        match role {
            Role::Therapist => self.therapist.as_ref(),
            Role::Patient => self.patient.as_ref(),
        }
    }

    fn is_empty(&self) -> bool {
        self.therapist.is_none() && self.patient.is_none()
    }

    fn in_call(&self) -> bool {
        self.therapist.is_some() && self.patient.is_some() && self.admission == Admission::Admitted
    }

    fn event(&self, ctx: &mut Ctx<'_>, event: RoomEvent) {
        ctx.out.push_back(Output::Event {
            consultation: self.id,
            event,
        });
    }

    /// Sends a sequenced message to `role`'s participant: numbered, kept for
    /// replay, and written now if it is connected.
    fn send(&mut self, ctx: &mut Ctx<'_>, role: Role, body: ServerBody) {
        let cap = ctx.cfg.replay_buffer;
        let Some(p) = self.slot(role).as_mut() else {
            return;
        };
        let message = ServerMessage {
            body,
            seq: p.next_seq,
        };
        p.next_seq += 1;
        p.buffer.push_back(message.clone());
        while p.buffer.len() > cap {
            p.buffer.pop_front();
        }
        if let Some(conn) = p.conn() {
            ctx.out.push_back(Output::Send { conn, message });
        }
    }

    fn welcome(&self, ctx: &mut Ctx<'_>, role: Role, conn: ConnId, resumed: bool) {
        let Some(p) = self.get(role) else { return };
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            role,
            consultation: self.id,
            ice_servers: p.ice_servers.clone(),
            candidate_policy: self.policy,
            peer_present: self.get(role.other()).is_some(),
            polite: role == Role::Patient,
            resume_token: p.resume_token.clone(),
            resumed,
            limits: ctx.cfg.limits(),
        };
        ctx.send_conn(conn, ServerBody::Welcome(welcome));
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, req: JoinRequest) {
        let role = req.role;
        let Some(p) = self.slot(role).as_mut() else {
            self.join_new(ctx, conn, req);
            return;
        };
        if let Some(resume) = &req.resume {
            if p.is_superseded(&resume.token) {
                // An older device of this participant: the newer one keeps
                // its place. The client may still take over explicitly with
                // a hello without resume.
                ctx.error(
                    conn,
                    ErrorCode::Replaced,
                    "another device has taken over this session",
                    Vec::new(),
                );
                ctx.close(conn, CloseReason::Replaced);
                return;
            }
        }
        let resume_from = req
            .resume
            .as_ref()
            .filter(|r| p.resume_token.ct_eq(&r.token) && p.can_replay(r.last_seq))
            .map(|r| r.last_seq);
        if let Some(old) = p.conn() {
            ctx.send_conn(old, ServerBody::Replaced {});
            ctx.close(old, CloseReason::Replaced);
        }
        p.link = Presence::Connected(conn);
        p.ice_servers = req.ice_servers;
        match resume_from {
            Some(last_seq) => {
                self.welcome(ctx, role, conn, true);
                let p = self.get(role).expect("participant present");
                for message in p.buffer.iter().filter(|m| m.seq > last_seq) {
                    ctx.out.push_back(Output::Send {
                        conn,
                        message: message.clone(),
                    });
                }
            }
            None => {
                let old_token = std::mem::replace(&mut p.resume_token, req.resume_token_for_new);
                p.superseded.push_back(old_token);
                while p.superseded.len() > SUPERSEDED_TOKENS {
                    p.superseded.pop_front();
                }
                p.buffer.clear();
                self.welcome(ctx, role, conn, false);
                self.resync_new_device(ctx, role);
            }
        }
    }

    fn join_new(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, req: JoinRequest) {
        let role = req.role;
        *self.slot(role) = Some(Participant {
            link: Presence::Connected(conn),
            resume_token: req.resume_token_for_new,
            superseded: VecDeque::new(),
            next_seq: 1,
            buffer: VecDeque::new(),
            ice_servers: req.ice_servers,
        });
        self.welcome(ctx, role, conn, false);
        match role {
            Role::Patient => {
                self.admission = Admission::Waiting;
                self.media = Media::default();
                self.send(ctx, Role::Patient, ServerBody::Waiting {});
                self.send(ctx, Role::Therapist, ServerBody::PatientWaiting {});
                self.event(ctx, RoomEvent::PatientWaiting);
            }
            Role::Therapist => {
                if self.patient.is_some() {
                    // Without a therapist a patient is never admitted.
                    self.send(ctx, Role::Therapist, ServerBody::PatientWaiting {});
                }
            }
        }
    }

    /// A new device (no valid resume) took `role`'s place: bring it up to
    /// date from scratch.
    fn resync_new_device(&mut self, ctx: &mut Ctx<'_>, role: Role) {
        match role {
            Role::Patient => {
                let previous = self.admission;
                self.admission = Admission::Waiting;
                if previous == Admission::Admitted {
                    // Whoever holds the link now was not seen by the
                    // therapist: the call ends and the device waits again.
                    self.media = Media::default();
                    self.send(
                        ctx,
                        Role::Therapist,
                        ServerBody::PeerLeft {
                            role: Role::Patient,
                        },
                    );
                    self.event(
                        ctx,
                        RoomEvent::PeerLeft {
                            role: Role::Patient,
                            reason: LeftReason::Replaced,
                        },
                    );
                    self.event(
                        ctx,
                        RoomEvent::Ended {
                            reason: EndReason::PatientReplaced,
                        },
                    );
                }
                self.send(ctx, Role::Patient, ServerBody::Waiting {});
                if previous != Admission::Waiting {
                    self.send(ctx, Role::Therapist, ServerBody::PatientWaiting {});
                    self.event(ctx, RoomEvent::PatientWaiting);
                }
            }
            Role::Therapist => {
                if self.patient.is_none() {
                    return;
                }
                if self.admission == Admission::Admitted {
                    // The therapist is authenticated by login: the call goes
                    // on with the new device, after a fresh negotiation.
                    self.send(
                        ctx,
                        Role::Therapist,
                        ServerBody::PeerJoined {
                            role: Role::Patient,
                        },
                    );
                    self.send(
                        ctx,
                        Role::Patient,
                        ServerBody::PeerLeft {
                            role: Role::Therapist,
                        },
                    );
                    self.send(
                        ctx,
                        Role::Patient,
                        ServerBody::PeerJoined {
                            role: Role::Therapist,
                        },
                    );
                } else {
                    self.send(ctx, Role::Therapist, ServerBody::PatientWaiting {});
                }
            }
        }
    }

    /// The participant's connection ended; it may resume within the grace
    /// period. The peer is not told yet.
    fn detach(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, role: Role, now: Instant) {
        let grace = ctx.cfg.resume_grace;
        if let Some(p) = self.slot(role).as_mut() {
            if p.conn() == Some(conn) {
                p.link = Presence::Disconnected {
                    grace_until: after(now, grace),
                };
            }
        }
    }

    /// `role` sent `leave`.
    fn leave(&mut self, ctx: &mut Ctx<'_>, role: Role) {
        let was_in_call = self.in_call();
        self.send(
            ctx,
            role,
            ServerBody::Bye {
                reason: ByeReason::Left,
            },
        );
        if let Some(conn) = self.slot(role).take().and_then(|p| p.conn()) {
            ctx.close(conn, CloseReason::Bye);
        }
        self.event(
            ctx,
            RoomEvent::PeerLeft {
                role,
                reason: LeftReason::Left,
            },
        );
        match role {
            Role::Patient => {
                self.admission = Admission::Waiting;
                self.send(
                    ctx,
                    Role::Therapist,
                    ServerBody::PeerLeft {
                        role: Role::Patient,
                    },
                );
            }
            Role::Therapist => {
                if was_in_call {
                    // The therapist ended the consultation.
                    self.send(
                        ctx,
                        Role::Patient,
                        ServerBody::PeerLeft {
                            role: Role::Therapist,
                        },
                    );
                    self.send(
                        ctx,
                        Role::Patient,
                        ServerBody::Bye {
                            reason: ByeReason::EndedByTherapist,
                        },
                    );
                    if let Some(conn) = self.patient.take().and_then(|p| p.conn()) {
                        ctx.close(conn, CloseReason::Bye);
                    }
                }
                // A waiting patient keeps waiting for a therapist.
                self.admission = Admission::Waiting;
            }
        }
        if was_in_call {
            self.event(
                ctx,
                RoomEvent::Ended {
                    reason: EndReason::Left { role },
                },
            );
        }
    }

    /// `role`'s grace period expired without a resume.
    fn expire(&mut self, ctx: &mut Ctx<'_>, role: Role) {
        let was_in_call = self.in_call();
        *self.slot(role) = None;
        self.event(
            ctx,
            RoomEvent::PeerLeft {
                role,
                reason: LeftReason::GraceExpired,
            },
        );
        match role {
            Role::Patient => {
                self.admission = Admission::Waiting;
                self.send(
                    ctx,
                    Role::Therapist,
                    ServerBody::PeerLeft {
                        role: Role::Patient,
                    },
                );
            }
            Role::Therapist => {
                self.admission = Admission::Waiting;
                if was_in_call {
                    // The patient goes back to the waiting room until a
                    // therapist admits again.
                    self.send(
                        ctx,
                        Role::Patient,
                        ServerBody::PeerLeft {
                            role: Role::Therapist,
                        },
                    );
                    self.send(ctx, Role::Patient, ServerBody::Waiting {});
                }
            }
        }
        if was_in_call {
            self.media = Media::default();
            self.event(
                ctx,
                RoomEvent::Ended {
                    reason: EndReason::GraceExpired { role },
                },
            );
            if role == Role::Therapist {
                self.event(ctx, RoomEvent::PatientWaiting);
            }
        }
    }

    fn deny_patient(&mut self, ctx: &mut Ctx<'_>, denied: Denied) {
        self.admission = Admission::Waiting;
        self.event(
            ctx,
            RoomEvent::Denied {
                reason: denied.reason,
                failures: denied.failures.clone(),
            },
        );
        self.send(ctx, Role::Patient, ServerBody::Denied(denied));
        if let Some(conn) = self.patient.take().and_then(|p| p.conn()) {
            ctx.close(conn, CloseReason::Denied);
        }
        self.send(
            ctx,
            Role::Therapist,
            ServerBody::PeerLeft {
                role: Role::Patient,
            },
        );
    }

    fn admit(&mut self, ctx: &mut Ctx<'_>) {
        self.admission = Admission::Admitted;
        self.media = Media::default();
        self.send(ctx, Role::Patient, ServerBody::Admitted {});
        self.send(
            ctx,
            Role::Patient,
            ServerBody::PeerJoined {
                role: Role::Therapist,
            },
        );
        self.send(
            ctx,
            Role::Therapist,
            ServerBody::PeerJoined {
                role: Role::Patient,
            },
        );
        self.event(ctx, RoomEvent::Admitted);
    }

    fn on_stats(&mut self, ctx: &mut Ctx<'_>, role: Role, stats: &Stats) {
        if !stats.media_flowing() {
            return;
        }
        match role {
            Role::Therapist => self.media.therapist = true,
            Role::Patient => self.media.patient = true,
        }
        if self.media.therapist && self.media.patient && !self.media.established {
            self.media.established = true;
            self.send(ctx, Role::Therapist, ServerBody::MediaEstablished {});
            self.send(ctx, Role::Patient, ServerBody::MediaEstablished {});
            self.event(ctx, RoomEvent::TwoWayEstablished);
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        for role in [Role::Therapist, Role::Patient] {
            let expired = self
                .get(role)
                .and_then(|p| p.grace_deadline())
                .is_some_and(|d| d <= now);
            if expired {
                self.expire(ctx, role);
            }
        }
        if let Admission::Checking { deadline, .. } = self.admission {
            if deadline <= now {
                self.admission = Admission::Waiting;
                if let Some(conn) = self.therapist.as_ref().and_then(|p| p.conn()) {
                    ctx.error(
                        conn,
                        ErrorCode::AdmissionCheckFailed,
                        "the eligibility check did not complete; try admitting again",
                        Vec::new(),
                    );
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let graces = [&self.therapist, &self.patient]
            .into_iter()
            .filter_map(|p| p.as_ref().and_then(|p| p.grace_deadline()));
        let check = match self.admission {
            Admission::Checking { deadline, .. } => Some(deadline),
            _ => None,
        };
        graces.chain(check).min()
    }

    fn snapshot(&self) -> RoomSnapshot {
        RoomSnapshot {
            candidate_policy: self.policy,
            therapist: self.therapist.as_ref().map(|p| p.link),
            patient: self.patient.as_ref().map(|p| p.link),
            admission: match self.admission {
                Admission::Waiting => AdmissionState::Waiting,
                Admission::Checking { .. } => AdmissionState::Checking,
                Admission::Admitted => AdmissionState::Admitted,
            },
            two_way_established: self.media.established,
        }
    }
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
/// # Calling order
///
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
/// 5. When the instant from [`Hub::poll_timeout`] is reached, call
///    [`Hub::handle_timeout`].
/// 6. After **every** `handle_*` call, drain [`Hub::poll_output`] until
///    `None`, writing `Send`s to their connections in order, closing on
///    `Close`, recording `Event`s, starting `AdmissionCheck`s; then re-read
///    [`Hub::poll_timeout`].
///
/// # Example: a pump
///
/// A synchronous sketch of the loop the server runs in one task (the real
/// pump reads the socket and the timer with `tokio::select!`):
///
/// ```
/// use konsult_protocol::{CandidatePolicy, ResumeToken, Role};
/// use konsult_signal::{ConnId, Config, Hub, JoinRequest, Output};
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
///     role: Role::Patient,
///     candidate_policy: CandidatePolicy::RelayOnly,
///     ice_servers: vec![],
///     resume_token_for_new: ResumeToken::parse("fresh-random-token-1".into()).unwrap(),
///     resume: hello.resume,
/// })?;
///
/// // 3. Later frames.
/// hub.handle_text(now, ConnId(1), r#"{"type":"ping"}"#);
///
/// // 6. Drain outputs after every call.
/// let mut sent = Vec::new();
/// while let Some(output) = hub.poll_output() {
///     match output {
///         Output::Send { conn, message } => sent.push((conn, message.to_json())),
///         Output::Close { conn, reason } => { /* close `conn` with reason.code() */ }
///         Output::Event { consultation, event } => { /* record, log ids only */ }
///         Output::AdmissionCheck { consultation, check } => {
///             /* query the database, then hub.handle_admission_check(..) */
///         }
///     }
/// }
/// assert!(sent[0].1.contains(r#""type":"welcome""#));
/// assert!(sent[1].1.contains(r#""type":"waiting""#));
/// assert!(sent[2].1.contains(r#""type":"pong""#));
///
/// // 5. Timers: sleep until poll_timeout(), then handle_timeout(now).
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
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
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
        self.conns.insert(
            conn,
            Conn {
                consultation: req.consultation,
                role: req.role,
                last_seen: now,
                limiter: RateLimiter::new(now, self.config.rate_per_second, self.config.rate_burst),
                errors: VecDeque::new(),
                closed: None,
            },
        );
        let start = self.out.len();
        let room = self
            .rooms
            .entry(req.consultation)
            .or_insert_with(|| Room::new(req.consultation, req.candidate_policy));
        if req.candidate_policy == CandidatePolicy::RelayOnly {
            room.policy = CandidatePolicy::RelayOnly;
        }
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
            match parse_client_message(text) {
                Err(e) => Some((e.code(), e.to_string())),
                Ok(msg) => self
                    .dispatch(now, conn, msg)
                    .err()
                    .map(|(code, m)| (code, m.to_string())),
            }
        };
        if let Some((code, message)) = refusal {
            self.refuse(now, conn, code, &message);
        }
        self.after(start, now);
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
            let mut ctx = Ctx {
                cfg: &self.config,
                out: &mut self.out,
            };
            room.detach(&mut ctx, conn, c.role, now);
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
        match room.admission {
            Admission::Checking { check: pending, .. } if pending == check.0 => {}
            _ => return,
        }
        let start = self.out.len();
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        match result {
            Ok(()) => room.admit(&mut ctx),
            Err(failures) => {
                if let Some(conn) = room.therapist.as_ref().and_then(|p| p.conn()) {
                    ctx.error(
                        conn,
                        ErrorCode::NotEligible,
                        "the patient is not eligible for a video consultation now",
                        failures.clone(),
                    );
                }
                room.deny_patient(
                    &mut ctx,
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

    /// Time has reached `now`: close silent connections (heartbeat), expire
    /// grace periods, give up on overdue admission checks. Calling it early
    /// or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let start = self.out.len();
        let timeout = self.config.heartbeat_timeout;
        let silent: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closed.is_none() && after(c.last_seen, timeout) <= now)
            .map(|(id, _)| *id)
            .collect();
        for conn in silent {
            self.drop_conn(now, conn, CloseReason::HeartbeatTimeout);
        }
        // Forget connections the core closed whose disconnect never came.
        self.conns
            .retain(|_, c| c.closed.is_none() || after(c.last_seen, timeout) > now);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        for room in self.rooms.values_mut() {
            room.on_timeout(&mut ctx, now);
        }
        self.after(start, now);
    }

    /// The next thing the pump must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Hub::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.heartbeat_timeout;
        let conns = self.conns.values().map(|c| after(c.last_seen, timeout));
        let rooms = self.rooms.values().filter_map(Room::next_deadline);
        conns.chain(rooms).min()
    }

    /// A view of one consultation's room, if it exists.
    pub fn room(&self, consultation: Uuid) -> Option<RoomSnapshot> {
        self.rooms.get(&consultation).map(Room::snapshot)
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
    fn dispatch(&mut self, now: Instant, conn: ConnId, msg: ClientMessage) -> Result<(), Refusal> {
        let (consultation, role) = {
            let c = &self.conns[&conn];
            (c.consultation, c.role)
        };
        let Some(room) = self.rooms.get_mut(&consultation) else {
            return Err((ErrorCode::Internal, "no such consultation"));
        };
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        let peer = role.other();
        match msg {
            ClientMessage::Hello(_) => Err((ErrorCode::WrongState, "already joined")),
            ClientMessage::Ping {} => {
                ctx.send_conn(conn, ServerBody::Pong {});
                Ok(())
            }
            ClientMessage::Leave {} => {
                room.leave(&mut ctx, role);
                Ok(())
            }
            ClientMessage::Admit {} => {
                if role != Role::Therapist {
                    return Err((ErrorCode::Forbidden, "only the therapist can admit"));
                }
                if room.patient.is_none() || room.admission != Admission::Waiting {
                    return Err((ErrorCode::WrongState, "no patient is waiting"));
                }
                let check = self.next_check;
                self.next_check += 1;
                room.admission = Admission::Checking {
                    check,
                    deadline: after(now, self.config.admission_check_timeout),
                };
                ctx.out.push_back(Output::AdmissionCheck {
                    consultation,
                    check: AdmissionCheckId(check),
                });
                Ok(())
            }
            ClientMessage::Deny { reason } => {
                if role != Role::Therapist {
                    return Err((ErrorCode::Forbidden, "only the therapist can deny"));
                }
                if room.patient.is_none() || room.admission == Admission::Admitted {
                    return Err((ErrorCode::WrongState, "no patient is waiting"));
                }
                room.deny_patient(
                    &mut ctx,
                    Denied {
                        reason: DeniedReason::ByTherapist,
                        note: reason,
                        failures: Vec::new(),
                    },
                );
                Ok(())
            }
            in_call => {
                if !room.in_call() {
                    return Err((ErrorCode::WrongState, "not in a call"));
                }
                let policy = room.policy;
                let body = match in_call {
                    ClientMessage::Offer { sdp } => ServerBody::Offer {
                        sdp: filtered_sdp(&sdp, policy)?,
                    },
                    ClientMessage::Answer { sdp } => ServerBody::Answer {
                        sdp: filtered_sdp(&sdp, policy)?,
                    },
                    ClientMessage::Candidate(c) => {
                        let Some(kept) = filter_candidate(c.candidate.as_str(), policy) else {
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
                    ClientMessage::Stats(stats) => {
                        room.on_stats(&mut ctx, role, &stats);
                        return Ok(());
                    }
                    ClientMessage::Hello(_)
                    | ClientMessage::Ping {}
                    | ClientMessage::Leave {}
                    | ClientMessage::Admit {}
                    | ClientMessage::Deny { .. } => unreachable!("handled above"),
                };
                room.send(&mut ctx, peer, body);
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
        let (consultation, role) = (c.consultation, c.role);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        ctx.close(conn, reason);
        if let Some(room) = self.rooms.get_mut(&consultation) {
            room.detach(&mut ctx, conn, role, now);
        }
    }

    /// Bookkeeping after every input: mark connections the core closed in
    /// this step, and drop rooms nobody is in.
    fn after(&mut self, start: usize, now: Instant) {
        for output in self.out.iter().skip(start) {
            if let Output::Close { conn, reason } = output {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.closed = Some(*reason);
                    c.last_seen = now;
                }
            }
        }
        self.rooms.retain(|_, room| !room.is_empty());
    }
}

/// `t + d`, or a far-off instant if a huge configured duration would
/// overflow `Instant` (which would otherwise panic).
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(t)
}

fn filtered_sdp(sdp: &Sdp, policy: CandidatePolicy) -> Result<Sdp, Refusal> {
    match policy {
        CandidatePolicy::All => Ok(sdp.clone()),
        CandidatePolicy::RelayOnly => Sdp::parse(filter_sdp(sdp.as_str(), policy))
            .map_err(|_| (ErrorCode::InvalidFields, "the SDP is not usable")),
    }
}
