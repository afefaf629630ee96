//! The hub: every room of one node, driven by inputs, polled for outputs.

use crate::config::Config;
use crate::filter::{filter_candidate, filter_sdp, Relays};
use crate::output::{AdmissionCheckId, CloseReason, ConnId, Output, RoomContext, WriteId};
use crate::ratelimit::RateLimiter;
use crate::record::{
    LinkRef, ParticipantRecord, RecordError, RoomRecord, TokenHash, RECORD_VERSION,
};
use konsult_domain::evidence::{
    client_two_way, relay_two_way, ClientReport, ClientReports, ObservedFlow,
};
use konsult_domain::{CallEvent, EndReason, Evidence, EvidencePolicy};
use konsult_protocol::{
    parse_client_message, ByeReason, CandidateLine, CandidatePolicy, ClientMessage, Denied,
    DeniedReason, ErrorBody, ErrorCode, Features, Hello, IceCandidate, IceServer, Resume,
    ResumeToken, Role, Sdp, ServerBody, ServerMessage, Stats, Welcome, PROTOCOL_VERSION,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How many superseded resume tokens a participant remembers, so an old
/// device that comes back gets `replaced` instead of taking over again.
const SUPERSEDED_TOKENS: usize = 8;

/// What the pump knows about a connection after it authenticated the hello.
/// Serialisable: in a cluster, the node the connection reached sends it to
/// the node that owns the room.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    /// The consultation (from the link token or the therapist's hello).
    pub consultation: Uuid,
    /// Who is joining.
    pub role: Role,
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
    /// The optional messages its hello asked for.
    features: Features,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Waiting,
    Checking { check: u64, deadline: Instant },
    Admitted,
}

/// Two-way media of the current call (one admission).
#[derive(Debug, Default)]
struct Media {
    /// When the patient was admitted: the origin of report times.
    since: Option<Instant>,
    patient: ClientReports,
    therapist: ClientReports,
    /// Established in this call, by this evidence.
    evidence: Option<Evidence>,
}

#[derive(Debug)]
struct Participant {
    link: Presence,
    token: TokenHash,
    superseded: VecDeque<TokenHash>,
    next_seq: u64,
    /// The highest `seq` clients may see: sent, or replayable on resume.
    /// Messages above it wait for the room's durable writes.
    released: u64,
    /// The latest sequenced messages, oldest first, contiguous seqs ending
    /// at `next_seq - 1`.
    buffer: VecDeque<ServerMessage>,
    /// The patient's join link.
    link_ref: Option<LinkRef>,
    /// Restored from a saved record: the client may have seen messages
    /// above `next_seq` that this process never knew (see `resume`).
    restored: bool,
    /// The pump's context of this participant's latest join (or of the
    /// restore).
    context: RoomContext,
}

impl Participant {
    fn new(conn: ConnId, token: TokenHash, req: &JoinRequest) -> Self {
        Participant {
            link: Presence::Connected(conn),
            token,
            superseded: VecDeque::new(),
            next_seq: 1,
            released: 0,
            buffer: VecDeque::new(),
            link_ref: req.link.clone(),
            restored: false,
            context: req.context.clone(),
        }
    }

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

    /// Whether every message after `last_seq` that the client may see is
    /// still in the buffer.
    fn can_replay(&self, last_seq: u64) -> bool {
        let oldest = self.buffer.front().map_or(self.next_seq, |m| m.seq);
        last_seq <= self.released && last_seq.saturating_add(1) >= oldest
    }

    fn is_superseded(&self, token: &TokenHash) -> bool {
        self.superseded.iter().any(|t| t.ct_eq(token))
    }

    fn replace_token(&mut self, token: TokenHash) {
        let old = std::mem::replace(&mut self.token, token);
        self.superseded.push_back(old);
        while self.superseded.len() > SUPERSEDED_TOKENS {
            self.superseded.pop_front();
        }
    }

    /// Messages not yet released, for a connection that is going away.
    fn unreleased(&self) -> Vec<ServerMessage> {
        self.buffer
            .iter()
            .filter(|m| m.seq > self.released)
            .cloned()
            .collect()
    }

    fn record(&self, role: Role) -> ParticipantRecord {
        ParticipantRecord {
            role,
            token: self.token,
            superseded: self.superseded.iter().copied().collect(),
            next_seq: self.next_seq,
            link: self.link_ref.clone(),
        }
    }
}

/// A connection whose participant left the room while its last messages
/// were held back: they and the close go out when the room is released.
#[derive(Debug)]
struct Departing {
    conn: ConnId,
    messages: Vec<ServerMessage>,
    reason: CloseReason,
}

#[derive(Debug)]
struct Room {
    id: Uuid,
    policy: CandidatePolicy,
    evidence_policy: EvidencePolicy,
    therapist: Option<Participant>,
    patient: Option<Participant>,
    admission: Admission,
    media: Media,
    /// A patient was admitted at least once: the consultation is `in_call`.
    call_started: bool,
    /// The consultation is over (ended or closed): nobody joins any more.
    over: bool,
    /// Durable writes not yet acknowledged; while any is, messages wait.
    held: BTreeSet<WriteId>,
    departing: Vec<Departing>,
    /// Events of the current step, for the step's write.
    pending: Vec<CallEvent>,
    /// The current step has a durable event.
    hold_step: bool,
    /// The current step changed what the saved record says.
    dirty: bool,
    /// The pump's context of the latest join that took a place here (or of
    /// the restore).
    context: RoomContext,
    /// The relays the room's relay candidates may carry: the configured
    /// ones and those handed to its participants in their welcomes (in a
    /// cluster, each participant's own node's relay).
    relays: Relays,
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
    fn new(id: Uuid, policy: CandidatePolicy, evidence_policy: EvidencePolicy) -> Self {
        Room {
            id,
            policy,
            evidence_policy,
            therapist: None,
            patient: None,
            admission: Admission::Waiting,
            media: Media::default(),
            call_started: false,
            over: false,
            held: BTreeSet::new(),
            departing: Vec::new(),
            pending: Vec::new(),
            hold_step: false,
            dirty: false,
            context: RoomContext::default(),
            relays: Relays::default(),
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

    /// Nothing left to do: nobody in it, no message waiting for a write.
    fn is_done(&self) -> bool {
        self.is_empty() && self.held.is_empty() && self.departing.is_empty()
    }

    fn in_call(&self) -> bool {
        self.therapist.is_some() && self.patient.is_some() && self.admission == Admission::Admitted
    }

    fn is_held(&self) -> bool {
        !self.held.is_empty() || self.hold_step
    }

    /// Reports an event. A durable one holds the room's messages back from
    /// now until its write is committed, so report it before the messages
    /// it causes.
    fn event(&mut self, event: CallEvent) {
        if event.is_durable() {
            self.hold_step = true;
        }
        self.dirty = true;
        self.pending.push(event);
    }

    /// Sends a sequenced message to `role`'s participant: numbered, kept for
    /// replay, and written now if it is connected and nothing holds the
    /// room back.
    fn send(&mut self, ctx: &mut Ctx<'_>, role: Role, body: ServerBody) {
        let cap = ctx.cfg.replay_buffer;
        let held = self.is_held();
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
        if held {
            return;
        }
        p.released = message.seq;
        if let Some(conn) = p.conn() {
            ctx.out.push_back(Output::Send { conn, message });
        }
    }

    /// Takes `role` out of the room; its connection, if any, is closed
    /// after its last messages (now, or when the room is released).
    fn remove(&mut self, ctx: &mut Ctx<'_>, role: Role, reason: CloseReason) {
        let held = self.is_held();
        let Some(p) = self.slot(role).take() else {
            return;
        };
        self.dirty = true;
        let Some(conn) = p.conn() else { return };
        if held {
            self.departing.push(Departing {
                conn,
                messages: p.unreleased(),
                reason,
            });
        } else {
            ctx.close(conn, reason);
        }
    }

    /// Every write the room waited for is committed: out with what waited.
    fn release(&mut self, ctx: &mut Ctx<'_>) {
        for p in [&mut self.therapist, &mut self.patient]
            .into_iter()
            .flatten()
        {
            let conn = p.conn();
            for message in p.buffer.iter().filter(|m| m.seq > p.released) {
                if let Some(conn) = conn {
                    ctx.out.push_back(Output::Send {
                        conn,
                        message: message.clone(),
                    });
                }
            }
            p.released = p.next_seq - 1;
        }
        for d in std::mem::take(&mut self.departing) {
            for message in d.messages {
                ctx.out.push_back(Output::Send {
                    conn: d.conn,
                    message,
                });
            }
            ctx.close(d.conn, d.reason);
        }
    }

    fn welcome(
        &self,
        ctx: &mut Ctx<'_>,
        role: Role,
        conn: ConnId,
        token: ResumeToken,
        resumed: bool,
        ice_servers: Vec<IceServer>,
    ) {
        let welcome = Welcome {
            version: PROTOCOL_VERSION,
            role,
            consultation: self.id,
            ice_servers,
            candidate_policy: self.policy,
            peer_present: self.get(role.other()).is_some(),
            polite: role == Role::Patient,
            resume_token: token,
            resumed,
            limits: ctx.cfg.limits(),
        };
        ctx.send_conn(conn, ServerBody::Welcome(welcome));
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, mut req: JoinRequest) {
        let role = req.role;
        self.call_started |= req.call_started;
        if self.over {
            let (code, message) = match role {
                Role::Patient => (ErrorCode::LinkExpired, "the consultation is over"),
                Role::Therapist => (ErrorCode::WrongState, "the consultation is over"),
            };
            ctx.error(conn, code, message, Vec::new());
            ctx.close(conn, CloseReason::Rejected);
            return;
        }
        self.relays.extend(ctx.cfg.relays.iter().copied());
        self.relays.extend(Relays::in_ice_servers(&req.ice_servers));
        let Some(p) = self.slot(role).as_mut() else {
            self.join_new(ctx, conn, req);
            return;
        };
        let presented = req.resume.as_ref().map(|r| (TokenHash::of(&r.token), r));
        if let Some((hash, _)) = &presented {
            if p.is_superseded(hash) {
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
        let own = presented.filter(|(hash, _)| p.token.ct_eq(hash));
        if let Some(old) = p.conn() {
            ctx.send_conn(old, ServerBody::Replaced {});
            ctx.close(old, CloseReason::Replaced);
        }
        p.link = Presence::Connected(conn);
        p.context = req.context.clone();
        // Fresh credentials for this connection, in its welcome only.
        let ice_servers = std::mem::take(&mut req.ice_servers);
        match own {
            Some((_, resume)) if p.restored => {
                // Back after a restart: nothing to replay (messages are not
                // saved), but every message a committed event produced has
                // a seq below `next_seq`.
                let token = resume.token.clone();
                if resume.last_seq.saturating_add(1) >= p.next_seq {
                    p.restored = false;
                    p.next_seq = p.next_seq.max(resume.last_seq.saturating_add(1));
                    p.released = p.next_seq - 1;
                    p.buffer.clear();
                    self.welcome(ctx, role, conn, token, true, ice_servers);
                } else {
                    p.restored = false;
                    p.buffer.clear();
                    p.released = p.next_seq - 1;
                    self.welcome(ctx, role, conn, token, false, ice_servers);
                    self.resync_after_gap(ctx, role);
                }
            }
            Some((_, resume)) if p.can_replay(resume.last_seq) => {
                let token = resume.token.clone();
                let last_seq = resume.last_seq;
                self.welcome(ctx, role, conn, token, true, ice_servers);
                let p = self.get(role).expect("participant present");
                for message in p
                    .buffer
                    .iter()
                    .filter(|m| m.seq > last_seq && m.seq <= p.released)
                {
                    ctx.out.push_back(Output::Send {
                        conn,
                        message: message.clone(),
                    });
                }
            }
            _ => {
                let token = req.resume_token_for_new;
                p.replace_token(TokenHash::of(&token));
                p.restored = false;
                p.link_ref = req.link.clone();
                // A new device starts from scratch: nothing of the old
                // device's stream reaches it, not even what is still held.
                p.buffer.clear();
                p.released = p.next_seq - 1;
                self.dirty = true;
                self.welcome(ctx, role, conn, token, false, ice_servers);
                self.resync_new_device(ctx, role);
            }
        }
        self.context = req.context;
    }

    fn join_new(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, req: JoinRequest) {
        let role = req.role;
        let token = req.resume_token_for_new.clone();
        *self.slot(role) = Some(Participant::new(conn, TokenHash::of(&token), &req));
        self.context = req.context.clone();
        self.dirty = true;
        self.welcome(ctx, role, conn, token, false, req.ice_servers);
        match role {
            Role::Patient => {
                self.admission = Admission::Waiting;
                self.media = Media::default();
                self.event(CallEvent::PatientWaiting);
                self.send(ctx, Role::Patient, ServerBody::Waiting {});
                self.send(ctx, Role::Therapist, ServerBody::PatientWaiting {});
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
                    // therapist: the patient's call ends (the consultation
                    // goes on) and the device waits again.
                    self.media = Media::default();
                    self.event(CallEvent::PatientLeft);
                    self.send(
                        ctx,
                        Role::Therapist,
                        ServerBody::PeerLeft {
                            role: Role::Patient,
                        },
                    );
                }
                self.send(ctx, Role::Patient, ServerBody::Waiting {});
                if previous != Admission::Waiting {
                    self.event(CallEvent::PatientWaiting);
                    self.send(ctx, Role::Therapist, ServerBody::PatientWaiting {});
                }
            }
            Role::Therapist => {
                if self.patient.is_none() {
                    return;
                }
                if self.admission == Admission::Admitted {
                    // The therapist is authenticated by login: the call goes
                    // on with the new device, after a fresh negotiation.
                    self.renegotiate(ctx);
                } else {
                    self.send(ctx, Role::Therapist, ServerBody::PatientWaiting {});
                }
            }
        }
    }

    /// Both sides start a new peer connection in the same call.
    fn renegotiate(&mut self, ctx: &mut Ctx<'_>) {
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
    }

    /// A participant came back after a restart but missed messages that
    /// cannot be replayed: it starts fresh on its side, keeping its place
    /// (a patient stays admitted), and both sides negotiate anew.
    fn resync_after_gap(&mut self, ctx: &mut Ctx<'_>, role: Role) {
        match (role, self.admission) {
            (Role::Patient, Admission::Admitted) => self.announce_admission(ctx),
            (Role::Patient, _) => {
                self.send(ctx, Role::Patient, ServerBody::Waiting {});
            }
            (Role::Therapist, Admission::Admitted) if self.patient.is_some() => {
                self.renegotiate(ctx);
            }
            (Role::Therapist, _) => {
                if self.patient.is_some() {
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
        match role {
            Role::Patient => {
                let was_admitted = self.admission == Admission::Admitted;
                self.event(if was_admitted {
                    CallEvent::PatientLeft
                } else {
                    CallEvent::PatientLeftWaiting
                });
                self.send(
                    ctx,
                    Role::Patient,
                    ServerBody::Bye {
                        reason: ByeReason::Left,
                    },
                );
                self.remove(ctx, Role::Patient, CloseReason::Bye);
                self.admission = Admission::Waiting;
                self.media = Media::default();
                // The consultation goes on: the patient may come back from
                // the same link until the therapist ends it.
                self.send(
                    ctx,
                    Role::Therapist,
                    ServerBody::PeerLeft {
                        role: Role::Patient,
                    },
                );
            }
            Role::Therapist if self.call_started => self.end(ctx, EndReason::TherapistEnded),
            Role::Therapist => {
                // No call yet: a waiting patient keeps waiting for a
                // therapist.
                self.send(
                    ctx,
                    Role::Therapist,
                    ServerBody::Bye {
                        reason: ByeReason::Left,
                    },
                );
                self.remove(ctx, Role::Therapist, CloseReason::Bye);
                if self.admission != Admission::Waiting {
                    self.admission = Admission::Waiting;
                }
            }
        }
    }

    /// The consultation's call ends for good: committed first, then every
    /// participant is told and closed.
    fn end(&mut self, ctx: &mut Ctx<'_>, reason: EndReason) {
        self.event(CallEvent::Ended { reason });
        self.over = true;
        self.close_everyone(ctx);
    }

    /// Tells everyone the consultation is over (`bye`) and closes them.
    fn close_everyone(&mut self, ctx: &mut Ctx<'_>) {
        if self.in_call() {
            self.send(
                ctx,
                Role::Patient,
                ServerBody::PeerLeft {
                    role: Role::Therapist,
                },
            );
        }
        for role in [Role::Therapist, Role::Patient] {
            let reason = match role {
                Role::Therapist => ByeReason::Left,
                Role::Patient => ByeReason::EndedByTherapist,
            };
            self.send(ctx, role, ServerBody::Bye { reason });
            self.remove(ctx, role, CloseReason::Bye);
        }
        self.admission = Admission::Waiting;
        self.media = Media::default();
    }

    /// `role`'s grace period expired without a resume.
    fn expire(&mut self, ctx: &mut Ctx<'_>, role: Role) {
        let was_in_call = self.in_call();
        match role {
            Role::Patient => {
                self.event(if self.admission == Admission::Admitted {
                    CallEvent::PatientLeft
                } else {
                    CallEvent::PatientLeftWaiting
                });
                self.remove(ctx, Role::Patient, CloseReason::Bye);
                self.admission = Admission::Waiting;
                self.media = Media::default();
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
                    self.event(CallEvent::TherapistLeft);
                }
                self.remove(ctx, Role::Therapist, CloseReason::Bye);
                if was_in_call {
                    // The patient goes back to the waiting room until a
                    // therapist admits again.
                    self.admission = Admission::Waiting;
                    self.media = Media::default();
                    self.send(
                        ctx,
                        Role::Patient,
                        ServerBody::PeerLeft {
                            role: Role::Therapist,
                        },
                    );
                    self.send(ctx, Role::Patient, ServerBody::Waiting {});
                    self.event(CallEvent::PatientWaiting);
                } else if matches!(self.admission, Admission::Checking { .. }) {
                    self.admission = Admission::Waiting;
                }
            }
        }
    }

    fn deny_patient(&mut self, ctx: &mut Ctx<'_>, denied: Denied) {
        let was_admitted = self.admission == Admission::Admitted;
        self.event(if was_admitted {
            CallEvent::PatientLeft
        } else {
            CallEvent::PatientLeftWaiting
        });
        self.admission = Admission::Waiting;
        self.media = Media::default();
        self.send(ctx, Role::Patient, ServerBody::Denied(denied));
        self.remove(ctx, Role::Patient, CloseReason::Denied);
        self.send(
            ctx,
            Role::Therapist,
            ServerBody::PeerLeft {
                role: Role::Patient,
            },
        );
    }

    fn admit(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        self.event(CallEvent::Admitted);
        self.call_started = true;
        self.admission = Admission::Admitted;
        self.media = Media {
            since: Some(now),
            ..Media::default()
        };
        self.announce_admission(ctx);
    }

    /// The patient is in the call: `admitted`, then both sides
    /// `peer_joined` (they set up a new peer connection).
    fn announce_admission(&mut self, ctx: &mut Ctx<'_>) {
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
    }

    fn on_stats(&mut self, ctx: &mut Ctx<'_>, role: Role, stats: &Stats, now: Instant) {
        let since = *self.media.since.get_or_insert(now);
        let report = ClientReport {
            at: now.saturating_duration_since(since),
            receiving: stats.media_flowing(),
            bytes_received: stats.bytes_received,
            bytes_sent: stats.bytes_sent,
        };
        match role {
            Role::Therapist => self.media.therapist.add(report),
            Role::Patient => self.media.patient.add(report),
        }
        if self.media.evidence.is_none()
            && self.evidence_policy.accepts(Evidence::ClientReported)
            && client_two_way(
                &ctx.cfg.evidence,
                &self.media.patient,
                &self.media.therapist,
            )
        {
            self.establish(ctx, Evidence::ClientReported);
        }
    }

    fn on_relay_media(
        &mut self,
        ctx: &mut Ctx<'_>,
        patient_to_therapist: &ObservedFlow,
        therapist_to_patient: &ObservedFlow,
    ) {
        if !self.in_call() || self.media.evidence == Some(Evidence::RelayObserved) {
            return;
        }
        if relay_two_way(
            &ctx.cfg.evidence,
            patient_to_therapist,
            therapist_to_patient,
        ) {
            self.establish(ctx, Evidence::RelayObserved);
        }
    }

    /// Two-way media in this call, by `evidence`: committed first, then both
    /// sides hear `media_established` (once per call; stronger evidence
    /// later is only recorded).
    fn establish(&mut self, ctx: &mut Ctx<'_>, evidence: Evidence) {
        let first = self.media.evidence.is_none();
        self.media.evidence = Some(evidence);
        self.event(CallEvent::TwoWayEstablished { evidence });
        if first {
            self.send(ctx, Role::Therapist, ServerBody::MediaEstablished {});
            self.send(ctx, Role::Patient, ServerBody::MediaEstablished {});
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
            two_way_established: self.media.evidence.is_some(),
            evidence: self.media.evidence,
            call_started: self.call_started,
            pending_writes: self.held.len(),
        }
    }

    fn record(&self) -> RoomRecord {
        let participants = [
            (Role::Therapist, &self.therapist),
            (Role::Patient, &self.patient),
        ]
        .into_iter()
        .filter_map(|(role, p)| p.as_ref().map(|p| p.record(role)))
        .collect();
        RoomRecord {
            version: RECORD_VERSION,
            candidate_policy: self.policy,
            evidence_policy: self.evidence_policy,
            call_started: self.call_started,
            admitted: self.admission == Admission::Admitted,
            evidence: self.media.evidence,
            participants,
        }
    }

    fn restore(
        id: Uuid,
        record: &RoomRecord,
        context: RoomContext,
        grace_until: Instant,
        replay_buffer: usize,
    ) -> Room {
        let mut room = Room::new(id, record.candidate_policy, record.evidence_policy);
        room.call_started = record.call_started;
        let both = record
            .participants
            .iter()
            .any(|p| p.role == Role::Therapist)
            && record.participants.iter().any(|p| p.role == Role::Patient);
        if record.admitted && both {
            room.admission = Admission::Admitted;
            room.media.evidence = record.evidence;
        }
        for p in &record.participants {
            let next_seq = p.next_seq.max(1);
            *room.slot(p.role) = Some(Participant {
                link: Presence::Disconnected { grace_until },
                token: p.token,
                superseded: p.superseded.iter().copied().collect(),
                next_seq,
                released: next_seq - 1,
                buffer: VecDeque::with_capacity(replay_buffer.min(16)),
                link_ref: p.link.clone(),
                restored: true,
                context: context.clone(),
            });
        }
        room.context = context;
        room
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
///     role: Role::Patient,
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
///         Output::AdmissionCheck { consultation, check, context } => {
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
        if record.version != RECORD_VERSION {
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
                role: req.role,
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
        self.touched.insert(consultation);
        let start = self.out.len();
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        match result {
            Ok(()) => room.admit(&mut ctx, now),
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
                for p in [&mut room.therapist, &mut room.patient]
                    .into_iter()
                    .flatten()
                {
                    // What waited for the refused write was never true.
                    let released = p.released;
                    p.buffer.retain(|m| m.seq <= released);
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
        let holds_link = room
            .patient
            .as_ref()
            .is_some_and(|p| p.link_ref.as_ref() == Some(link));
        if !holds_link {
            return;
        }
        let start = self.out.len();
        self.touched.insert(consultation);
        let mut ctx = Ctx {
            cfg: &self.config,
            out: &mut self.out,
        };
        if room.admission == Admission::Admitted {
            room.event(CallEvent::PatientLeft);
            room.admission = Admission::Waiting;
            room.media = Media::default();
            room.send(
                &mut ctx,
                Role::Patient,
                ServerBody::Bye {
                    reason: ByeReason::EndedByTherapist,
                },
            );
            room.remove(&mut ctx, Role::Patient, CloseReason::Bye);
            room.send(
                &mut ctx,
                Role::Therapist,
                ServerBody::PeerLeft {
                    role: Role::Patient,
                },
            );
        } else {
            room.deny_patient(
                &mut ctx,
                Denied {
                    reason: DeniedReason::ByTherapist,
                    note: None,
                    failures: Vec::new(),
                },
            );
        }
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
        room.on_relay_media(&mut ctx, &patient_to_therapist, &therapist_to_patient);
        self.after(start, now);
    }

    /// Rooms in a call whose media the relay has not yet been seen to carry
    /// both ways: the ones to feed [`Hub::handle_relay_media`].
    pub fn rooms_awaiting_relay_evidence(&self) -> Vec<Uuid> {
        self.rooms
            .values()
            .filter(|r| r.in_call() && r.media.evidence != Some(Evidence::RelayObserved))
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
            match room.therapist.as_ref().map(|p| p.link) {
                Some(Presence::Connected(_)) => census.therapists += 1,
                Some(Presence::Disconnected { .. }) => census.participants_away += 1,
                None => {}
            }
            match room.patient.as_ref().map(|p| p.link) {
                Some(Presence::Connected(_)) => match room.admission {
                    Admission::Admitted => census.patients_admitted += 1,
                    Admission::Waiting | Admission::Checking { .. } => census.patients_waiting += 1,
                },
                Some(Presence::Disconnected { .. }) => census.participants_away += 1,
                None => {}
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
                let Some(patient) = room
                    .patient
                    .as_ref()
                    .filter(|_| room.admission == Admission::Waiting)
                else {
                    return Err((ErrorCode::WrongState, "no patient is waiting"));
                };
                let context = patient.context.clone();
                let check = self.next_check;
                self.next_check += 1;
                room.admission = Admission::Checking {
                    check,
                    deadline: after(now, self.config.admission_check_timeout),
                };
                ctx.out.push_back(Output::AdmissionCheck {
                    consultation,
                    check: AdmissionCheckId(check),
                    context,
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
                let relays = &room.relays;
                let body = match in_call {
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
                    ClientMessage::MediaState(state) => {
                        // Only to a peer that asked for it in its hello.
                        let peer_wants = room
                            .get(peer)
                            .and_then(Participant::conn)
                            .and_then(|c| self.conns.get(&c))
                            .is_some_and(|c| c.features.media_state);
                        if !peer_wants {
                            return Ok(());
                        }
                        ServerBody::MediaState {
                            from: role,
                            audio: state.audio,
                            video: state.video,
                            screen: state.screen,
                        }
                    }
                    ClientMessage::Stats(stats) => {
                        room.on_stats(&mut ctx, role, &stats, now);
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
            self.touched.insert(consultation);
            room.detach(&mut ctx, conn, role, now);
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
fn after(t: Instant, d: Duration) -> Instant {
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
