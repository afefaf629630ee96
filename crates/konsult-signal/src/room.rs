//! One consultation's room: who is in it, where each participant stands,
//! and what each step sends, writes and holds back.
//!
//! A room holds its participants as [`Member`]s addressed by [`Seat`]: the
//! therapist's seat (one per room; any device of the therapist takes it
//! over) and one seat per other participant, by the id the pump gives it.
//! Role is what a participant may do, not who it is. Admission and two-way
//! media are kept per participant: a patient is admitted, and its media
//! with the therapist is established, on its own.
//!
//! Version 1 of the protocol knows one therapist and one patient and
//! addresses "the other side"; [`Room::counterpart`] is that mapping and
//! the only place it lives.

use crate::config::Config;
use crate::filter::Relays;
use crate::hub::{after, AdmissionState, JoinRequest, ParticipantSnapshot, Presence, RoomSnapshot};
use crate::output::{CloseReason, ConnId, Output, RoomContext, WriteId};
use crate::record::{
    CallRecord, LinkRef, ParticipantRecord, RoomRecord, TokenHash, RECORD_VERSION,
};
use konsult_domain::evidence::{
    client_two_way, relay_two_way, ClientReport, ClientReports, ObservedFlow,
};
use konsult_domain::{CallEvent, EndReason, Evidence, EvidencePolicy};
use konsult_protocol::{
    ByeReason, CandidatePolicy, Denied, ErrorBody, ErrorCode, IceServer, ParticipantInfo,
    ParticipantState, ResumeToken, Role, ServerBody, ServerMessage, Stats, Welcome,
    PROTOCOL_VERSION,
};
use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;
use uuid::Uuid;

/// How many superseded resume tokens a participant remembers, so an old
/// device that comes back gets `replaced` instead of taking over again.
const SUPERSEDED_TOKENS: usize = 8;

/// Where a participant sits in its room: the therapist's seat, or the seat
/// of one other participant by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Seat {
    /// The consultation's therapist (any of its devices).
    Therapist,
    /// Another participant (a patient), by the pump's id for it.
    Guest(Uuid),
}

impl Seat {
    /// The seat a join of `role` with participant id `id` takes.
    pub(crate) fn of(role: Role, id: Uuid) -> Seat {
        match role {
            Role::Therapist => Seat::Therapist,
            Role::Patient => Seat::Guest(id),
        }
    }
}

/// A participant's admission (the therapist's is always `Admitted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Waiting,
    Checking { check: u64, deadline: Instant },
    Admitted,
}

/// Two-way media between one patient and the therapist in the patient's
/// current call (one admission).
#[derive(Debug, Default)]
pub(crate) struct Media {
    /// When the patient was admitted: the origin of report times.
    since: Option<Instant>,
    patient: ClientReports,
    therapist: ClientReports,
    /// Established in this call, by this evidence.
    pub(crate) evidence: Option<Evidence>,
}

/// A participant's connection, resume tokens and message stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) link: Presence,
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
    pub(crate) link_ref: Option<LinkRef>,
    /// Restored from a saved record: the client may have seen messages
    /// above `next_seq` that this process never knew (see `resume`).
    restored: bool,
    /// The pump's context of this participant's latest join (or of the
    /// restore).
    pub(crate) context: RoomContext,
}

impl Stream {
    fn new(conn: ConnId, token: TokenHash, req: &JoinRequest) -> Self {
        Stream {
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

    pub(crate) fn conn(&self) -> Option<ConnId> {
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

    /// Forgets what was held back for a write that was refused: it was
    /// never true.
    pub(crate) fn drop_unreleased(&mut self) {
        let released = self.released;
        self.buffer.retain(|m| m.seq <= released);
    }
}

/// One participant of a room.
#[derive(Debug)]
pub(crate) struct Member {
    /// The pump's id of the participant. Nil for one restored from a
    /// record that predates ids, until it joins again.
    pub(crate) id: Uuid,
    pub(crate) role: Role,
    /// The protocol version of its latest join.
    pub(crate) version: u32,
    pub(crate) stream: Stream,
    /// A patient's admission; the therapist's is `Admitted`.
    pub(crate) admission: Admission,
    /// A patient's two-way media with the therapist in its current call.
    pub(crate) media: Media,
}

impl Member {
    pub(crate) fn seat(&self) -> Seat {
        Seat::of(self.role, self.id)
    }

    fn is_therapist(&self) -> bool {
        self.role == Role::Therapist
    }

    fn v2(&self) -> bool {
        self.version > PROTOCOL_VERSION
    }

    /// How `viewer` sees this participant.
    fn info_for(&self, viewer: &Member) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id,
            role: self.role,
            state: match self.admission {
                Admission::Admitted => ParticipantState::Admitted,
                Admission::Waiting | Admission::Checking { .. } => ParticipantState::Waiting,
            },
            polite: match (viewer.is_therapist(), self.is_therapist()) {
                (true, _) => false,
                (false, true) => true,
                (false, false) => viewer.id > self.id,
            },
        }
    }

    /// Whether a join of `seat` takes this member's place: the therapist's
    /// seat is one, another participant's is its id (or, restored from a
    /// record without ids, its role).
    fn takes(&self, seat: Seat, role: Role) -> bool {
        self.seat() == seat || (self.id.is_nil() && self.role == role && !self.is_therapist())
    }

    fn record(&self) -> ParticipantRecord {
        ParticipantRecord {
            id: (!self.id.is_nil()).then_some(self.id),
            version: self.v2().then_some(self.version),
            call: (!self.is_therapist()).then_some(CallRecord {
                admitted: self.admission == Admission::Admitted,
                evidence: self.media.evidence,
            }),
            role: self.role,
            token: self.stream.token,
            superseded: self.stream.superseded.iter().copied().collect(),
            next_seq: self.stream.next_seq,
            link: self.stream.link_ref.clone(),
        }
    }

    fn snapshot(&self) -> ParticipantSnapshot {
        ParticipantSnapshot {
            id: self.id,
            role: self.role,
            presence: self.stream.link,
            admission: self.admission.state(),
            evidence: self.media.evidence,
        }
    }
}

impl Admission {
    pub(crate) fn state(self) -> AdmissionState {
        match self {
            Admission::Waiting => AdmissionState::Waiting,
            Admission::Checking { .. } => AdmissionState::Checking,
            Admission::Admitted => AdmissionState::Admitted,
        }
    }
}

/// A connection whose participant left the room while its last messages
/// were held back: they and the close go out when the room is released.
#[derive(Debug)]
pub(crate) struct Departing {
    pub(crate) conn: ConnId,
    messages: Vec<ServerMessage>,
    pub(crate) reason: CloseReason,
}

#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) id: Uuid,
    pub(crate) policy: CandidatePolicy,
    evidence_policy: EvidencePolicy,
    /// Who is in the consultation, in the order they first came.
    pub(crate) members: Vec<Member>,
    /// A patient was admitted at least once: the consultation is `in_call`.
    pub(crate) call_started: bool,
    /// The consultation is over (ended or closed): nobody joins any more.
    pub(crate) over: bool,
    /// Durable writes not yet acknowledged; while any is, messages wait.
    pub(crate) held: BTreeSet<WriteId>,
    pub(crate) departing: Vec<Departing>,
    /// Events of the current step, for the step's write.
    pub(crate) pending: Vec<CallEvent>,
    /// The current step has a durable event.
    pub(crate) hold_step: bool,
    /// The current step changed what the saved record says.
    pub(crate) dirty: bool,
    /// The pump's context of the latest join that took a place here (or of
    /// the restore).
    pub(crate) context: RoomContext,
    /// The relays the room's relay candidates may carry: the configured
    /// ones and those handed to its participants in their welcomes (in a
    /// cluster, each participant's own node's relay).
    pub(crate) relays: Relays,
}

/// Everything a room operation needs besides the room.
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) out: &'a mut VecDeque<Output>,
}

impl Ctx<'_> {
    pub(crate) fn send_conn(&mut self, conn: ConnId, body: ServerBody) {
        self.out.push_back(Output::Send {
            conn,
            message: ServerMessage::unsequenced(body),
        });
    }

    pub(crate) fn error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        failures: Vec<String>,
    ) {
        self.send_conn(
            conn,
            ServerBody::Error(ErrorBody {
                code,
                message: message.to_string(),
                failures,
            }),
        );
    }

    pub(crate) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.out.push_back(Output::Close { conn, reason });
    }
}

impl Room {
    pub(crate) fn new(id: Uuid, policy: CandidatePolicy, evidence_policy: EvidencePolicy) -> Self {
        Room {
            id,
            policy,
            evidence_policy,
            members: Vec::new(),
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

    pub(crate) fn member(&self, seat: Seat) -> Option<&Member> {
        self.members.iter().find(|m| m.seat() == seat)
    }

    pub(crate) fn member_mut(&mut self, seat: Seat) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.seat() == seat)
    }

    /// The seat of the participant with `id` (the therapist's, if it is
    /// the therapist's id).
    pub(crate) fn seat_of(&self, id: Uuid) -> Seat {
        match self.therapist() {
            Some(t) if t.id == id => Seat::Therapist,
            _ => Seat::Guest(id),
        }
    }

    /// The first participant (not the therapist) whose admission state
    /// passes `state` (version 1: the one patient).
    pub(crate) fn first_guest(&self, state: impl Fn(AdmissionState) -> bool) -> Option<Seat> {
        self.members
            .iter()
            .find(|m| !m.is_therapist() && state(m.admission.state()))
            .map(Member::seat)
    }

    pub(crate) fn therapist(&self) -> Option<&Member> {
        self.member(Seat::Therapist)
    }

    /// The seats of the participants other than the therapist.
    fn guests(&self) -> Vec<Seat> {
        self.members
            .iter()
            .filter(|m| !m.is_therapist())
            .map(Member::seat)
            .collect()
    }

    /// The seats of the participants in `state`.
    fn guests_in(&self, state: AdmissionState) -> Vec<Seat> {
        self.members_in(state).map(Member::seat).collect()
    }

    /// The participants (not the therapist) in `state`, without allocating
    /// (the relay path asks on every message).
    fn members_in(&self, state: AdmissionState) -> impl Iterator<Item = &Member> + '_ {
        self.members
            .iter()
            .filter(move |m| !m.is_therapist() && m.admission.state() == state)
    }

    fn admission(&self, seat: Seat) -> Admission {
        self.member(seat)
            .map_or(Admission::Waiting, |m| m.admission)
    }

    fn set_admission(&mut self, seat: Seat, admission: Admission) {
        if let Some(m) = self.member_mut(seat) {
            m.admission = admission;
            if admission != Admission::Admitted {
                m.media = Media::default();
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Nothing left to do: nobody in it, no message waiting for a write.
    pub(crate) fn is_done(&self) -> bool {
        self.is_empty() && self.held.is_empty() && self.departing.is_empty()
    }

    /// Whether `seat` is in a call: the therapist with an admitted
    /// participant, a participant admitted while the therapist is there.
    pub(crate) fn in_call(&self, seat: Seat) -> bool {
        match seat {
            Seat::Therapist => {
                self.therapist().is_some()
                    && self.members_in(AdmissionState::Admitted).next().is_some()
            }
            Seat::Guest(_) => {
                self.therapist().is_some() && self.admission(seat) == Admission::Admitted
            }
        }
    }

    /// Version 1's "the other side" of `seat`: the therapist for a
    /// participant, the participant in the call (or else the first one)
    /// for the therapist.
    pub(crate) fn counterpart(&self, seat: Seat) -> Option<Seat> {
        match seat {
            Seat::Guest(_) => self.therapist().map(Member::seat),
            Seat::Therapist => self
                .members_in(AdmissionState::Admitted)
                .next()
                .or_else(|| self.members.iter().find(|m| !m.is_therapist()))
                .map(Member::seat),
        }
    }

    /// Rooms whose relay evidence the pump should feed: a participant in a
    /// call whose two-way media the relay has not been seen to carry.
    pub(crate) fn awaits_relay_evidence(&self) -> bool {
        self.members.iter().any(|m| {
            !m.is_therapist()
                && self.in_call(m.seat())
                && m.media.evidence != Some(Evidence::RelayObserved)
        })
    }

    pub(crate) fn is_held(&self) -> bool {
        !self.held.is_empty() || self.hold_step
    }

    /// Reports an event. A durable one holds the room's messages back from
    /// now until its write is committed, so report it before the messages
    /// it causes.
    pub(crate) fn event(&mut self, event: CallEvent) {
        if event.is_durable() {
            self.hold_step = true;
        }
        self.dirty = true;
        self.pending.push(event);
    }

    /// Sends a sequenced message to the participant at `seat`: numbered,
    /// kept for replay, and written now if it is connected and nothing holds
    /// the room back.
    pub(crate) fn send(&mut self, ctx: &mut Ctx<'_>, seat: Seat, body: ServerBody) {
        self.send_from(ctx, seat, body, None);
    }

    /// [`Room::send`], naming (for a version 2 recipient) the participant
    /// the message comes from or is about.
    pub(crate) fn send_from(
        &mut self,
        ctx: &mut Ctx<'_>,
        seat: Seat,
        body: ServerBody,
        from: Option<Uuid>,
    ) {
        let cap = ctx.cfg.replay_buffer;
        let held = self.is_held();
        let Some(member) = self.member_mut(seat) else {
            return;
        };
        let sender = from.filter(|_| member.v2());
        let p = &mut member.stream;
        let message = ServerMessage {
            body,
            seq: p.next_seq,
            sender,
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

    /// Sends to the therapist, if there is one.
    fn send_therapist(&mut self, ctx: &mut Ctx<'_>, body: ServerBody) {
        self.send(ctx, Seat::Therapist, body);
    }

    /// The participants in a call with `seat`: for the therapist, the
    /// admitted participants; for an admitted participant (while the
    /// therapist is there), the therapist and the other admitted ones.
    pub(crate) fn partners(&self, seat: Seat) -> Vec<Seat> {
        if !self.in_call(seat) {
            return Vec::new();
        }
        self.members
            .iter()
            .map(Member::seat)
            .filter(|&other| other != seat && self.in_call(other))
            .collect()
    }

    /// Whether `a` and `b` are in a call together.
    pub(crate) fn is_partner(&self, a: Seat, b: Seat) -> bool {
        a != b && self.member(b).is_some() && self.in_call(a) && self.in_call(b)
    }

    /// Tells `viewer` that `subject` is now where it can see it, or starts
    /// anew: version 1 `peer_joined`, version 2 `participant_joined`.
    /// Version 1 knows only the pair of the therapist and one patient.
    fn tell_joined(&mut self, ctx: &mut Ctx<'_>, viewer: Seat, subject: Seat) {
        let (Some(v), Some(s)) = (self.member(viewer), self.member(subject)) else {
            return;
        };
        let body = if v.v2() {
            ServerBody::ParticipantJoined {
                participant: s.info_for(v),
            }
        } else if v.is_therapist() || s.is_therapist() {
            ServerBody::PeerJoined { role: s.role }
        } else {
            return;
        };
        self.send(ctx, viewer, body);
    }

    /// Tells `viewer` that the participant `(role, id)` is gone from where
    /// it could see it: version 1 `peer_left`, version 2 `participant_left`.
    fn tell_left(&mut self, ctx: &mut Ctx<'_>, viewer: Seat, role: Role, id: Uuid) {
        let Some(v) = self.member(viewer) else {
            return;
        };
        let body = if v.v2() {
            ServerBody::ParticipantLeft { participant: id }
        } else if v.is_therapist() || role == Role::Therapist {
            ServerBody::PeerLeft { role }
        } else {
            return;
        };
        self.send(ctx, viewer, body);
    }

    /// Tells the therapist that `guest` waits: version 1
    /// `patient_waiting`, version 2 `participant_joined` (waiting).
    fn tell_waiting(&mut self, ctx: &mut Ctx<'_>, guest: Seat) {
        let Some(t) = self.therapist() else {
            return;
        };
        if t.v2() {
            self.tell_joined(ctx, Seat::Therapist, guest);
        } else {
            self.send_therapist(ctx, ServerBody::PatientWaiting {});
        }
    }

    /// The therapist's id, if it is there.
    fn therapist_id(&self) -> Option<Uuid> {
        self.therapist().map(|t| t.id)
    }

    /// Tells `guest` that the therapist is gone from its call.
    fn tell_therapist_left(&mut self, ctx: &mut Ctx<'_>, guest: Seat, therapist: Uuid) {
        self.tell_left(ctx, guest, Role::Therapist, therapist);
    }

    /// Whether the room can seat a join of `version` at `seat` without
    /// putting more than two participants in front of a version 1 client.
    fn version_refusal(&self, seat: Seat, version: u32) -> Option<(ErrorCode, &'static str)> {
        let others = self.members.iter().filter(|m| m.seat() != seat);
        let guests = others.clone().filter(|m| !m.is_therapist()).count()
            + usize::from(matches!(seat, Seat::Guest(_)));
        if guests <= 1 {
            return None;
        }
        if version <= PROTOCOL_VERSION {
            return Some((
                ErrorCode::VersionMismatch,
                "this consultation has more than two participants; that needs protocol version 2",
            ));
        }
        others.clone().any(|m| !m.v2()).then_some((
            ErrorCode::WrongState,
            "a participant's client speaks protocol version 1, which carries only two participants",
        ))
    }

    /// Takes `seat` out of the room; its connection, if any, is closed
    /// after its last messages (now, or when the room is released).
    pub(crate) fn remove(&mut self, ctx: &mut Ctx<'_>, seat: Seat, reason: CloseReason) {
        let held = self.is_held();
        let Some(index) = self.members.iter().position(|m| m.seat() == seat) else {
            return;
        };
        let p = self.members.remove(index).stream;
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
    pub(crate) fn release(&mut self, ctx: &mut Ctx<'_>) {
        for p in self.members.iter_mut().map(|m| &mut m.stream) {
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
        seat: Seat,
        conn: ConnId,
        token: ResumeToken,
        resumed: bool,
        ice_servers: Vec<IceServer>,
    ) {
        let Some(me) = self.member(seat) else {
            return;
        };
        let role = me.role;
        let roster = me.v2().then(|| {
            self.members
                .iter()
                .filter(|m| m.seat() != seat)
                .filter(|m| {
                    me.is_therapist()
                        || m.is_therapist()
                        || (me.admission == Admission::Admitted
                            && m.admission == Admission::Admitted)
                })
                .map(|m| m.info_for(me))
                .collect()
        });
        let welcome = Welcome {
            version: me.version,
            participant: me.v2().then_some(me.id),
            participants: roster,
            role,
            consultation: self.id,
            ice_servers,
            candidate_policy: self.policy,
            peer_present: self.counterpart(seat).is_some(),
            polite: role == Role::Patient,
            resume_token: token,
            resumed,
            limits: ctx.cfg.limits(),
        };
        ctx.send_conn(conn, ServerBody::Welcome(welcome));
    }

    pub(crate) fn join(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, mut req: JoinRequest) {
        let role = req.role;
        let seat = Seat::of(role, req.participant);
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
        let taken = self
            .members
            .iter()
            .find(|m| m.takes(seat, role))
            .map(Member::seat);
        if let Some((code, message)) = self.version_refusal(taken.unwrap_or(seat), req.version) {
            ctx.error(conn, code, message, Vec::new());
            ctx.close(conn, CloseReason::Rejected);
            return;
        }
        let Some(member) = self.members.iter_mut().find(|m| m.takes(seat, role)) else {
            self.join_new(ctx, conn, req);
            return;
        };
        let presented = req.resume.as_ref().map(|r| (TokenHash::of(&r.token), r));
        if let Some((hash, _)) = &presented {
            if member.stream.is_superseded(hash) {
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
        // The therapist's seat takes the latest login's id; a participant
        // restored without an id takes its join's.
        member.id = req.participant;
        // A resume continues the stream it was given in: of the same
        // protocol version.
        let same_version = std::mem::replace(&mut member.version, req.version) == req.version;
        let p = &mut member.stream;
        let own = presented.filter(|(hash, _)| same_version && p.token.ct_eq(hash));
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
                let caught_up = resume.last_seq.saturating_add(1) >= p.next_seq;
                p.restored = false;
                p.buffer.clear();
                if caught_up {
                    p.next_seq = p.next_seq.max(resume.last_seq.saturating_add(1));
                }
                p.released = p.next_seq - 1;
                self.welcome(ctx, seat, conn, token, caught_up, ice_servers);
                if !caught_up {
                    self.resync_after_gap(ctx, seat);
                }
            }
            Some((_, resume)) if p.can_replay(resume.last_seq) => {
                let token = resume.token.clone();
                let last_seq = resume.last_seq;
                self.welcome(ctx, seat, conn, token, true, ice_servers);
                let p = &self.member(seat).expect("participant present").stream;
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
                self.welcome(ctx, seat, conn, token, false, ice_servers);
                self.resync_new_device(ctx, seat);
            }
        }
        self.context = req.context;
    }

    fn join_new(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, req: JoinRequest) {
        let role = req.role;
        let seat = Seat::of(role, req.participant);
        let token = req.resume_token_for_new.clone();
        self.members.push(Member {
            id: req.participant,
            role,
            version: req.version,
            stream: Stream::new(conn, TokenHash::of(&token), &req),
            admission: match role {
                Role::Therapist => Admission::Admitted,
                Role::Patient => Admission::Waiting,
            },
            media: Media::default(),
        });
        self.context = req.context.clone();
        self.dirty = true;
        self.welcome(ctx, seat, conn, token, false, req.ice_servers);
        match seat {
            Seat::Guest(_) => {
                self.event(CallEvent::PatientWaiting);
                self.send(ctx, seat, ServerBody::Waiting {});
                self.tell_waiting(ctx, seat);
            }
            Seat::Therapist => self.tell_waiting_v1(ctx),
        }
    }

    /// Version 1: a therapist who comes (back) to a room with a patient
    /// hears `patient_waiting` (without a therapist a patient is never
    /// admitted). Version 2 finds everyone in its welcome's roster.
    fn tell_waiting_v1(&mut self, ctx: &mut Ctx<'_>) {
        let v1 = self.therapist().is_some_and(|t| !t.v2());
        if v1 && !self.guests().is_empty() {
            self.send_therapist(ctx, ServerBody::PatientWaiting {});
        }
    }

    /// A new device (no valid resume) took `seat`'s place: bring it up to
    /// date from scratch.
    fn resync_new_device(&mut self, ctx: &mut Ctx<'_>, seat: Seat) {
        match seat {
            Seat::Guest(_) => {
                let previous = self.admission(seat);
                let partners = self.partners(seat);
                self.set_admission(seat, Admission::Waiting);
                if previous == Admission::Admitted {
                    // Whoever holds the link now was not seen by the
                    // therapist: the patient's call ends (the consultation
                    // goes on) and the device waits again.
                    self.event(CallEvent::PatientLeft);
                    let (role, id) = self.member(seat).map(|m| (m.role, m.id)).expect("seated");
                    for other in partners.into_iter().filter(|&o| o != Seat::Therapist) {
                        self.tell_left(ctx, other, role, id);
                    }
                    if self.therapist().is_some_and(|t| !t.v2()) {
                        self.tell_left(ctx, Seat::Therapist, role, id);
                    }
                }
                self.send(ctx, seat, ServerBody::Waiting {});
                if previous != Admission::Waiting {
                    self.event(CallEvent::PatientWaiting);
                    // Version 2: `participant_joined` (waiting) replaces
                    // what the therapist knew.
                    self.tell_waiting(ctx, seat);
                }
            }
            Seat::Therapist => {
                if self.guests().is_empty() {
                    return;
                }
                let admitted = self.guests_in(AdmissionState::Admitted);
                if admitted.is_empty() {
                    self.tell_waiting_v1(ctx);
                }
                for guest in admitted {
                    // The therapist is authenticated by login: the call
                    // goes on with the new device, after a fresh
                    // negotiation.
                    self.renegotiate(ctx, guest);
                }
            }
        }
    }

    /// The therapist and `guest` start a new peer connection in the same
    /// call.
    fn renegotiate(&mut self, ctx: &mut Ctx<'_>, guest: Seat) {
        self.tell_joined(ctx, Seat::Therapist, guest);
        if let Some(therapist) = self.therapist_id() {
            self.tell_therapist_left(ctx, guest, therapist);
        }
        self.tell_joined(ctx, guest, Seat::Therapist);
    }

    /// A participant came back after a restart but missed messages that
    /// cannot be replayed: it starts fresh on its side, keeping its place
    /// (a patient stays admitted), and both sides negotiate anew.
    fn resync_after_gap(&mut self, ctx: &mut Ctx<'_>, seat: Seat) {
        match seat {
            Seat::Guest(_) if self.admission(seat) == Admission::Admitted => {
                self.announce_admission(ctx, seat);
            }
            Seat::Guest(_) => self.send(ctx, seat, ServerBody::Waiting {}),
            Seat::Therapist => {
                let admitted = self.guests_in(AdmissionState::Admitted);
                if admitted.is_empty() {
                    self.tell_waiting_v1(ctx);
                }
                for guest in admitted {
                    self.renegotiate(ctx, guest);
                }
            }
        }
    }

    /// The participant's connection ended; it may resume within the grace
    /// period. Nobody is told yet.
    pub(crate) fn detach(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, seat: Seat, now: Instant) {
        let grace = ctx.cfg.resume_grace;
        if let Some(m) = self.member_mut(seat) {
            if m.stream.conn() == Some(conn) {
                m.stream.link = Presence::Disconnected {
                    grace_until: after(now, grace),
                };
            }
        }
    }

    /// The event of `guest` leaving, by where it stood.
    fn left_event(&self, guest: Seat) -> CallEvent {
        if self.admission(guest) == Admission::Admitted {
            CallEvent::PatientLeft
        } else {
            CallEvent::PatientLeftWaiting
        }
    }

    /// Takes `guest` out (its last message already queued) and tells the
    /// therapist and, if it was in the call, the others in it.
    fn guest_gone(&mut self, ctx: &mut Ctx<'_>, guest: Seat, reason: CloseReason) {
        let Some((role, id)) = self.member(guest).map(|m| (m.role, m.id)) else {
            return;
        };
        let partners = self.partners(guest);
        self.remove(ctx, guest, reason);
        self.tell_left(ctx, Seat::Therapist, role, id);
        for other in partners.into_iter().filter(|&o| o != Seat::Therapist) {
            self.tell_left(ctx, other, role, id);
        }
    }

    /// `seat` sent `leave`.
    pub(crate) fn leave(&mut self, ctx: &mut Ctx<'_>, seat: Seat) {
        match seat {
            Seat::Guest(_) => {
                self.event(self.left_event(seat));
                self.send(
                    ctx,
                    seat,
                    ServerBody::Bye {
                        reason: ByeReason::Left,
                    },
                );
                // The consultation goes on: the patient may come back from
                // the same link until the therapist ends it.
                self.guest_gone(ctx, seat, CloseReason::Bye);
            }
            Seat::Therapist if self.call_started => self.end(ctx, EndReason::TherapistEnded),
            Seat::Therapist => {
                // No call yet: a waiting patient keeps waiting for a
                // therapist.
                self.send_therapist(
                    ctx,
                    ServerBody::Bye {
                        reason: ByeReason::Left,
                    },
                );
                self.remove(ctx, Seat::Therapist, CloseReason::Bye);
                for guest in self.guests() {
                    self.set_admission(guest, Admission::Waiting);
                }
            }
        }
    }

    /// The consultation's call ends for good: committed first, then every
    /// participant is told and closed.
    pub(crate) fn end(&mut self, ctx: &mut Ctx<'_>, reason: EndReason) {
        self.event(CallEvent::Ended { reason });
        self.over = true;
        self.close_everyone(ctx);
    }

    /// Tells everyone the consultation is over (`bye`) and closes them.
    pub(crate) fn close_everyone(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(therapist) = self.therapist_id() {
            for guest in self.guests_in(AdmissionState::Admitted) {
                self.tell_therapist_left(ctx, guest, therapist);
            }
        }
        self.send_therapist(
            ctx,
            ServerBody::Bye {
                reason: ByeReason::Left,
            },
        );
        self.remove(ctx, Seat::Therapist, CloseReason::Bye);
        for guest in self.guests() {
            self.send(
                ctx,
                guest,
                ServerBody::Bye {
                    reason: ByeReason::EndedByTherapist,
                },
            );
            self.remove(ctx, guest, CloseReason::Bye);
        }
    }

    /// `seat`'s grace period expired without a resume.
    fn expire(&mut self, ctx: &mut Ctx<'_>, seat: Seat) {
        match seat {
            Seat::Guest(_) => {
                self.event(self.left_event(seat));
                self.guest_gone(ctx, seat, CloseReason::Bye);
            }
            Seat::Therapist => {
                let in_call = self.guests_in(AdmissionState::Admitted);
                if !in_call.is_empty() {
                    self.event(CallEvent::TherapistLeft);
                }
                let therapist = self.therapist_id().unwrap_or_default();
                self.remove(ctx, Seat::Therapist, CloseReason::Bye);
                for guest in self.guests_in(AdmissionState::Checking) {
                    self.set_admission(guest, Admission::Waiting);
                }
                for guest in in_call {
                    // The patient goes back to the waiting room until a
                    // therapist admits again.
                    // Version 2: `waiting` ends every peer connection.
                    self.set_admission(guest, Admission::Waiting);
                    self.tell_therapist_left(ctx, guest, therapist);
                    self.send(ctx, guest, ServerBody::Waiting {});
                    self.event(CallEvent::PatientWaiting);
                }
            }
        }
    }

    /// Turns `guest` away: `denied`, closed, and the therapist told.
    pub(crate) fn deny(&mut self, ctx: &mut Ctx<'_>, guest: Seat, denied: Denied) {
        self.event(self.left_event(guest));
        self.send(ctx, guest, ServerBody::Denied(denied));
        self.guest_gone(ctx, guest, CloseReason::Denied);
    }

    /// `guest` (in the call or not) is sent away with `bye`: its link was
    /// revoked.
    pub(crate) fn send_away(&mut self, ctx: &mut Ctx<'_>, guest: Seat, denied: Denied) {
        if self.admission(guest) != Admission::Admitted {
            self.deny(ctx, guest, denied);
            return;
        }
        self.event(CallEvent::PatientLeft);
        self.send(
            ctx,
            guest,
            ServerBody::Bye {
                reason: ByeReason::EndedByTherapist,
            },
        );
        self.guest_gone(ctx, guest, CloseReason::Bye);
    }

    pub(crate) fn admit(&mut self, ctx: &mut Ctx<'_>, guest: Seat, now: Instant) {
        self.event(CallEvent::Admitted);
        self.call_started = true;
        if let Some(m) = self.member_mut(guest) {
            m.admission = Admission::Admitted;
            m.media = Media {
                since: Some(now),
                ..Media::default()
            };
        }
        self.announce_admission(ctx, guest);
    }

    /// `guest` is in the call: `admitted`, then both sides `peer_joined`
    /// (they set up a new peer connection).
    fn announce_admission(&mut self, ctx: &mut Ctx<'_>, guest: Seat) {
        self.send(ctx, guest, ServerBody::Admitted {});
        for other in self.partners(guest) {
            self.tell_joined(ctx, guest, other);
        }
        for other in self.partners(guest) {
            self.tell_joined(ctx, other, guest);
        }
    }

    /// A `stats` report of `seat`'s. A patient's counts for its own media;
    /// the therapist's, for every patient in the call with it.
    ///
    /// Version 2 names the peer the report is about (`to`): the
    /// therapist's report about one patient counts for that patient only; a
    /// patient's report about another patient is no evidence.
    pub(crate) fn on_stats(
        &mut self,
        ctx: &mut Ctx<'_>,
        seat: Seat,
        about: Option<Seat>,
        stats: &Stats,
        now: Instant,
    ) {
        let guests = match (seat, about) {
            (Seat::Guest(_), None | Some(Seat::Therapist)) => vec![seat],
            (Seat::Guest(_), Some(_)) => return,
            (Seat::Therapist, None) => self.guests_in(AdmissionState::Admitted),
            (Seat::Therapist, Some(guest)) => vec![guest],
        };
        for guest in guests {
            let policy = self.evidence_policy;
            let Some(m) = self.member_mut(guest) else {
                continue;
            };
            let media = &mut m.media;
            let since = *media.since.get_or_insert(now);
            let report = ClientReport {
                at: now.saturating_duration_since(since),
                receiving: stats.media_flowing(),
                bytes_received: stats.bytes_received,
                bytes_sent: stats.bytes_sent,
            };
            match seat {
                Seat::Therapist => media.therapist.add(report),
                Seat::Guest(_) => media.patient.add(report),
            }
            let established = media.evidence.is_none()
                && policy.accepts(Evidence::ClientReported)
                && client_two_way(&ctx.cfg.evidence, &media.patient, &media.therapist);
            if established {
                self.establish(ctx, guest, Evidence::ClientReported);
            }
        }
    }

    /// What the relay counted between `guest` and the therapist.
    pub(crate) fn on_relay_media(
        &mut self,
        ctx: &mut Ctx<'_>,
        guest: Seat,
        patient_to_therapist: &ObservedFlow,
        therapist_to_patient: &ObservedFlow,
    ) {
        let observed = self.member(guest).map(|m| m.media.evidence);
        if !self.in_call(guest) || observed == Some(Some(Evidence::RelayObserved)) {
            return;
        }
        if relay_two_way(
            &ctx.cfg.evidence,
            patient_to_therapist,
            therapist_to_patient,
        ) {
            self.establish(ctx, guest, Evidence::RelayObserved);
        }
    }

    /// Two-way media between `guest` and the therapist, by `evidence`:
    /// committed first, then both hear `media_established` (once per call;
    /// stronger evidence later is only recorded).
    fn establish(&mut self, ctx: &mut Ctx<'_>, guest: Seat, evidence: Evidence) {
        let Some(m) = self.member_mut(guest) else {
            return;
        };
        let first = m.media.evidence.is_none();
        m.media.evidence = Some(evidence);
        self.event(CallEvent::TwoWayEstablished { evidence });
        if first {
            let Seat::Guest(id) = guest else { return };
            let therapist = self.therapist_id();
            self.send_from(
                ctx,
                Seat::Therapist,
                ServerBody::MediaEstablished {},
                Some(id),
            );
            self.send_from(ctx, guest, ServerBody::MediaEstablished {}, therapist);
        }
    }

    /// Starts the admission check of `guest`, if it is waiting.
    pub(crate) fn start_check(&mut self, guest: Seat, check: u64, deadline: Instant) -> bool {
        if self.admission(guest) != Admission::Waiting {
            return false;
        }
        self.set_admission(guest, Admission::Checking { check, deadline });
        true
    }

    /// The participant whose admission check `check` is.
    pub(crate) fn checking(&self, check: u64) -> Option<Seat> {
        self.members
            .iter()
            .find(|m| matches!(m.admission, Admission::Checking { check: c, .. } if c == check))
            .map(Member::seat)
    }

    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let mut expired: Vec<Seat> = self
            .members
            .iter()
            .filter(|m| m.stream.grace_deadline().is_some_and(|d| d <= now))
            .map(Member::seat)
            .collect();
        // The therapist first, as its going decides where the others stand.
        expired.sort();
        for seat in expired {
            self.expire(ctx, seat);
        }
        let overdue: Vec<Seat> = self
            .members
            .iter()
            .filter(
                |m| matches!(m.admission, Admission::Checking { deadline, .. } if deadline <= now),
            )
            .map(Member::seat)
            .collect();
        for guest in overdue {
            self.set_admission(guest, Admission::Waiting);
            if let Some(conn) = self.therapist().and_then(|t| t.stream.conn()) {
                ctx.error(
                    conn,
                    ErrorCode::AdmissionCheckFailed,
                    "the eligibility check did not complete; try admitting again",
                    Vec::new(),
                );
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let graces = self
            .members
            .iter()
            .filter_map(|m| m.stream.grace_deadline());
        let checks = self.members.iter().filter_map(|m| match m.admission {
            Admission::Checking { deadline, .. } => Some(deadline),
            _ => None,
        });
        graces.chain(checks).min()
    }

    pub(crate) fn snapshot(&self) -> RoomSnapshot {
        let patient = self.members.iter().find(|m| !m.is_therapist());
        let evidence = patient.and_then(|m| m.media.evidence);
        RoomSnapshot {
            candidate_policy: self.policy,
            therapist: self.therapist().map(|m| m.stream.link),
            patient: patient.map(|m| m.stream.link),
            admission: patient.map_or(AdmissionState::Waiting, |m| m.admission.state()),
            two_way_established: evidence.is_some(),
            evidence,
            call_started: self.call_started,
            pending_writes: self.held.len(),
            participants: self.members.iter().map(Member::snapshot).collect(),
        }
    }

    pub(crate) fn record(&self) -> RoomRecord {
        let patient = self.members.iter().find(|m| !m.is_therapist());
        let admitted = patient.is_some_and(|m| m.admission == Admission::Admitted);
        RoomRecord {
            version: RECORD_VERSION,
            candidate_policy: self.policy,
            evidence_policy: self.evidence_policy,
            call_started: self.call_started,
            admitted,
            evidence: patient.and_then(|m| m.media.evidence),
            participants: self.members.iter().map(Member::record).collect(),
        }
    }

    pub(crate) fn restore(
        id: Uuid,
        record: &RoomRecord,
        context: RoomContext,
        grace_until: Instant,
        replay_buffer: usize,
    ) -> Room {
        let mut room = Room::new(id, record.candidate_policy, record.evidence_policy);
        room.call_started = record.call_started;
        let has = |role| record.participants.iter().any(|p| p.role == role);
        let in_call = has(Role::Therapist) && has(Role::Patient);
        for p in &record.participants {
            let next_seq = p.next_seq.max(1);
            let therapist = p.role == Role::Therapist;
            // Layout 2 keeps each patient's own; layout 1, the room's (of
            // its one patient).
            let call = p.call.unwrap_or(CallRecord {
                admitted: record.admitted,
                evidence: record.evidence,
            });
            let admitted = in_call && call.admitted;
            room.members.push(Member {
                id: p.id.unwrap_or(Uuid::nil()),
                role: p.role,
                version: p.version.unwrap_or(PROTOCOL_VERSION),
                stream: Stream {
                    link: Presence::Disconnected { grace_until },
                    token: p.token,
                    superseded: p.superseded.iter().copied().collect(),
                    next_seq,
                    released: next_seq - 1,
                    buffer: VecDeque::with_capacity(replay_buffer.min(16)),
                    link_ref: p.link.clone(),
                    restored: true,
                    context: context.clone(),
                },
                admission: if therapist || admitted {
                    Admission::Admitted
                } else {
                    Admission::Waiting
                },
                media: Media {
                    evidence: (admitted && !therapist).then_some(call.evidence).flatten(),
                    ..Media::default()
                },
            });
        }
        room.context = context;
        room
    }
}
