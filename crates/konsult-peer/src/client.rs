//! Joining a consultation over the server's WebSocket, like a browser.
//!
//! [`PeerClient::connect`] opens `/ws`, sends `hello` (a patient's link
//! token, or a therapist's consultation id with the session cookie in the
//! upgrade request) and waits for `welcome`. The run methods then follow the
//! session: waiting room, admission (a therapist client can admit the
//! waiting patient itself), `peer_joined` (which creates the [`Call`]),
//! negotiation, statistics, `media_established`. [`PeerClient::leave`] ends
//! it.
//!
//! The socket lives in its own task, which pings, tracks the highest `seq`
//! and, when the connection drops, reconnects with the resume token and
//! `last_seq` and passes on the replayed messages; replays of messages
//! already seen are dropped. The call is not touched by a resume, so media
//! goes on while signaling reconnects.

use std::fmt;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use konsult_protocol::{
    Addressed, Auth, ByeReason, CandidatePolicy, ClientMessage, CloseCode, DeniedReason, ErrorCode,
    Features, Hello, LinkToken, ParticipantState, Resume, ResumeToken, Role, ServerBody,
    ServerMessage, SessionAuth, Welcome, PROTOCOL_VERSION, WS_PATH,
};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::COOKIE;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::config::{IcePolicy, NetworkScope, PeerConfig, VideoConfig};
use crate::driver::{ice_servers_from_welcome, Call, CallError, Negotiation, CHECK_INTERVAL};
use crate::peer::PeerEvent;
use crate::report::MediaReport;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for `welcome` after `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`PeerClient::leave`] waits for `bye`.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Back-off between reconnection attempts; the last value repeats. Short
/// enough that a restarted server has its clients back within about a
/// second of answering again.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(600),
    Duration::from_secs(1),
];
/// How often a therapist client re-sends `admit` when the server's
/// eligibility check did not finish in time.
const MAX_ADMIT_ATTEMPTS: u32 = 3;

/// Who joins.
#[derive(Clone)]
pub enum Credentials {
    /// A patient, with the token of the join link.
    Patient {
        /// The link token.
        link_token: LinkToken,
    },
    /// A therapist, authenticated by the dashboard's session cookie.
    Therapist {
        /// The `Cookie` header value to send in the WebSocket upgrade
        /// request, e.g. `konsult_session=…`.
        cookie: String,
        /// The consultation to run.
        consultation: Uuid,
    },
}

impl fmt::Debug for Credentials {
    // Both are bearer credentials: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Patient { .. } => f.write_str("Patient { link_token: <redacted> }"),
            Credentials::Therapist { consultation, .. } => write!(
                f,
                "Therapist {{ cookie: <redacted>, consultation: {consultation} }}"
            ),
        }
    }
}

impl Credentials {
    fn auth(&self) -> Auth {
        match self {
            Credentials::Patient { link_token } => Auth::LinkToken(link_token.clone()),
            Credentials::Therapist { consultation, .. } => Auth::Session(SessionAuth {
                consultation: *consultation,
            }),
        }
    }

    fn cookie(&self) -> Option<&str> {
        match self {
            Credentials::Patient { .. } => None,
            Credentials::Therapist { cookie, .. } => Some(cookie),
        }
    }
}

/// How a [`PeerClient`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Therapist: admit a waiting patient as soon as one is announced.
    pub admit: bool,
    /// Use relay candidates only, even if the server allows all.
    pub relay_only: bool,
    /// Local interfaces to gather on.
    pub network: NetworkScope,
    /// The synthetic video to send.
    pub video: VideoConfig,
    /// Reconnection attempts after a dropped WebSocket before giving up.
    pub max_reconnects: u32,
    /// The protocol version to speak (1 or 2; docs/protocol.md).
    pub protocol: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            admit: false,
            relay_only: false,
            network: NetworkScope::Any,
            video: VideoConfig::default(),
            max_reconnects: 10,
            protocol: PROTOCOL_VERSION,
        }
    }
}

/// Why a client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not `http(s)://` or `ws(s)://`, or uses TLS,
    /// which this build does not support.
    #[error("unsupported server URL: {0}")]
    InvalidServerUrl(&'static str),
    /// The cookie cannot be sent as an HTTP header value.
    #[error("the cookie is not a valid HTTP header value")]
    InvalidCookie,
    /// The WebSocket could not be opened.
    #[error("could not open the WebSocket: {0}")]
    Connect(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server did not answer `hello` in time.
    #[error("no welcome within {0:?}")]
    HelloTimeout(Duration),
    /// The server refused `hello` (bad credentials, expired link, ...).
    #[error("the server refused the hello: {code}")]
    Rejected {
        /// The error code.
        code: ErrorCode,
    },
    /// The patient was not admitted.
    #[error("entry denied ({reason:?})")]
    Denied {
        /// Why.
        reason: DeniedReason,
        /// Failed eligibility criteria, for `not_eligible`.
        failures: Vec<String>,
    },
    /// The therapist's `admit` failed the eligibility re-check.
    #[error("the patient is not eligible: {failures:?}")]
    NotEligible {
        /// Failed eligibility criteria.
        failures: Vec<String>,
    },
    /// Another connection of this participant took over.
    #[error("replaced by another connection")]
    Replaced,
    /// The session ended (`bye`).
    #[error("the session ended ({0:?})")]
    Ended(ByeReason),
    /// The connection dropped and could not be resumed.
    #[error("the signaling connection was lost")]
    ConnectionLost,
    /// The server sent something this client cannot follow.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The goal was not reached in time.
    #[error("gave up after {waited:?}")]
    Timeout {
        /// How long the client waited.
        waited: Duration,
        /// What had happened by then.
        report: Box<CallReport>,
    },
}

/// What a client saw of its consultation: the result of the run methods,
/// printed as JSON by the CLI. Counters and types only, no addresses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallReport {
    /// The client's role.
    pub role: Role,
    /// Whether the server relays only relay candidates.
    pub relay_only: bool,
    /// Media counters of the current (or last) call; `None` if no call
    /// started.
    pub media: Option<MediaReport>,
    /// Whether media flowed both ways as far as this side can tell.
    pub media_flowed_both_ways: bool,
    /// Whether the server announced `media_established`.
    pub media_established: bool,
    /// Times the signaling connection was resumed.
    pub resumes: u32,
    /// Times the server answered a reconnection with a fresh start
    /// (`resumed: false`).
    pub fresh_starts: u32,
    /// ICE restarts in the current call.
    pub ice_restarts: u32,
}

/// What a run loop waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// This side sees media both ways.
    Media,
    /// That, and the server announced `media_established`.
    Established,
    /// Nothing: run for the whole time.
    Duration,
}

/// From the socket task to the client.
#[derive(Debug)]
enum Inbound {
    Message(ServerMessage),
    /// The socket task stopped; no more messages.
    Closed(ClosedBecause),
}

#[derive(Debug, Clone, Copy)]
enum ClosedBecause {
    /// Reconnection attempts ran out.
    Lost,
    /// The server refused the resume hello.
    Rejected(ErrorCode),
    /// The server closed after a terminal message (`bye`, `denied`,
    /// `replaced`), which the client has received.
    Terminal,
}

/// A participant joined to a consultation; see the module docs.
pub struct PeerClient {
    options: ClientOptions,
    role: Role,
    welcome: Welcome,
    outbox: mpsc::UnboundedSender<Addressed>,
    inbox: mpsc::UnboundedReceiver<Inbound>,
    drop_now: mpsc::UnboundedSender<()>,
    socket_task: JoinHandle<()>,
    call: Option<Call>,
    /// Version 2: the participant of the call (the one peer connection's
    /// other end), and the patient waiting to be admitted.
    partner: Option<Uuid>,
    waiting: Option<Uuid>,
    /// The patient's admission, or the therapist's `admit`: the reference
    /// for the time to first media.
    admitted_at: Option<Instant>,
    admit_attempts: u32,
    media_established: bool,
    resumes: u32,
    fresh_starts: u32,
    /// The last report of a call that ended, kept for [`CallReport`].
    last_media: Option<MediaReport>,
}

impl fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClient")
            .field("role", &self.role)
            .field("in_call", &self.call.is_some())
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// Connects to the server at `server_url` (`http://host:port`, or a
    /// `ws://` URL; `/ws` is appended unless the URL names a path) and
    /// joins with `credentials`. Returns once the server said `welcome`.
    pub async fn connect(
        server_url: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let url = ws_url(server_url)?;
        let hello = Hello {
            version: options.protocol,
            auth: credentials.auth(),
            resume: None,
            features: Features::default(),
        };
        let (socket, welcome) = handshake(&url, credentials.cookie(), hello).await?;
        tracing::info!(role = %welcome.role, "joined");
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (drop_now, drop_rx) = mpsc::unbounded_channel();
        let connection = Connection {
            url,
            credentials,
            resume_token: welcome.resume_token.clone(),
            last_seq: 0,
            ping_interval: Duration::from_millis(welcome.limits.ping_interval_ms.max(1000)),
            max_reconnects: options.max_reconnects,
            version: options.protocol,
            pending: Vec::new(),
            terminal_seen: false,
        };
        let socket_task = tokio::spawn(connection.run(socket, outbox_rx, inbox_tx, drop_rx));
        let mut client = Self {
            options,
            role: welcome.role,
            welcome,
            outbox,
            inbox,
            drop_now,
            socket_task,
            call: None,
            partner: None,
            waiting: None,
            admitted_at: None,
            admit_attempts: 0,
            media_established: false,
            resumes: 0,
            fresh_starts: 0,
            last_media: None,
        };
        client.admit_from_roster();
        Ok(client)
    }

    /// The latest `welcome` (ICE servers, candidate policy, role, ...).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Runs the session until media flows both ways (as seen by this side),
    /// or fails with [`ClientError::Timeout`] after `timeout`.
    pub async fn run_until_media(&mut self, timeout: Duration) -> Result<CallReport, ClientError> {
        self.run(timeout, Goal::Media).await
    }

    /// Like [`run_until_media`](Self::run_until_media), and also waits for
    /// the server's `media_established`.
    pub async fn run_until_established(
        &mut self,
        timeout: Duration,
    ) -> Result<CallReport, ClientError> {
        self.run(timeout, Goal::Established).await
    }

    /// Runs the session for `duration` and reports what happened.
    pub async fn run_for(&mut self, duration: Duration) -> Result<CallReport, ClientError> {
        self.run(duration, Goal::Duration).await
    }

    /// Drops the WebSocket as a network failure would (no close frame);
    /// the client reconnects and resumes by itself. For tests of resume.
    pub fn drop_connection(&self) {
        let _ = self.drop_now.send(());
    }

    /// Sends `leave`, waits briefly for `bye`, and closes the call.
    pub async fn leave(mut self) -> Result<CallReport, ClientError> {
        let _ = self.outbox.send(Addressed::new(ClientMessage::Leave {}));
        let deadline = tokio::time::Instant::now() + LEAVE_TIMEOUT;
        loop {
            tokio::select! {
                inbound = self.inbox.recv() => match inbound {
                    Some(Inbound::Message(m)) if matches!(m.body, ServerBody::Bye { .. }) => break,
                    Some(Inbound::Message(_)) => continue,
                    Some(Inbound::Closed(_)) | None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let report = self.report().await;
        if let Some(call) = self.call.take() {
            call.close().await?;
        }
        Ok(report)
    }

    async fn report(&self) -> CallReport {
        let media = match &self.call {
            Some(call) => Some(call.report().await),
            None => self.last_media.clone(),
        };
        CallReport {
            role: self.role,
            relay_only: self.welcome.candidate_policy == CandidatePolicy::RelayOnly,
            media_flowed_both_ways: media
                .as_ref()
                .is_some_and(MediaReport::media_flowed_both_ways),
            media,
            media_established: self.media_established,
            resumes: self.resumes,
            fresh_starts: self.fresh_starts,
            ice_restarts: self.call.as_ref().map_or(0, Call::ice_restarts),
        }
    }

    async fn run(&mut self, limit: Duration, goal: Goal) -> Result<CallReport, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                inbound = self.inbox.recv() => match inbound {
                    Some(Inbound::Message(message)) => self.on_message(message.body).await?,
                    Some(Inbound::Closed(ClosedBecause::Rejected(code))) => {
                        return Err(ClientError::Rejected { code })
                    }
                    Some(Inbound::Closed(ClosedBecause::Terminal)) => {
                        return Err(ClientError::Protocol("closed without a reason"))
                    }
                    Some(Inbound::Closed(ClosedBecause::Lost)) | None => {
                        return Err(ClientError::ConnectionLost)
                    }
                },
                event = next_call_event(&mut self.call) => self.on_call_event(event).await?,
                _ = check.tick() => {
                    if let Some(call) = &mut self.call {
                        let (report, stats) = call.poll_stats().await;
                        if let Some(stats) = stats {
                            self.send(stats);
                        }
                        let flowing = report.media_flowed_both_ways();
                        let done = match goal {
                            Goal::Media => flowing,
                            Goal::Established => flowing && self.media_established,
                            Goal::Duration => false,
                        };
                        if done {
                            return Ok(self.report().await);
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let report = self.report().await;
                    return match goal {
                        Goal::Duration => Ok(report),
                        _ => Err(ClientError::Timeout { waited: limit, report: Box::new(report) }),
                    };
                }
            }
        }
    }

    fn send(&self, message: ClientMessage) {
        // Version 2 names the partner on what goes to it.
        let to = self
            .partner
            .filter(|_| self.options.protocol > PROTOCOL_VERSION)
            .filter(|_| Addressed::addressable(&message));
        self.send_to(message, to);
    }

    fn send_to(&self, message: ClientMessage, to: Option<Uuid>) {
        // The socket task outlives the client's use of it; if it is gone,
        // the next inbox read reports why.
        let _ = self.outbox.send(Addressed { message, to });
    }

    /// Version 2 therapist: a patient already waiting when it joined is in
    /// its welcome's roster, not announced.
    fn admit_from_roster(&mut self) {
        if !self.options.admit || self.call.is_some() {
            return;
        }
        let waiting = self
            .welcome
            .participants
            .iter()
            .flatten()
            .find(|p| p.role == Role::Patient && p.state == ParticipantState::Waiting);
        if let Some(patient) = waiting {
            self.waiting = Some(patient.id);
            self.admit_attempts = 1;
            self.admitted_at = Some(Instant::now());
            self.admit();
        }
    }

    /// Therapist: admits the waiting patient (by id in version 2).
    fn admit(&self) {
        self.send_to(ClientMessage::Admit {}, self.waiting);
    }

    async fn on_message(&mut self, body: ServerBody) -> Result<(), ClientError> {
        tracing::debug!(message = body.type_name(), "server message");
        match body {
            ServerBody::Welcome(welcome) => {
                // Only after a reconnection: the first one came in `connect`.
                if welcome.resumed {
                    self.resumes += 1;
                    tracing::info!(resumes = self.resumes, "signaling resumed");
                    if self.options.admit && self.admit_attempts > 0 && self.call.is_none() {
                        // An admit sent just before the server went away may
                        // be lost with it: ask again (a patient no longer
                        // waiting makes the server answer `wrong_state`).
                        self.admit();
                    }
                } else {
                    self.fresh_starts += 1;
                    tracing::info!("signaling restarted fresh; dropping the call");
                    self.end_call().await?;
                    self.admitted_at = None;
                    self.media_established = false;
                }
                self.welcome = welcome;
                if !self.welcome.resumed {
                    self.admit_from_roster();
                }
            }
            ServerBody::PatientWaiting {} if self.options.admit => {
                self.admit_attempts = 1;
                self.admitted_at = Some(Instant::now());
                self.admit();
            }
            ServerBody::Admitted {} => self.admitted_at = Some(Instant::now()),
            ServerBody::ParticipantJoined { participant } => match participant.state {
                ParticipantState::Waiting if self.options.admit => {
                    self.waiting = Some(participant.id);
                    self.admit_attempts = 1;
                    self.admitted_at = Some(Instant::now());
                    self.admit();
                }
                ParticipantState::Waiting => {}
                ParticipantState::Admitted => {
                    // One peer connection: with the latest participant in
                    // the call.
                    self.partner = Some(participant.id);
                    self.start_call().await?;
                }
            },
            ServerBody::ParticipantLeft { participant } if self.partner == Some(participant) => {
                tracing::info!("the other participant left");
                self.end_call().await?;
            }
            ServerBody::PeerJoined { .. } => self.start_call().await?,
            ServerBody::PeerLeft { .. } => {
                tracing::info!("the other participant left");
                self.end_call().await?;
            }
            ServerBody::MediaEstablished {} => self.media_established = true,
            ServerBody::Denied(denied) => {
                return Err(ClientError::Denied {
                    reason: denied.reason,
                    failures: denied.failures,
                })
            }
            ServerBody::Replaced {} => return Err(ClientError::Replaced),
            ServerBody::Bye { reason } => return Err(ClientError::Ended(reason)),
            ServerBody::Error(error) => match error.code {
                ErrorCode::NotEligible => {
                    return Err(ClientError::NotEligible {
                        failures: error.failures,
                    })
                }
                ErrorCode::AdmissionCheckFailed
                    if self.options.admit && self.admit_attempts < MAX_ADMIT_ATTEMPTS =>
                {
                    self.admit_attempts += 1;
                    self.admit();
                }
                code => tracing::warn!(%code, "the server refused a message"),
            },
            body @ (ServerBody::Offer { .. }
            | ServerBody::Answer { .. }
            | ServerBody::Candidate(_)
            | ServerBody::EndOfCandidates(_)
            | ServerBody::IceRestart {}) => {
                if let Some(call) = &mut self.call {
                    for message in call.handle_signal(body).await? {
                        self.send(message);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A (new) peer connection with the other side of the call.
    async fn start_call(&mut self) -> Result<(), ClientError> {
        self.admit_attempts = 0;
        self.end_call().await?;
        self.media_established = false;
        let started = *self.admitted_at.get_or_insert_with(Instant::now);
        let mut call = Call::new(
            self.peer_config(),
            Negotiation::for_role(self.role),
            started,
        )
        .await?;
        for message in call.start().await? {
            self.send(message);
        }
        self.call = Some(call);
        Ok(())
    }

    async fn on_call_event(&mut self, event: PeerEvent) -> Result<(), ClientError> {
        if let Some(call) = &mut self.call {
            for message in call.handle_event(event).await? {
                self.send(message);
            }
        }
        Ok(())
    }

    async fn end_call(&mut self) -> Result<(), ClientError> {
        if let Some(call) = self.call.take() {
            self.last_media = Some(call.report().await);
            call.close().await?;
        }
        Ok(())
    }

    fn peer_config(&self) -> PeerConfig {
        let relay =
            self.options.relay_only || self.welcome.candidate_policy == CandidatePolicy::RelayOnly;
        PeerConfig {
            ice_servers: ice_servers_from_welcome(&self.welcome.ice_servers),
            ice_policy: if relay {
                IcePolicy::Relay
            } else {
                IcePolicy::All
            },
            network: self.options.network,
            video: self.options.video,
        }
    }
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        self.socket_task.abort();
    }
}

/// The next event of the call, or never if there is no call.
async fn next_call_event(call: &mut Option<Call>) -> PeerEvent {
    match call {
        Some(call) => match call.next_event().await {
            Some(event) => event,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The `/ws` URL for a server URL.
fn ws_url(server: &str) -> Result<String, ClientError> {
    let rest = if let Some(rest) = server.strip_prefix("http://") {
        rest
    } else if let Some(rest) = server.strip_prefix("ws://") {
        rest
    } else if server.starts_with("https://") || server.starts_with("wss://") {
        return Err(ClientError::InvalidServerUrl(
            "TLS (https/wss) is not supported by this build",
        ));
    } else {
        return Err(ClientError::InvalidServerUrl(
            "expected http://host:port or ws://host:port",
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(ClientError::InvalidServerUrl("no host"));
    }
    match rest.split_once('/') {
        Some((host, path)) if !path.is_empty() => Ok(format!("ws://{host}/{path}")),
        Some((host, _)) => Ok(format!("ws://{host}{WS_PATH}")),
        None => Ok(format!("ws://{rest}{WS_PATH}")),
    }
}

/// Opens the WebSocket, sends `hello` and waits for `welcome`.
async fn handshake(
    url: &str,
    cookie: Option<&str>,
    hello: Hello,
) -> Result<(Socket, Welcome), ClientError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Connect(Box::new(e)))?;
    if let Some(cookie) = cookie {
        let value = HeaderValue::from_str(cookie).map_err(|_| ClientError::InvalidCookie)?;
        request.headers_mut().insert(COOKIE, value);
    }
    let attempt = async {
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| ClientError::Connect(Box::new(e)))?;
        socket
            .send(Message::text(to_json(&ClientMessage::Hello(hello))))
            .await
            .map_err(|e| ClientError::Connect(Box::new(e)))?;
        while let Some(frame) = socket.next().await {
            let frame = frame.map_err(|e| ClientError::Connect(Box::new(e)))?;
            let Message::Text(text) = frame else {
                continue;
            };
            let message: ServerMessage = serde_json::from_str(text.as_str())
                .map_err(|_| ClientError::Protocol("unparseable answer to hello"))?;
            match message.body {
                ServerBody::Welcome(welcome) => return Ok((socket, welcome)),
                ServerBody::Error(error) => return Err(ClientError::Rejected { code: error.code }),
                _ => return Err(ClientError::Protocol("hello answered without welcome")),
            }
        }
        Err(ClientError::Protocol("closed before welcome"))
    };
    tokio::time::timeout(HELLO_TIMEOUT, attempt)
        .await
        .map_err(|_| ClientError::HelloTimeout(HELLO_TIMEOUT))?
}

fn to_json(message: &ClientMessage) -> String {
    // Client messages hold strings, numbers and UUIDs only.
    serde_json::to_string(message).expect("client messages always serialize")
}

/// The socket task's state: everything needed to resume.
struct Connection {
    url: String,
    credentials: Credentials,
    resume_token: ResumeToken,
    last_seq: u64,
    ping_interval: Duration,
    max_reconnects: u32,
    /// The protocol version of its hellos.
    version: u32,
    /// Messages that could not be sent before the connection dropped.
    pending: Vec<Addressed>,
    /// Whether `bye`, `denied` or `replaced` arrived: the close that
    /// follows is final.
    terminal_seen: bool,
}

/// How one socket ended.
enum SocketEnd {
    /// The client is gone.
    ClientDone,
    /// Closed for good by the server.
    Final,
    /// Dropped: resume.
    Dropped,
}

impl Connection {
    async fn run(
        mut self,
        mut socket: Socket,
        mut outbox: mpsc::UnboundedReceiver<Addressed>,
        inbox: mpsc::UnboundedSender<Inbound>,
        mut drop_now: mpsc::UnboundedReceiver<()>,
    ) {
        loop {
            match self
                .pump(&mut socket, &mut outbox, &inbox, &mut drop_now)
                .await
            {
                SocketEnd::ClientDone => {
                    let _ = socket.close(None).await;
                    return;
                }
                SocketEnd::Final => {
                    let _ = inbox.send(Inbound::Closed(ClosedBecause::Terminal));
                    return;
                }
                SocketEnd::Dropped => {
                    drop(socket);
                    match self.reconnect(&inbox).await {
                        Ok(resumed) => socket = resumed,
                        Err(because) => {
                            let _ = inbox.send(Inbound::Closed(because));
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Moves messages between one socket and the client until it ends.
    async fn pump(
        &mut self,
        socket: &mut Socket,
        outbox: &mut mpsc::UnboundedReceiver<Addressed>,
        inbox: &mpsc::UnboundedSender<Inbound>,
        drop_now: &mut mpsc::UnboundedReceiver<()>,
    ) -> SocketEnd {
        for message in std::mem::take(&mut self.pending) {
            if socket.send(Message::text(message.to_json())).await.is_err() {
                self.pending.push(message);
                return SocketEnd::Dropped;
            }
        }
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if !self.deliver(text.as_str(), inbox) {
                            return SocketEnd::ClientDone;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map(|f| u16::from(f.code));
                        return self.end_for(code);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return self.end_for(None),
                },
                message = outbox.recv() => match message {
                    Some(message) => {
                        if socket.send(Message::text(message.to_json())).await.is_err() {
                            self.pending.push(message);
                            return self.end_for(None);
                        }
                    }
                    None => return SocketEnd::ClientDone,
                },
                _ = ping.tick() => {
                    if socket.send(Message::text(to_json(&ClientMessage::Ping {}))).await.is_err() {
                        return self.end_for(None);
                    }
                }
                Some(()) = drop_now.recv() => {
                    tracing::info!("dropping the signaling connection on request");
                    return SocketEnd::Dropped;
                }
            }
        }
    }

    /// Passes one server frame on, dropping replays of messages already
    /// passed on. False when the client is gone.
    fn deliver(&mut self, text: &str, inbox: &mpsc::UnboundedSender<Inbound>) -> bool {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(_) => {
                // A newer server's message type; the protocol says to ignore
                // what we do not know.
                tracing::warn!("ignoring a server message this client cannot parse");
                return true;
            }
        };
        if message.seq != 0 {
            if message.seq <= self.last_seq {
                return true;
            }
            self.last_seq = message.seq;
        }
        if matches!(
            message.body,
            ServerBody::Bye { .. } | ServerBody::Denied(_) | ServerBody::Replaced {}
        ) {
            self.terminal_seen = true;
        }
        inbox.send(Inbound::Message(message)).is_ok()
    }

    fn end_for(&self, close_code: Option<u16>) -> SocketEnd {
        let final_code = matches!(
            close_code,
            Some(CloseCode::BYE | CloseCode::REJECTED | CloseCode::REPLACED | CloseCode::DENIED)
        );
        if self.terminal_seen || final_code {
            SocketEnd::Final
        } else {
            SocketEnd::Dropped
        }
    }

    /// Reconnects with resume, with back-off. The `welcome` goes to the
    /// client, which decides what a fresh start means for the call.
    async fn reconnect(
        &mut self,
        inbox: &mpsc::UnboundedSender<Inbound>,
    ) -> Result<Socket, ClosedBecause> {
        for attempt in 0..self.max_reconnects {
            let wait = BACKOFF[(attempt as usize).min(BACKOFF.len() - 1)];
            tokio::time::sleep(wait).await;
            let hello = Hello {
                version: self.version,
                auth: self.credentials.auth(),
                resume: Some(Resume {
                    token: self.resume_token.clone(),
                    last_seq: self.last_seq,
                }),
                features: Features::default(),
            };
            match handshake(&self.url, self.credentials.cookie(), hello).await {
                Ok((socket, welcome)) => {
                    tracing::info!(attempt, resumed = welcome.resumed, "reconnected");
                    if !welcome.resumed {
                        // A fresh start: sequence numbers of the old
                        // session mean nothing now, nor do unsent messages.
                        self.last_seq = 0;
                        self.pending.clear();
                    }
                    self.resume_token = welcome.resume_token.clone();
                    let _ = inbox.send(Inbound::Message(ServerMessage::unsequenced(
                        ServerBody::Welcome(welcome),
                    )));
                    return Ok(socket);
                }
                Err(ClientError::Rejected { code }) => return Err(ClosedBecause::Rejected(code)),
                Err(error) => tracing::debug!(attempt, %error, "reconnection failed"),
            }
        }
        Err(ClosedBecause::Lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_ws_urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            ws_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            ws_url("ws://localhost:1/ws").unwrap(),
            "ws://localhost:1/ws"
        );
        assert_eq!(
            ws_url("ws://localhost:1/other").unwrap(),
            "ws://localhost:1/other"
        );
        assert!(matches!(
            ws_url("https://x"),
            Err(ClientError::InvalidServerUrl(_))
        ));
        assert!(matches!(
            ws_url("ftp://x"),
            Err(ClientError::InvalidServerUrl(_))
        ));
        assert!(matches!(
            ws_url("http://"),
            Err(ClientError::InvalidServerUrl(_))
        ));
        assert!(matches!(
            ws_url("127.0.0.1:80"),
            Err(ClientError::InvalidServerUrl(_))
        ));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let patient = Credentials::Patient {
            link_token: LinkToken::parse("secret-link-token".into()).unwrap(),
        };
        let therapist = Credentials::Therapist {
            cookie: "konsult_session=secret-cookie".into(),
            consultation: Uuid::nil(),
        };
        let shown = format!("{patient:?} {therapist:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains(&Uuid::nil().to_string()));
    }
}
