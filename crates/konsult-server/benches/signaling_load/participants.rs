//! The load generator's participants: one Tokio task per WebSocket, a
//! therapist and a patient per room, speaking the protocol of
//! `docs/protocol.md` to Konsult (or its subset to the bare forwarder).
//!
//! Each participant connects from its own loopback address
//! (127.0.0.2–127.0.0.254, so ephemeral ports never run short), sends its
//! hello, and once welcomed reads everything continuously (the server never
//! sees a slow reader) and pings every `welcome.limits.ping_interval_ms`,
//! the first ping at a spread-out offset. With `admit`, a therapist admits
//! its waiting patient, then offers a real SDP on `peer_joined`; the patient
//! answers. The controller drives every participant of a [`Population`]
//! at once through a watch channel: stream candidates at a rate for a
//! window, report, leave.
//!
//! With [`Endpoint::resume`] (the cluster benchmark), a participant whose
//! connection is lost, or closed with a code that allows it (1013, 4003,
//! 4004), reconnects with `hello.resume` to the next server of its
//! endpoint that accepts connections (as a load balancer would send it),
//! and carries on where it was.
//!
//! A streamed candidate is a valid host candidate line whose foundation is
//! `<phase>x<seq>x<send time in µs>` (the port carries the sequence number
//! too): the receiver, in the same process and on the same clock, takes
//! its latency and checks that every candidate of its peer arrives once
//! and in order.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::servers::{Kind, Room};

/// How long one participant may take from its connect to its welcome.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);
/// How long a participant whose connection dropped may take to find a
/// server that resumes it.
const RESUME_PATIENCE: Duration = Duration::from_secs(30);
/// How long it waits between tries.
const RESUME_BACKOFF: Duration = Duration::from_millis(100);
/// How long a participant waits for the server to close after `leave`.
const LEAVE_PATIENCE: Duration = Duration::from_secs(15);
/// The ping interval when the server announces none (the bare forwarder).
const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);
/// `Shared::current_phase` between streaming phases.
const NO_PHASE: u32 = u32::MAX;

/// The clock every send and receive time is taken on.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// What the controller tells every participant of a population.
#[derive(Debug, Clone)]
pub enum Control {
    /// Stay connected, heartbeat, read.
    Hold,
    /// Therapists offer (the bare forwarder has no `peer_joined`).
    Negotiate,
    /// Send candidates at `per_sender_hz` from `start` until `until`.
    Stream {
        phase: u32,
        per_sender_hz: f64,
        start: Instant,
        until: Instant,
    },
    /// Stop sending; hand the latencies received to the population.
    Report,
    /// Leave (Konsult: `leave`; bare: a close frame) and disconnect.
    Leave,
}

/// One participant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Therapist,
    Patient,
}

/// What every participant of a population adds to, read by the controller.
#[derive(Debug, Default)]
pub struct Shared {
    /// When the controller killed a server ([`now_us`]; 0: never): resume
    /// times count from here.
    pub killed_at_us: AtomicU64,
    /// Connections lost or closed for a resume.
    pub dropped: AtomicUsize,
    /// Welcomes with `resumed: true` after a drop.
    pub resumed: AtomicUsize,
    /// Welcomes with `resumed: false` after a drop: the call was lost.
    pub not_resumed: AtomicUsize,
    /// Participants that found no server to resume on within
    /// [`RESUME_PATIENCE`].
    pub gave_up: AtomicUsize,
    /// Server kill → welcome again (µs), one per resume.
    resumes_us: Mutex<Vec<u32>>,
    /// Participants welcomed.
    pub welcomed: AtomicUsize,
    /// Participants whose join failed, and why.
    pub join_failed: AtomicUsize,
    join_failures: Mutex<BTreeMap<String, usize>>,
    /// Participants whose task is running (welcomed, not gone).
    pub alive: AtomicUsize,
    /// Patients told `waiting`.
    pub waiting: AtomicUsize,
    /// Patients told `admitted`.
    pub admitted: AtomicUsize,
    /// Therapists whose offer was answered.
    pub ready_pairs: AtomicUsize,
    /// Welcomes whose `candidate_policy` was not `all`.
    pub not_all_policy: AtomicUsize,
    /// The smallest `limits.rate_per_second` announced (0: none).
    pub rate_per_second: AtomicU64,
    /// `pong`s received.
    pub pongs: AtomicU64,
    /// `error` codes received after the welcome, and other surprises.
    events: Mutex<BTreeMap<String, u64>>,
    /// Participants that left when told to.
    pub left: AtomicUsize,
    /// The streaming phase whose candidates count (others are late).
    current_phase: AtomicU32,
    /// Candidates sent in the current phase.
    pub sent: AtomicU64,
    /// Candidates of the current phase received.
    pub received: AtomicU64,
    /// Candidates of an earlier phase received after it was reported.
    pub late: AtomicU64,
    /// Candidates that did not follow the previous one of the same sender.
    pub out_of_order: AtomicU64,
    /// Participants that reported since the last phase began.
    pub reported: AtomicUsize,
    latencies_us: Mutex<Vec<u32>>,
    /// Therapists' `admit` sent → `peer_joined` received (µs).
    admissions_us: Mutex<Vec<u32>>,
}

impl Shared {
    fn count(map: &Mutex<BTreeMap<String, u64>>, key: String) {
        *map.lock().unwrap().entry(key).or_default() += 1;
    }

    fn event(&self, key: impl Into<String>) {
        Self::count(&self.events, key.into());
    }

    /// Error codes and other surprises, with their counts.
    pub fn events(&self) -> BTreeMap<String, u64> {
        self.events.lock().unwrap().clone()
    }

    /// Why joins failed, with counts.
    pub fn join_failures(&self) -> BTreeMap<String, usize> {
        self.join_failures.lock().unwrap().clone()
    }

    /// Starts a new streaming phase's counts.
    pub fn begin_phase(&self, phase: u32) {
        self.sent.store(0, Relaxed);
        self.received.store(0, Relaxed);
        self.out_of_order.store(0, Relaxed);
        self.reported.store(0, Relaxed);
        self.latencies_us.lock().unwrap().clear();
        self.current_phase.store(phase, Relaxed);
    }

    /// Ends the phase: what arrives from now on is late.
    pub fn end_phase(&self) {
        self.current_phase.store(NO_PHASE, Relaxed);
    }

    /// How long each admission took (µs), `admit` to `peer_joined`.
    pub fn admissions(&self) -> Vec<u32> {
        self.admissions_us.lock().unwrap().clone()
    }

    /// How long each resume took (µs), from the server's kill to the
    /// welcome.
    pub fn resumes(&self) -> Vec<u32> {
        self.resumes_us.lock().unwrap().clone()
    }

    /// Marks now as the moment a server was killed.
    pub fn mark_kill(&self) {
        self.killed_at_us.store(now_us().max(1), Relaxed);
    }

    /// The latencies (µs) reported for the phase.
    pub fn take_latencies(&self) -> Vec<u32> {
        std::mem::take(&mut *self.latencies_us.lock().unwrap())
    }
}

/// A set of rooms joined together, driven by one controller.
pub struct Population {
    /// The rooms' participants (two per room).
    pub size: usize,
    /// What they add up to.
    pub shared: Arc<Shared>,
    control: watch::Sender<Control>,
    tasks: Vec<JoinHandle<()>>,
    /// When the first connect began.
    pub began: Instant,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    /// Konsult or bare.
    pub kind: Kind,
    /// The servers (the nodes of one cluster, or one server).
    pub addrs: Vec<SocketAddr>,
    /// Which server each participant connects to.
    pub placement: Placement,
    /// The therapist's `konsult_session=…` cookie (Konsult).
    pub cookie: Option<String>,
    /// Reconnect with `resume` when a connection is lost.
    pub resume: bool,
}

impl Endpoint {
    /// One server, no resume.
    pub fn single(kind: Kind, addr: SocketAddr, cookie: Option<String>) -> Self {
        Self {
            kind,
            addrs: vec![addr],
            placement: Placement::Same,
            cookie,
            resume: false,
        }
    }
}

/// Which of an endpoint's servers the participants of room `r` (counted
/// over the population) connect to, of `n` servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Both on server `r mod n`.
    Same,
    /// The therapist on `r mod n`, the patient on the next one.
    Cross,
    /// The therapist on `r mod n`, the patient on `(r / n) mod n`: every
    /// combination equally often, as a load balancer without stickiness
    /// would spread them.
    Spread,
}

impl Placement {
    fn server(self, room: usize, role: Role, n: usize) -> usize {
        match (self, role) {
            (_, Role::Therapist) | (Placement::Same, _) => room % n,
            (Placement::Cross, Role::Patient) => (room + 1) % n,
            (Placement::Spread, Role::Patient) => (room / n) % n,
        }
    }
}

impl Population {
    /// Starts a therapist and a patient for each room, `concurrency` joins
    /// in flight (therapist before patient), each from the loopback
    /// address after the previous one's, beginning with `first_source`.
    /// With `admit`, therapists admit their patient and negotiate.
    pub fn join(
        endpoint: &Endpoint,
        rooms: &[Room],
        admit: bool,
        concurrency: usize,
        first_source: usize,
    ) -> Self {
        let shared = Arc::new(Shared::default());
        shared.current_phase.store(NO_PHASE, Relaxed);
        let (control, rx) = watch::channel(Control::Hold);
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let began = Instant::now();
        let mut tasks = Vec::with_capacity(rooms.len() * 2);
        let addrs: Arc<[SocketAddr]> = endpoint.addrs.clone().into();
        for (r, room) in rooms.iter().enumerate() {
            for role in [Role::Therapist, Role::Patient] {
                let index = first_source + tasks.len();
                let spec = Spec {
                    index,
                    role,
                    kind: endpoint.kind,
                    addrs: addrs.clone(),
                    server: endpoint.placement.server(r, role, addrs.len()),
                    resume: endpoint.resume,
                    source: Ipv4Addr::new(127, 0, 0, 2 + (index % 253) as u8),
                    cookie: match (endpoint.kind, role) {
                        (Kind::Konsult, Role::Therapist) => endpoint.cookie.clone(),
                        _ => None,
                    },
                    hello: hello(endpoint.kind, role, room),
                    admit,
                };
                tasks.push(tokio::spawn(participant(
                    spec,
                    shared.clone(),
                    rx.clone(),
                    permits.clone(),
                )));
            }
        }
        Self {
            size: tasks.len(),
            shared,
            control,
            tasks,
            began,
        }
    }

    /// Waits until every join has succeeded or failed; the ramp's length.
    pub async fn joined(&self) -> Duration {
        loop {
            let done = self.shared.welcomed.load(Relaxed) + self.shared.join_failed.load(Relaxed);
            if done >= self.size {
                return self.began.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `done` holds, at most `patience`; whether it did.
    pub async fn wait_for(&self, patience: Duration, done: impl Fn(&Shared) -> bool) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if done(&self.shared) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done(&self.shared)
    }

    /// Tells every participant `control`.
    pub fn tell(&self, control: Control) {
        let _ = self.control.send(control);
    }

    /// Stops the phase, waits for every live participant's report (at most
    /// `patience`), and returns the latencies.
    pub async fn report(&self, patience: Duration) -> Vec<u32> {
        self.shared.end_phase();
        self.tell(Control::Report);
        self.wait_for(patience, |s| {
            s.reported.load(Relaxed) >= s.alive.load(Relaxed)
        })
        .await;
        self.shared.take_latencies()
    }

    /// Everyone leaves; waits for the tasks (at most `patience`, then they
    /// are aborted). Returns how long it took.
    pub async fn leave(self, patience: Duration) -> Duration {
        let began = Instant::now();
        self.tell(Control::Leave);
        let deadline = tokio::time::Instant::now() + patience;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        began.elapsed()
    }
}

/// The hello of one participant.
fn hello(kind: Kind, role: Role, room: &Room) -> String {
    match (kind, role) {
        (Kind::Konsult, Role::Therapist) => format!(
            r#"{{"type":"hello","version":1,"auth":{{"session":{{"consultation":"{}"}}}}}}"#,
            room.consultation
        ),
        (Kind::Konsult, Role::Patient) => serde_json::json!({
            "type": "hello", "version": 1, "auth": {"link_token": room.token}
        })
        .to_string(),
        (Kind::Bare, _) => format!(
            r#"{{"type":"hello","version":1,"key":"{}"}}"#,
            room.consultation
        ),
    }
}

struct Spec {
    index: usize,
    role: Role,
    kind: Kind,
    /// The endpoint's servers, and the one this participant joins first.
    addrs: Arc<[SocketAddr]>,
    server: usize,
    /// Reconnect with `resume` when the connection is lost.
    resume: bool,
    source: Ipv4Addr,
    cookie: Option<String>,
    hello: String,
    admit: bool,
}

type Ws = WebSocketStream<TcpStream>;

/// The parts of a server message the participants look at.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default, borrow)]
    candidate: Option<&'a str>,
    #[serde(default, borrow)]
    code: Option<&'a str>,
    #[serde(default, borrow)]
    reason: Option<&'a str>,
    #[serde(default, borrow)]
    candidate_policy: Option<&'a str>,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    resume_token: Option<&'a str>,
    #[serde(default)]
    resumed: Option<bool>,
}

#[derive(Deserialize)]
struct Limits {
    ping_interval_ms: u64,
    rate_per_second: u64,
}

async fn participant(
    spec: Spec,
    shared: Arc<Shared>,
    control: watch::Receiver<Control>,
    permits: Arc<Semaphore>,
) {
    let joined = {
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let addr = spec.addrs[spec.server];
        tokio::time::timeout(JOIN_PATIENCE, join(&spec, addr, &spec.hello)).await
    };
    let (ws, welcome) = match joined {
        Ok(Ok((ws, welcome))) => {
            if welcome
                .candidate_policy
                .as_deref()
                .is_some_and(|p| p != "all")
            {
                shared.not_all_policy.fetch_add(1, Relaxed);
            }
            if let Some(rate) = welcome.rate_per_second {
                let _ = shared.rate_per_second.fetch_update(Relaxed, Relaxed, |r| {
                    Some(if r == 0 { rate } else { r.min(rate) })
                });
            }
            shared.alive.fetch_add(1, Relaxed);
            shared.welcomed.fetch_add(1, Relaxed);
            (ws, welcome)
        }
        Ok(Err(e)) => {
            join_failed(&shared, format!("{e:#}"));
            return;
        }
        Err(_) => {
            join_failed(&shared, format!("no welcome within {JOIN_PATIENCE:?}"));
            return;
        }
    };
    if let Err(e) = converse(&spec, ws, welcome, &shared, control).await {
        shared.event(format!("{:?} connection failed: {e:#}", spec.role));
    }
    shared.alive.fetch_sub(1, Relaxed);
}

fn join_failed(shared: &Shared, why: String) {
    *shared.join_failures.lock().unwrap().entry(why).or_default() += 1;
    shared.join_failed.fetch_add(1, Relaxed);
}

/// What a welcome said.
struct Welcome {
    ping_interval: Option<Duration>,
    rate_per_second: Option<u64>,
    candidate_policy: Option<String>,
    resume_token: Option<String>,
    resumed: bool,
}

/// Connects, upgrades (the session cookie for a Konsult therapist, no
/// `Origin`), sends the hello and waits for the welcome.
async fn join(spec: &Spec, addr: SocketAddr, hello: &str) -> anyhow::Result<(Ws, Welcome)> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::from((spec.source, 0)))
        .with_context(|| format!("bind {}", spec.source))?;
    let stream = socket.connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{addr}/ws").into_client_request()?;
    if let Some(cookie) = &spec.cookie {
        request
            .headers_mut()
            .insert("cookie", HeaderValue::from_str(cookie)?);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .context("WebSocket upgrade")?;
    ws.send(Message::text(hello.to_owned()))
        .await
        .context("send hello")?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let m: Incoming = serde_json::from_str(text.as_str())
                    .with_context(|| format!("unparseable answer to hello: {text}"))?;
                match m.kind {
                    "welcome" => {
                        return Ok((
                            ws,
                            Welcome {
                                ping_interval: m
                                    .limits
                                    .as_ref()
                                    .map(|l| Duration::from_millis(l.ping_interval_ms)),
                                rate_per_second: m.limits.as_ref().map(|l| l.rate_per_second),
                                candidate_policy: m.candidate_policy.map(str::to_owned),
                                resume_token: m.resume_token.map(str::to_owned),
                                resumed: m.resumed == Some(true),
                            },
                        ))
                    }
                    "error" => bail!("hello refused: {}", m.code.unwrap_or("?")),
                    other => bail!("{other} before welcome"),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                bail!(
                    "closed before welcome ({:?})",
                    frame.map(|f| u16::from(f.code))
                )
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(anyhow!(e).context("before welcome")),
            None => bail!("connection ended before welcome"),
        }
    }
}

/// The SDP offer and answer of a browser-like audio and video call (one
/// of each per pair, at call start).
const OFFER_SDP: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS 3f2e6c1a-5b7d-4c8e-9f0a-1b2c3d4e5f60\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:EEtu\r\na=ice-pwd:2nJ8UPcgbMzDa4V1SaWqBqX1\r\na=ice-options:trickle\r\na=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:3f2e6c1a-5b7d-4c8e-9f0a-1b2c3d4e5f60 8d1f0e2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1234567890 cname:kQm3yVw0aB8cD1eF\r\na=ssrc:1234567890 msid:3f2e6c1a-5b7d-4c8e-9f0a-1b2c3d4e5f60 8d1f0e2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:EEtu\r\na=ice-pwd:2nJ8UPcgbMzDa4V1SaWqBqX1\r\na=ice-options:trickle\r\na=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:1\r\na=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:13 urn:3gpp:video-orientation\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:3f2e6c1a-5b7d-4c8e-9f0a-1b2c3d4e5f60 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=rtcp-fb:102 goog-remb\r\na=rtcp-fb:102 transport-cc\r\na=rtcp-fb:102 ccm fir\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:45 AV1/90000\r\na=rtcp-fb:45 goog-remb\r\na=rtcp-fb:45 transport-cc\r\na=rtcp-fb:45 nack pli\r\na=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\na=ssrc-group:FID 2345678901 3456789012\r\na=ssrc:2345678901 cname:kQm3yVw0aB8cD1eF\r\na=ssrc:3456789012 cname:kQm3yVw0aB8cD1eF\r\n";

const ANSWER_SDP: &str = "v=0\r\no=- 7283946571038457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Qx7p\r\na=ice-pwd:hT5vL2nR8kW4yB1cF6gJ9mZ0\r\na=ice-options:trickle\r\na=fingerprint:sha-256 1C:9E:44:D2:7A:B0:3F:68:E5:12:C4:9D:0B:76:A3:F8:2E:51:C7:94:6B:0D:E3:28:FA:41:95:7C:B2:0E:63:D9\r\na=setup:active\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d 5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:987654321 cname:Zr4tUv9wXy2aBc5d\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Qx7p\r\na=ice-pwd:hT5vL2nR8kW4yB1cF6gJ9mZ0\r\na=ice-options:trickle\r\na=fingerprint:sha-256 1C:9E:44:D2:7A:B0:3F:68:E5:12:C4:9D:0B:76:A3:F8:2E:51:C7:94:6B:0D:E3:28:FA:41:95:7C:B2:0E:63:D9\r\na=setup:active\r\na=mid:1\r\na=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:13 urn:3gpp:video-orientation\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d 2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=rtcp-fb:102 goog-remb\r\na=rtcp-fb:102 transport-cc\r\na=rtcp-fb:102 ccm fir\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:45 AV1/90000\r\na=rtcp-fb:45 goog-remb\r\na=rtcp-fb:45 transport-cc\r\na=rtcp-fb:45 nack pli\r\na=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45\r\na=ssrc-group:FID 4567890123 5678901234\r\na=ssrc:4567890123 cname:Zr4tUv9wXy2aBc5d\r\na=ssrc:5678901234 cname:Zr4tUv9wXy2aBc5d\r\n";

fn offer() -> Message {
    static OFFER: OnceLock<String> = OnceLock::new();
    Message::text(
        OFFER
            .get_or_init(|| serde_json::json!({"type": "offer", "sdp": OFFER_SDP}).to_string())
            .clone(),
    )
}

fn answer() -> Message {
    static ANSWER: OnceLock<String> = OnceLock::new();
    Message::text(
        ANSWER
            .get_or_init(|| serde_json::json!({"type": "answer", "sdp": ANSWER_SDP}).to_string())
            .clone(),
    )
}

fn candidate(phase: u32, seq: u64) -> Message {
    let port = 1024 + seq % 64_000;
    Message::text(format!(
        r#"{{"type":"candidate","candidate":"candidate:{phase}x{seq}x{} 1 udp 2122260223 192.0.2.1 {port} typ host generation 0","sdp_mid":"0","sdp_m_line_index":0}}"#,
        now_us()
    ))
}

/// (phase, seq, send time in µs) from a streamed candidate line.
fn parse_candidate(line: &str) -> Option<(u32, u64, u64)> {
    let foundation = line.strip_prefix("candidate:")?.split(' ').next()?;
    let mut parts = foundation.split('x');
    let phase = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((phase, seq, sent))
}

/// A sender's streaming phase.
struct Streaming {
    phase: u32,
    period: Duration,
    until: Instant,
    seq: u64,
}

/// Close codes after which a client resumes (docs/protocol.md section 12).
fn resumable(code: Option<u16>) -> bool {
    !matches!(code, Some(1000 | 1008 | 4001 | 4002))
}

/// `hello` with `resume`.
fn resume_hello(hello: &str, token: &str, last_seq: u64) -> String {
    let mut hello: serde_json::Value = serde_json::from_str(hello).expect("our own hello");
    hello["resume"] = serde_json::json!({"token": token, "last_seq": last_seq});
    hello.to_string()
}

/// After a drop: reconnects with `resume` to the endpoint's next server
/// that takes the connection (from `server` on), until welcomed or
/// [`RESUME_PATIENCE`] is over.
async fn rejoin(
    spec: &Spec,
    server: &mut usize,
    token: &str,
    last_seq: u64,
    shared: &Shared,
) -> Option<Ws> {
    shared.dropped.fetch_add(1, Relaxed);
    let hello = resume_hello(&spec.hello, token, last_seq);
    let deadline = Instant::now() + RESUME_PATIENCE;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        *server = (*server + 1) % spec.addrs.len();
        let addr = spec.addrs[*server];
        let patience = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(patience, join(spec, addr, &hello)).await {
            Ok(Ok((ws, welcome))) => {
                if welcome.resumed {
                    shared.resumed.fetch_add(1, Relaxed);
                } else {
                    shared.not_resumed.fetch_add(1, Relaxed);
                    shared.event(format!("{:?} welcomed back without resume", spec.role));
                }
                let killed = shared.killed_at_us.load(Relaxed);
                if killed > 0 {
                    let took = now_us().saturating_sub(killed).min(u32::MAX as u64) as u32;
                    shared.resumes_us.lock().unwrap().push(took);
                }
                return Some(ws);
            }
            Ok(Err(e)) => last_error = format!("{e:#}"),
            Err(_) => last_error = "no welcome".to_owned(),
        }
        tokio::time::sleep(RESUME_BACKOFF).await;
    }
    shared.gave_up.fetch_add(1, Relaxed);
    shared.event(format!(
        "{:?} could not resume within {RESUME_PATIENCE:?}: {last_error}",
        spec.role
    ));
    None
}

/// Sends; with resume, a failed send is left to the reading side, which
/// sees the drop and resumes.
async fn write(ws: &mut Ws, message: Message, resume: bool) -> anyhow::Result<()> {
    match ws.send(message).await {
        Err(_) if resume => Ok(()),
        sent => Ok(sent?),
    }
}

/// After the welcome: read, heartbeat, follow the controller.
async fn converse(
    spec: &Spec,
    mut ws: Ws,
    welcome: Welcome,
    shared: &Shared,
    mut control: watch::Receiver<Control>,
) -> anyhow::Result<()> {
    let ping_interval = welcome.ping_interval.unwrap_or(DEFAULT_PING_INTERVAL);
    let resume_token = welcome.resume_token.unwrap_or_default();
    let mut server = spec.server;
    let mut last_seq = 0u64;
    let therapist = spec.role == Role::Therapist;
    // Pings spread over the interval, not all at once.
    let spread = (spec.index as u64).wrapping_mul(2_654_435_761) % 1000;
    let ping = sleep_until((Instant::now() + ping_interval.mul_f64(spread as f64 / 1000.0)).into());
    let send = sleep_until(tokio::time::Instant::now() + Duration::from_secs(3600));
    tokio::pin!(ping, send);
    let mut streaming: Option<Streaming> = None;
    let mut offered = false;
    let mut ready = false;
    let mut expected: Option<(u32, u64)> = None;
    let mut latencies: Vec<u32> = Vec::new();
    let mut admit_sent: Option<u64> = None;
    let leaving = |control: &watch::Receiver<Control>| matches!(*control.borrow(), Control::Leave);
    loop {
        tokio::select! {
            changed = control.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = control.borrow_and_update().clone();
                match now {
                    Control::Hold => streaming = None,
                    Control::Negotiate => {
                        if therapist && !offered {
                            offered = true;
                            write(&mut ws, offer(), spec.resume).await?;
                        }
                    }
                    Control::Stream { phase, per_sender_hz, start, until } => {
                        if ready && per_sender_hz > 0.0 {
                            let period = Duration::from_secs_f64(1.0 / per_sender_hz);
                            // Senders spread over the period.
                            let first = start + period.mul_f64(spread as f64 / 1000.0);
                            send.as_mut().reset(first.into());
                            streaming = Some(Streaming { phase, period, until, seq: 0 });
                        }
                    }
                    Control::Report => {
                        streaming = None;
                        shared.latencies_us.lock().unwrap().append(&mut latencies);
                        shared.reported.fetch_add(1, Relaxed);
                    }
                    Control::Leave => {
                        leave(spec.kind, &mut ws).await;
                        shared.left.fetch_add(1, Relaxed);
                        return Ok(());
                    }
                }
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map(|f| u16::from(f.code));
                        if leaving(&control) {
                            shared.left.fetch_add(1, Relaxed);
                        } else if spec.resume && resumable(code) {
                            match rejoin(spec, &mut server, &resume_token, last_seq, shared).await {
                                Some(again) => {
                                    ws = again;
                                    continue;
                                }
                                None => return Ok(()),
                            }
                        } else {
                            shared.event(format!(
                                "{:?} closed by the server ({code:?})",
                                spec.role,
                            ));
                        }
                        return Ok(());
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None if spec.resume && !leaving(&control) => {
                        match rejoin(spec, &mut server, &resume_token, last_seq, shared).await {
                            Some(again) => {
                                ws = again;
                                continue;
                            }
                            None => return Ok(()),
                        }
                    }
                    Some(Err(e)) => {
                        if !leaving(&control) {
                            shared.event(format!("{:?} connection error: {e}", spec.role));
                        }
                        return Ok(());
                    }
                    None => {
                        if !leaving(&control) {
                            shared.event(format!("{:?} connection ended", spec.role));
                        }
                        return Ok(());
                    }
                };
                let Ok(m) = serde_json::from_str::<Incoming>(text.as_str()) else {
                    shared.event(format!("unparseable server message: {:.80}", text.as_str()));
                    continue;
                };
                if let Some(seq) = m.seq {
                    last_seq = last_seq.max(seq);
                }
                match m.kind {
                    "candidate" => {
                        let received_at = now_us();
                        let Some((phase, seq, sent_at)) = m.candidate.and_then(parse_candidate) else {
                            shared.event("a candidate that was not sent");
                            continue;
                        };
                        if phase != shared.current_phase.load(Relaxed) {
                            shared.late.fetch_add(1, Relaxed);
                            continue;
                        }
                        shared.received.fetch_add(1, Relaxed);
                        latencies.push(received_at.saturating_sub(sent_at).min(u32::MAX as u64) as u32);
                        let next = match expected {
                            Some((p, next)) if p == phase => next,
                            _ => 0,
                        };
                        if seq != next {
                            shared.out_of_order.fetch_add(1, Relaxed);
                        }
                        expected = Some((phase, seq + 1));
                    }
                    "pong" => {
                        shared.pongs.fetch_add(1, Relaxed);
                    }
                    "waiting" => {
                        shared.waiting.fetch_add(1, Relaxed);
                    }
                    "patient_waiting" => {
                        if spec.admit {
                            admit_sent.get_or_insert_with(now_us);
                            write(&mut ws, Message::text(r#"{"type":"admit"}"#), spec.resume).await?;
                        }
                    }
                    "admitted" => {
                        shared.admitted.fetch_add(1, Relaxed);
                    }
                    "peer_joined" => {
                        if let Some(sent) = admit_sent.take() {
                            let took = now_us().saturating_sub(sent).min(u32::MAX as u64) as u32;
                            shared.admissions_us.lock().unwrap().push(took);
                        }
                        if therapist && !offered {
                            offered = true;
                            write(&mut ws, offer(), spec.resume).await?;
                        }
                    }
                    "offer" => {
                        if !therapist {
                            write(&mut ws, answer(), spec.resume).await?;
                            ready = true;
                        }
                    }
                    "answer" => {
                        if therapist && !ready {
                            ready = true;
                            shared.ready_pairs.fetch_add(1, Relaxed);
                        }
                    }
                    "error" => {
                        let code = m.code.unwrap_or("?");
                        shared.event(format!("error {code}"));
                        if code == "admission_check_failed" && spec.admit {
                            write(&mut ws, Message::text(r#"{"type":"admit"}"#), spec.resume).await?;
                        }
                    }
                    "bye" | "denied" | "peer_left" | "replaced" => {
                        if !leaving(&control) {
                            shared.event(format!("{:?} told {} ({})", spec.role, m.kind, m.reason.unwrap_or("-")));
                        }
                    }
                    "media_established" | "media_state" | "chat" | "end_of_candidates" | "ice_restart" => {}
                    other => shared.event(format!("unexpected {other}")),
                }
            }
            () = &mut ping => {
                write(&mut ws, Message::text(r#"{"type":"ping"}"#), spec.resume).await?;
                let next = ping.deadline() + ping_interval;
                ping.as_mut().reset(next);
            }
            () = &mut send, if streaming.is_some() => {
                let Some(s) = streaming.as_mut() else { continue };
                let now = Instant::now();
                if now >= s.until {
                    streaming = None;
                    continue;
                }
                write(&mut ws, candidate(s.phase, s.seq), spec.resume).await?;
                shared.sent.fetch_add(1, Relaxed);
                s.seq += 1;
                let mut next = send.deadline() + s.period;
                // Behind by more than a period: send the next one now, and
                // never a burst (the server's rate limit would drop it).
                if next.into_std() + s.period < now {
                    next = now.into();
                }
                send.as_mut().reset(next);
            }
        }
    }
}

/// Leaves and waits (a while) for the server to close.
async fn leave(kind: Kind, ws: &mut Ws) {
    let sent = match kind {
        Kind::Konsult => ws.send(Message::text(r#"{"type":"leave"}"#)).await,
        Kind::Bare => ws.close(None).await,
    };
    if sent.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LEAVE_PATIENCE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
