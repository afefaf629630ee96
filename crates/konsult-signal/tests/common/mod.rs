//! Deterministic test harness: one [`Hub`], a fake clock, and an inbox per
//! connection. Every input drains the hub's outputs into inboxes, closes,
//! events and pending admission checks, so a test reads like the sequence a
//! client would see.
#![allow(dead_code)]

use konsult_protocol::{
    CandidatePolicy, ClientMessage, IceServer, Resume, ResumeToken, Role, ServerBody, ServerMessage,
};
use konsult_signal::{
    AdmissionCheckId, CloseReason, Config, ConnId, Hub, JoinRequest, Output, RoomEvent,
    RoomSnapshot,
};
use std::collections::{BTreeMap, VecDeque};
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
    /// Every room event, in order (all for [`CONSULTATION`] unless a test
    /// uses more rooms).
    pub events: Vec<RoomEvent>,
    /// Admission checks the hub asked for and nobody answered yet.
    pub checks: Vec<(Uuid, AdmissionCheckId)>,
    /// Every output in the order the hub produced it.
    pub log: Vec<Output>,
    /// The role each joined connection joined as.
    pub roles: BTreeMap<ConnId, Role>,
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

    pub fn with_config(config: Config) -> Self {
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
            checks: Vec::new(),
            log: Vec::new(),
            roles: BTreeMap::new(),
        }
    }

    pub fn relay_only() -> Self {
        let mut h = Self::new();
        h.policy = CandidatePolicy::RelayOnly;
        h
    }

    fn drain(&mut self) {
        while let Some(output) = self.hub.poll_output() {
            self.log.push(output.clone());
            match output {
                Output::Send { conn, message } => {
                    self.history.entry(conn).or_default().push(message.clone());
                    self.inbox.entry(conn).or_default().push_back(message);
                }
                Output::Close { conn, reason } => self.closes.push((conn, reason)),
                Output::Event {
                    consultation,
                    event,
                } => {
                    assert_eq!(consultation, self.consultation);
                    self.events.push(event);
                }
                Output::AdmissionCheck {
                    consultation,
                    check,
                } => self.checks.push((consultation, check)),
            }
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
        let conn = self.new_conn();
        let token = self.fresh_token();
        let req = JoinRequest {
            consultation: self.consultation,
            role,
            candidate_policy: policy,
            ice_servers: vec![IceServer {
                urls: vec!["turn:relay.test:3478".into()],
                username: Some(format!("1700000000:{}", role.as_str())),
                credential: Some("secret".into()),
            }],
            resume_token_for_new: token,
            resume,
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
    pub fn take_events(&mut self) -> Vec<RoomEvent> {
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
