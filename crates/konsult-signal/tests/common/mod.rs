//! Deterministic test harness: one [`Hub`], a fake clock, and an inbox per
//! connection. Every input drains the hub's outputs into inboxes, closes,
//! events and pending admission checks, so a test reads like the sequence a
//! client would see. Writes are committed at once unless a test holds them
//! ([`Harness::hold_writes`]), as a store that answers instantly would.
#![allow(dead_code)]

use konsult_protocol::{
    CandidatePolicy, ClientMessage, IceServer, Resume, ResumeToken, Role, ServerBody, ServerMessage,
};
use konsult_signal::{
    AdmissionCheckId, CallEvent, CloseReason, Config, ConnId, EvidencePolicy, Hub, JoinRequest,
    LinkRef, Output, RoomContext, RoomRecord, RoomSnapshot, WriteId, WriteRefused,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A fixed consultation id for single-room tests.
pub const CONSULTATION: Uuid = Uuid::from_u128(0x006b_6f6e_7375_6c74);

pub struct Harness {
    pub hub: Hub,
    /// The fake clock; moves only through [`Harness::advance`].
    pub now: Instant,
    pub consultation: Uuid,
    /// Policy used by [`Harness::join`].
    pub policy: CandidatePolicy,
    next_conn: u64,
    next_token: u64,
    inbox: BTreeMap<ConnId, VecDeque<ServerMessage>>,
    history: BTreeMap<ConnId, Vec<ServerMessage>>,
    /// Every close the hub asked for, in order.
    pub closes: Vec<(ConnId, CloseReason)>,
    /// Every event the hub wrote, in order (all for [`CONSULTATION`] unless
    /// a test uses more rooms).
    pub events: Vec<CallEvent>,
    /// The room record of the latest write (`None`: deleted), as the store
    /// would hold it.
    pub saved: Option<RoomRecord>,
    /// Writes not yet acknowledged (only while [`Harness::hold_writes`]).
    pub pending_writes: VecDeque<(Uuid, WriteId, Vec<CallEvent>, bool)>,
    /// Acknowledge writes as soon as they are emitted.
    pub auto_commit: bool,
    /// Rooms the hub reported closed.
    pub rooms_closed: Vec<Uuid>,
    /// The evidence policy of joins.
    pub evidence_policy: EvidencePolicy,
    /// Whether joins say the call already started in the store.
    pub call_started: bool,
    /// The link of patient joins.
    pub link: Option<LinkRef>,
    /// `hello.features` of joins.
    pub features: konsult_protocol::Features,
    /// The pump's room context of joins.
    pub context: RoomContext,
    /// Admission checks the hub asked for and nobody answered yet.
    pub checks: Vec<(Uuid, AdmissionCheckId)>,
    /// Every output in the order the hub produced it.
    pub log: Vec<Output>,
    /// The role each joined connection joined as.
    pub roles: BTreeMap<ConnId, Role>,
    /// The TURN URLs each role's joins hand out (default: a relay by name).
    pub turn_urls: HashMap<Role, Vec<String>>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A hub with `config`; if it names no relays, the test relays
    /// (203.0.113.1 and 203.0.113.5, the addresses the tests' relay
    /// candidates carry).
    pub fn with_config(mut config: Config) -> Self {
        if config.relays == konsult_signal::filter::Relays::default() {
            config.relays = konsult_signal::filter::Relays::new([
                "203.0.113.1".parse().unwrap(),
                "203.0.113.5".parse().unwrap(),
            ]);
        }
        Harness {
            hub: Hub::new(config),
            now: Instant::now(),
            consultation: CONSULTATION,
            policy: CandidatePolicy::All,
            next_conn: 1,
            next_token: 1,
            inbox: BTreeMap::new(),
            history: BTreeMap::new(),
            closes: Vec::new(),
            events: Vec::new(),
            saved: None,
            pending_writes: VecDeque::new(),
            auto_commit: true,
            rooms_closed: Vec::new(),
            evidence_policy: EvidencePolicy::ClientReported,
            call_started: false,
            link: Some(LinkRef("link-1".into())),
            features: konsult_protocol::Features::default(),
            context: RoomContext::new(*b"clinic-1"),
            checks: Vec::new(),
            log: Vec::new(),
            roles: BTreeMap::new(),
            turn_urls: HashMap::new(),
        }
    }

    pub fn relay_only() -> Self {
        let mut h = Self::new();
        h.policy = CandidatePolicy::RelayOnly;
        h
    }

    fn drain(&mut self) {
        loop {
            while let Some(output) = self.hub.poll_output() {
                self.log.push(output.clone());
                match output {
                    Output::Send { conn, message } => {
                        self.history.entry(conn).or_default().push(message.clone());
                        self.inbox.entry(conn).or_default().push_back(message);
                    }
                    Output::Close { conn, reason } => self.closes.push((conn, reason)),
                    Output::Write {
                        consultation,
                        write,
                        events,
                        room,
                        hold,
                        ..
                    } => {
                        // Tests of many rooms follow the harness's one.
                        if consultation == self.consultation {
                            self.events.extend(events.iter().copied());
                            self.saved = room;
                        }
                        self.pending_writes
                            .push_back((consultation, write, events, hold));
                    }
                    Output::AdmissionCheck {
                        consultation,
                        check,
                        ..
                    } => self.checks.push((consultation, check)),
                    Output::RoomClosed { consultation, .. } => self.rooms_closed.push(consultation),
                }
            }
            if !self.auto_commit || self.pending_writes.is_empty() {
                return;
            }
            while let Some((consultation, write, _, _)) = self.pending_writes.pop_front() {
                self.hub
                    .handle_written(self.now, consultation, write, Ok(()));
            }
        }
    }

    /// This node gives the room up (its lease went to another node).
    pub fn relinquish(&mut self) {
        self.hub.relinquish(self.now, self.consultation);
        self.drain();
    }

    /// Feeds what the relay observed between the two participants.
    pub fn relay_media(
        &mut self,
        patient_to_therapist: konsult_signal::ObservedFlow,
        therapist_to_patient: konsult_signal::ObservedFlow,
    ) {
        self.hub.handle_relay_media(
            self.now,
            self.consultation,
            patient_to_therapist,
            therapist_to_patient,
        );
        self.drain();
    }

    /// The clinic closed the consultation.
    pub fn close_consultation(&mut self) {
        self.hub
            .handle_consultation_closed(self.now, self.consultation);
        self.drain();
    }

    /// The clinic revoked a link.
    pub fn revoke(&mut self, link: &str) {
        self.hub
            .handle_link_revoked(self.now, self.consultation, &LinkRef(link.into()));
        self.drain();
    }

    /// From now on writes wait for [`Harness::commit_next`] or
    /// [`Harness::refuse_next`].
    pub fn hold_writes(&mut self) {
        self.auto_commit = false;
    }

    /// Commits the oldest pending write; returns its events.
    pub fn commit_next(&mut self) -> Vec<CallEvent> {
        let (consultation, write, events, _) =
            self.pending_writes.pop_front().expect("a pending write");
        self.hub
            .handle_written(self.now, consultation, write, Ok(()));
        self.drain();
        events
    }

    /// Refuses the oldest pending write for good (the consultation is over).
    pub fn refuse_next(&mut self) -> Vec<CallEvent> {
        let (consultation, write, events, _) =
            self.pending_writes.pop_front().expect("a pending write");
        self.hub
            .handle_written(self.now, consultation, write, Err(WriteRefused));
        self.drain();
        events
    }

    /// Commits every pending write, in order.
    pub fn commit_all(&mut self) {
        while !self.pending_writes.is_empty() {
            self.commit_next();
        }
    }

    pub fn fresh_token(&mut self) -> ResumeToken {
        let t = ResumeToken::parse(format!("resume-token-{:08}", self.next_token)).unwrap();
        self.next_token += 1;
        t
    }

    pub fn new_conn(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        c
    }

    /// Joins a new connection as `role` with the harness policy.
    pub fn join(&mut self, role: Role) -> ConnId {
        self.join_full(role, self.policy, None)
    }

    /// Joins a new connection presenting a resume.
    pub fn join_resume(&mut self, role: Role, resume: Resume) -> ConnId {
        self.join_full(role, self.policy, Some(resume))
    }

    pub fn join_full(
        &mut self,
        role: Role,
        policy: CandidatePolicy,
        resume: Option<Resume>,
    ) -> ConnId {
        let version = konsult_protocol::PROTOCOL_VERSION;
        self.join_with(role, participant_id(role), version, policy, resume)
    }

    /// Joins a new connection as participant `participant` speaking
    /// protocol `version`.
    pub fn join_as(&mut self, role: Role, participant: uuid::Uuid, version: u32) -> ConnId {
        self.join_with(role, participant, version, self.policy, None)
    }

    pub fn join_with(
        &mut self,
        role: Role,
        participant: uuid::Uuid,
        version: u32,
        policy: CandidatePolicy,
        resume: Option<Resume>,
    ) -> ConnId {
        let conn = self.new_conn();
        let token = self.fresh_token();
        let req = JoinRequest {
            consultation: self.consultation,
            participant,
            role,
            version,
            candidate_policy: policy,
            evidence_policy: self.evidence_policy,
            call_started: self.call_started,
            link: match role {
                Role::Patient => self.link.clone(),
                Role::Therapist => None,
            },
            ice_servers: vec![IceServer {
                urls: self
                    .turn_urls
                    .get(&role)
                    .cloned()
                    .unwrap_or_else(|| vec!["turn:relay.test:3478".into()]),
                username: Some(format!("1700000000:{}", role.as_str())),
                credential: Some("secret".into()),
            }],
            resume_token_for_new: token,
            resume,
            features: self.features.clone(),
            context: self.context.clone(),
        };
        self.hub.handle_join(self.now, conn, req).unwrap();
        self.roles.insert(conn, role);
        self.drain();
        conn
    }

    /// Sends a typed message as its JSON text frame.
    pub fn send(&mut self, conn: ConnId, msg: &ClientMessage) {
        let text = serde_json::to_string(msg).unwrap();
        self.send_raw(conn, &text);
    }

    pub fn send_json(&mut self, conn: ConnId, value: serde_json::Value) {
        self.send_raw(conn, &value.to_string());
    }

    pub fn send_raw(&mut self, conn: ConnId, text: &str) {
        self.hub.handle_text(self.now, conn, text);
        self.drain();
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        self.hub.handle_disconnect(self.now, conn);
        self.drain();
    }

    /// Answers the oldest pending admission check.
    pub fn answer_check(&mut self, result: Result<(), Vec<String>>) {
        assert!(!self.checks.is_empty(), "no admission check pending");
        let (consultation, check) = self.checks.remove(0);
        self.hub
            .handle_admission_check(self.now, consultation, check, result);
        self.drain();
    }

    /// Moves the fake clock forward by `d`, firing every timer that falls
    /// due on the way at its own instant.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..100_000 {
            match self.hub.poll_timeout() {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.hub.handle_timeout(self.now);
                    self.drain();
                }
                _ => {
                    self.now = target;
                    return;
                }
            }
        }
        panic!("timers did not settle");
    }

    /// Advances by `d` in steps of the ping interval, pinging on `alive`
    /// before each step (pongs are discarded), like healthy clients.
    pub fn advance_pinging(&mut self, d: Duration, alive: &[ConnId]) {
        let step = self.hub.config().ping_interval;
        let mut left = d;
        while !left.is_zero() {
            for &c in alive {
                self.send(c, &ClientMessage::Ping {});
                self.discard_pongs(c);
            }
            let s = step.min(left);
            self.advance(s);
            left -= s;
        }
    }

    fn discard_pongs(&mut self, conn: ConnId) {
        if let Some(q) = self.inbox.get_mut(&conn) {
            q.retain(|m| !matches!(m.body, ServerBody::Pong {}));
        }
    }

    /// Takes the unread messages of `conn`.
    pub fn take(&mut self, conn: ConnId) -> Vec<ServerMessage> {
        self.inbox
            .get_mut(&conn)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Takes the unread messages of `conn` and returns their types.
    pub fn types(&mut self, conn: ConnId) -> Vec<&'static str> {
        self.take(conn).iter().map(|m| m.body.type_name()).collect()
    }

    /// Takes the single unread message of `conn`.
    pub fn take_one(&mut self, conn: ConnId) -> ServerMessage {
        let mut msgs = self.take(conn);
        assert_eq!(msgs.len(), 1, "expected one message, got {msgs:?}");
        msgs.remove(0)
    }

    /// Takes the events recorded so far.
    pub fn take_events(&mut self) -> Vec<CallEvent> {
        std::mem::take(&mut self.events)
    }

    /// Takes the closes recorded so far.
    pub fn take_closes(&mut self) -> Vec<(ConnId, CloseReason)> {
        std::mem::take(&mut self.closes)
    }

    /// The highest `seq` `conn` has received, as a client tracks it.
    pub fn last_seq(&self, conn: ConnId) -> u64 {
        self.history
            .get(&conn)
            .and_then(|h| h.iter().map(|m| m.seq).max())
            .unwrap_or(0)
    }

    /// The resume token from the latest `welcome` `conn` received.
    pub fn resume_token(&self, conn: ConnId) -> ResumeToken {
        self.history
            .get(&conn)
            .into_iter()
            .flatten()
            .rev()
            .find_map(|m| match &m.body {
                ServerBody::Welcome(w) => Some(w.resume_token.clone()),
                _ => None,
            })
            .expect("conn got a welcome")
    }

    /// Like [`Harness::resume_for`], `None` if `conn` never got a welcome.
    pub fn try_resume_for(&self, conn: ConnId) -> Option<Resume> {
        let welcomed = self
            .history
            .get(&conn)
            .is_some_and(|h| h.iter().any(|m| matches!(m.body, ServerBody::Welcome(_))));
        welcomed.then(|| self.resume_for(conn))
    }

    /// What `conn` would put in `hello.resume` after a drop.
    pub fn resume_for(&self, conn: ConnId) -> Resume {
        Resume {
            token: self.resume_token(conn),
            last_seq: self.last_seq(conn),
        }
    }

    pub fn room(&self) -> Option<RoomSnapshot> {
        self.hub.room(self.consultation)
    }

    /// Therapist and patient joined, patient admitted; inboxes, events and
    /// closes cleared. Returns (therapist, patient).
    pub fn admitted_pair(&mut self) -> (ConnId, ConnId) {
        let t = self.join(Role::Therapist);
        let p = self.join(Role::Patient);
        self.send(t, &ClientMessage::Admit {});
        self.answer_check(Ok(()));
        assert_eq!(
            self.types(p),
            ["welcome", "waiting", "admitted", "peer_joined"]
        );
        assert_eq!(self.types(t), ["welcome", "patient_waiting", "peer_joined"]);
        self.take_events();
        self.take_closes();
        (t, p)
    }
}

/// The error code of an `error` message (panics on anything else).
pub fn error_code(msg: &ServerMessage) -> konsult_protocol::ErrorCode {
    match &msg.body {
        ServerBody::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn sdp(text: &str) -> konsult_protocol::Sdp {
    konsult_protocol::Sdp::parse(text.to_string()).unwrap()
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The harness's participant id for `role` (one patient per room).
pub fn participant_id(role: Role) -> uuid::Uuid {
    match role {
        Role::Therapist => uuid::Uuid::from_u128(0x7e4a),
        Role::Patient => uuid::Uuid::from_u128(0xba7e),
    }
}
