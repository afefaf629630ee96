//! Signaling test helpers: store fixtures (clinic with a logged-in admin,
//! an eligible consultation with its join link), a raw WebSocket client,
//! and a `konsult_peer::SignalTransport` over the real `/ws` with explicit
//! cut and resume.
#![allow(dead_code)]

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures_util::{SinkExt, StreamExt};
use konsult_domain::{
    AssessmentCriteria, AssessmentId, ClinicId, ConsultationId, Course, CourseId, PatientId,
    Speciale, TherapistId,
};
use konsult_peer::driver::ice_servers_from_welcome;
use konsult_peer::{
    Call, CallError, IcePolicy, MediaReport, Negotiation, NetworkScope, PeerConfig,
    SignalTransport, VideoConfig,
};
use konsult_protocol::{
    CandidatePolicy, ClientMessage, ResumeToken, ServerBody, ServerMessage, Welcome,
};
use konsult_store::audit::Actor;
use konsult_store::clinical::CourseRecord;
use konsult_store::clinics::NewClinic;
use konsult_store::consultations::{LinkWindow, NewConsultation, ScheduleOutcome};
use konsult_store::patients::PatientData;
use konsult_store::therapists::{NewTherapist, Role};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use super::TestApp;

/// A raw client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for one expected frame. Generous: the machine is
/// shared with other builds.
pub const FRAME_WAIT: StdDuration = StdDuration::from_secs(20);

/// A clinic with an admin who has a dashboard session.
#[derive(Debug, Clone)]
pub struct ClinicFixture {
    /// The clinic.
    pub clinic: ClinicId,
    /// Its admin (also the therapist of its consultations).
    pub therapist: TherapistId,
    /// `konsult_session=<token>`, for the upgrade request.
    pub cookie: String,
    /// The session's CSRF token, for state-changing API requests.
    pub csrf: String,
}

/// Creates a clinic and logs its admin in (through the store).
pub async fn clinic(app: &TestApp, name: &str) -> ClinicFixture {
    let store = &app.state.store;
    let now = app.now();
    let (clinic, therapist) = store
        .create_clinic(
            NewClinic {
                name: name.to_owned(),
                ydernummer: "123456".to_owned(),
                specialer: vec![Speciale::Almen],
            },
            NewTherapist {
                name: format!("Terapeut {name}"),
                email: format!("{}@{}.dk", Uuid::new_v4().simple(), name.to_lowercase()),
                password_hash: "not used: the session is made directly".to_owned(),
                role: Role::Admin,
            },
            now,
        )
        .await
        .unwrap();
    let account = store.therapist(clinic, therapist).await.unwrap();
    let (token, session) = store
        .create_session(&account, now, Duration::hours(8))
        .await
        .unwrap();
    ClinicFixture {
        clinic,
        therapist,
        cookie: format!("konsult_session={token}"),
        csrf: session.csrf_token,
    }
}

/// A state-changing API request as the clinic's admin (session cookie and
/// CSRF header); returns the status and the JSON body, if any.
pub async fn api(
    app: &TestApp,
    fx: &ClinicFixture,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", app.base))
        .header("cookie", &fx.cookie)
        .header("x-csrf-token", &fx.csrf);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An eligible patient's scheduled consultation and its join link.
#[derive(Debug, Clone)]
pub struct Booking {
    /// The consultation.
    pub consultation: ConsultationId,
    /// The join link's token.
    pub token: String,
    /// The patient.
    pub patient: PatientId,
    /// The course.
    pub course: CourseId,
    /// The standing assessment.
    pub assessment: AssessmentId,
    /// When the link opens.
    pub opens_at: DateTime<Utc>,
    /// When it closes.
    pub closes_at: DateTime<Utc>,
}

impl Booking {
    /// The consultation id as a plain UUID.
    pub fn id(&self) -> Uuid {
        self.consultation.as_uuid()
    }
}

/// Books a 30-minute consultation starting `starts_in` from now for a new,
/// eligible patient (in-clinic visit a month ago, all-met assessment). The
/// link opens 15 minutes before the start and closes 30 after the end.
pub async fn book(
    app: &TestApp,
    fx: &ClinicFixture,
    starts_in: Duration,
    relay_only: bool,
) -> Booking {
    // One person, one patient: each booking is a new patient with a CPR
    // number of its own.
    static NEXT_CPR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1000);
    let serial = NEXT_CPR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let store = &app.state.store;
    let now = app.now();
    let actor = Actor::Therapist(fx.therapist);
    let patient = store
        .create_patient(
            fx.clinic,
            actor,
            PatientData {
                name: "Grethe Hansen".into(),
                cpr: Some(format!("120345-{serial:04}")),
                phone: Some("20304050".into()),
                email: None,
            },
            now,
        )
        .await
        .unwrap();
    store
        .record_visit(
            fx.clinic,
            fx.therapist,
            patient.id,
            now - Duration::days(30),
            now,
        )
        .await
        .unwrap();
    let referral = (now - Duration::days(40)).date_naive();
    let course = Course::open(
        CourseId::from_uuid(Uuid::new_v4()),
        patient.id,
        Speciale::Almen,
        None,
        None,
        referral,
        referral.max(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
    )
    .unwrap();
    store
        .open_course(fx.clinic, actor, &CourseRecord::from(&course), now)
        .await
        .unwrap();
    let (_, assessment) = store
        .record_assessment(
            fx.clinic,
            fx.therapist,
            course.id(),
            AssessmentCriteria::ALL_MET,
            now,
        )
        .await
        .unwrap();
    let outcome = store
        .schedule(
            fx.clinic,
            fx.therapist,
            NewConsultation {
                patient: patient.id,
                course: course.id(),
                therapist: fx.therapist,
                start: now + starts_in,
                length_minutes: 30,
                relay_only,
                allow_overlap: true,
            },
            LinkWindow {
                opens_before: Duration::minutes(15),
                closes_after_end: Duration::minutes(30),
            },
            now,
        )
        .await
        .unwrap();
    let ScheduleOutcome::Scheduled { consultation, link } = outcome else {
        panic!("the fixture patient is eligible");
    };
    assert_eq!(consultation.relay_only, relay_only);
    Booking {
        consultation: consultation.id,
        token: link.token,
        patient: patient.id,
        course: course.id(),
        assessment: assessment.id,
        opens_at: link.opens_at,
        closes_at: link.closes_at,
    }
}

/// The stored call events of a consultation, by kind.
pub async fn event_kinds(app: &TestApp, fx: &ClinicFixture, b: &Booking) -> Vec<String> {
    app.state
        .store
        .call_events(fx.clinic, b.consultation)
        .await
        .unwrap()
        .into_iter()
        .map(|(kind, _, _)| kind)
        .collect()
}

/// The stored call events by kind, with a run of `two_way_established`
/// counted once: the first evidence of a call may be followed by a stronger
/// one (client-reported, then relay-observed), and each is recorded. Panics
/// if such a run does not grow strictly stronger.
pub async fn call_event_kinds(app: &TestApp, fx: &ClinicFixture, b: &Booking) -> Vec<String> {
    let events = app
        .state
        .store
        .call_events(fx.clinic, b.consultation)
        .await
        .unwrap();
    let mut kinds: Vec<String> = Vec::new();
    let mut last_evidence: Option<String> = None;
    for (kind, detail, _) in events {
        if kind == "two_way_established" && kinds.last().is_some_and(|k| *k == kind) {
            assert!(
                last_evidence.as_deref() == Some("client_reported")
                    && detail.as_deref() == Some("relay_observed"),
                "evidence recorded again without growing stronger: {last_evidence:?} then {detail:?}"
            );
        } else {
            kinds.push(kind.clone());
        }
        if kind == "two_way_established" {
            last_evidence = detail;
        }
    }
    kinds
}

/// Waits until the stored events are `expected` (they are written just
/// before the frames that announce them; a stronger evidence after the
/// first counts as the same `two_way_established`, see [`call_event_kinds`]).
pub async fn wait_for_events(app: &TestApp, fx: &ClinicFixture, b: &Booking, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    loop {
        let kinds = call_event_kinds(app, fx, b).await;
        if kinds == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stored events {kinds:?}, expected {expected:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// The consultation as stored (read as the clinic's therapist).
pub async fn stored(
    app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
) -> konsult_store::consultations::Consultation {
    app.state
        .store
        .consultation(
            fx.clinic,
            Actor::Therapist(fx.therapist),
            b.consultation,
            app.now(),
        )
        .await
        .unwrap()
}

/// Opens `/ws` with optional `Cookie` and `Origin` headers.
pub async fn connect_with(app: &TestApp, cookie: Option<&str>, origin: Option<&str>) -> Ws {
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", HeaderValue::from_str(cookie).unwrap());
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws
}

/// Opens `/ws` (no origin: a non-browser client).
pub async fn connect(app: &TestApp, cookie: Option<&str>) -> Ws {
    connect_with(app, cookie, None).await
}

/// A patient's hello.
pub fn patient_hello(token: &str) -> String {
    serde_json::json!({"type": "hello", "version": 1, "auth": {"link_token": token}}).to_string()
}

/// A therapist's hello.
pub fn therapist_hello(consultation: Uuid) -> String {
    serde_json::json!({"type": "hello", "version": 1, "auth": {"session": {"consultation": consultation}}})
        .to_string()
}

/// Sends a text frame.
pub async fn send(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::text(text.into())).await.unwrap();
}

/// What the server sent next: a message, or the close (with its code).
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// A server message (parsed with the protocol types).
    Message(ServerMessage),
    /// A close frame with this code, or the stream ended (`None`).
    Closed(Option<u16>),
}

/// The next message or close, within [`FRAME_WAIT`].
pub async fn next(ws: &mut Ws) -> Next {
    loop {
        let frame = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("the server answered in time");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let message: ServerMessage = serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("unparseable server message ({e}): {text}"));
                return Next::Message(message);
            }
            Some(Ok(Message::Close(frame))) => {
                return Next::Closed(frame.map(|f| u16::from(f.code)))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Next::Closed(None),
        }
    }
}

/// The next message; panics on a close.
pub async fn recv(ws: &mut Ws) -> ServerMessage {
    match next(ws).await {
        Next::Message(m) => m,
        Next::Closed(code) => panic!("closed ({code:?}) where a message was expected"),
    }
}

/// The next message's JSON, for asserting on wire field names.
pub async fn recv_json(ws: &mut Ws) -> Value {
    serde_json::to_value(recv(ws).await).unwrap()
}

/// Expects a close with `code` next (after any `pong`s).
pub async fn expect_close(ws: &mut Ws, code: u16) {
    loop {
        match next(ws).await {
            Next::Closed(got) => {
                assert_eq!(got, Some(code), "close code");
                return;
            }
            Next::Message(m) if matches!(m.body, ServerBody::Pong {}) => continue,
            Next::Message(m) => panic!("expected close {code}, got {m:?}"),
        }
    }
}

/// Expects an `error` with `code` next; returns the message body.
pub async fn expect_error(ws: &mut Ws, code: &str) -> Value {
    let json = recv_json(ws).await;
    assert_eq!(json["type"], "error", "{json}");
    assert_eq!(json["code"], code, "{json}");
    assert_eq!(json["seq"], 0, "errors are connection-scoped");
    json
}

/// Expects a message of wire type `kind` next; returns its JSON.
pub async fn expect(ws: &mut Ws, kind: &str) -> Value {
    let json = recv_json(ws).await;
    assert_eq!(json["type"], kind, "{json}");
    json
}

/// Sends a hello and expects `welcome`.
pub async fn join(ws: &mut Ws, hello: String) -> Welcome {
    send(ws, hello).await;
    match recv(ws).await.body {
        ServerBody::Welcome(w) => w,
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// The events of a call that took place and ended: the patient waited,
/// was admitted, media flowed both ways, and the call ended.
pub const WHOLE_CALL: [&str; 4] = [
    "patient_waiting",
    "admitted",
    "two_way_established",
    "ended",
];

/// Sends a hello and expects `error` `code` and close 1008.
pub async fn join_refused(ws: &mut Ws, hello: String, code: &str) -> Value {
    send(ws, hello).await;
    let error = expect_error(ws, code).await;
    expect_close(ws, 1008).await;
    error
}

/// Brings a patient and a therapist into the call: patient waits,
/// therapist joins and admits. Returns both sockets (patient first) and
/// both welcomes, with the admission messages consumed.
pub async fn into_call(
    app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
) -> (Ws, Welcome, Ws, Welcome) {
    into_call_on(app, app, fx, b).await
}

/// The patient in the waiting room, then the therapist joined and told
/// `patient_waiting`: (patient, its welcome, therapist, its welcome).
pub async fn into_waiting(
    app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
) -> (Ws, Welcome, Ws, Welcome) {
    into_waiting_on(app, app, fx, b).await
}

/// As [`into_waiting`], with the therapist connected to `therapist_app`
/// and the patient to `patient_app` (two nodes of a cluster).
pub async fn into_waiting_on(
    therapist_app: &TestApp,
    patient_app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
) -> (Ws, Welcome, Ws, Welcome) {
    let mut patient = connect(patient_app, None).await;
    let pw = join(&mut patient, patient_hello(&b.token)).await;
    expect(&mut patient, "waiting").await;
    let mut therapist = connect(therapist_app, Some(&fx.cookie)).await;
    let tw = join(&mut therapist, therapist_hello(b.id())).await;
    expect(&mut therapist, "patient_waiting").await;
    (patient, pw, therapist, tw)
}

/// As [`into_call`], with the therapist connected to `therapist_app` and
/// the patient to `patient_app` (two nodes of a cluster).
pub async fn into_call_on(
    therapist_app: &TestApp,
    patient_app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
) -> (Ws, Welcome, Ws, Welcome) {
    let (mut patient, pw, mut therapist, tw) =
        into_waiting_on(therapist_app, patient_app, fx, b).await;
    send(&mut therapist, r#"{"type":"admit"}"#).await;
    expect(&mut patient, "admitted").await;
    assert_eq!(
        expect(&mut patient, "peer_joined").await["role"],
        "therapist"
    );
    assert_eq!(
        expect(&mut therapist, "peer_joined").await["role"],
        "patient"
    );
    (patient, pw, therapist, tw)
}

/// A `SignalTransport` over the real `/ws`: what a browser tab would do,
/// plus an explicit cut (no close frame) and resume, and a record of what
/// it carried, for assertions.
pub struct WsTransport {
    ws: Option<Ws>,
    /// Highest sequence number received.
    pub last_seq: u64,
    /// Every message received, in order (pongs excluded).
    pub received: Vec<ServerMessage>,
    /// SDPs and candidate lines received (to check relay-only filtering).
    pub received_sdp: Vec<String>,
    /// The candidate lines received.
    pub received_candidates: Vec<String>,
    /// The `stats` reports sent (to explain a missing `media_established`).
    pub sent_stats: Vec<konsult_protocol::Stats>,
    /// How far [`WsTransport::wait_for`] has looked into `received`.
    cursor: usize,
}

impl WsTransport {
    /// Wraps a joined socket.
    pub fn new(ws: Ws) -> Self {
        Self {
            ws: Some(ws),
            last_seq: 0,
            received: Vec::new(),
            received_sdp: Vec::new(),
            received_candidates: Vec::new(),
            sent_stats: Vec::new(),
            cursor: 0,
        }
    }

    /// Drops the socket without a close frame, as a network failure does.
    pub fn cut(&mut self) {
        self.ws = None;
    }

    /// Reconnects with `hello.resume`; returns the new `welcome`.
    pub async fn resume(
        &mut self,
        app: &TestApp,
        auth_hello: &str,
        token: &ResumeToken,
    ) -> Welcome {
        self.resume_with(app, None, auth_hello, token).await
    }

    /// As [`WsTransport::resume`], with a session cookie (a therapist).
    pub async fn resume_with(
        &mut self,
        app: &TestApp,
        cookie: Option<&str>,
        auth_hello: &str,
        token: &ResumeToken,
    ) -> Welcome {
        let mut hello: Value = serde_json::from_str(auth_hello).unwrap();
        hello["resume"] = serde_json::json!({"token": token.as_str(), "last_seq": self.last_seq});
        let mut ws = connect(app, cookie).await;
        let welcome = join(&mut ws, hello.to_string()).await;
        self.ws = Some(ws);
        welcome
    }

    /// The next message of wire type `kind` after the one the previous
    /// call returned: one already received (possibly consumed by a call's
    /// run loop, which ignores what is not about negotiation), or the next
    /// to arrive.
    pub async fn wait_for(&mut self, kind: &str) -> ServerMessage {
        if let Some(i) = self.received[self.cursor..]
            .iter()
            .position(|m| m.body.type_name() == kind)
        {
            self.cursor += i + 1;
            return self.received[self.cursor - 1].clone();
        }
        self.cursor = self.received.len();
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.recv())
                .await
                .unwrap_or_else(|_| panic!("no {kind} in time; stats sent: {:?}", self.sent_stats))
                .unwrap_or_else(|| panic!("closed before {kind}"));
            self.cursor = self.received.len();
            if message.body.type_name() == kind {
                return message;
            }
        }
    }

    /// Whether a message of wire type `kind` was received (ever).
    pub fn has(&self, kind: &str) -> bool {
        self.received.iter().any(|m| m.body.type_name() == kind)
    }

    /// Sends a raw client message.
    pub async fn send_message(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).unwrap();
        self.ws
            .as_mut()
            .expect("connected")
            .send(Message::text(text))
            .await
            .unwrap();
    }
}

impl SignalTransport for WsTransport {
    async fn send(&mut self, message: ClientMessage) -> Result<(), CallError> {
        let Some(ws) = self.ws.as_mut() else {
            // Cut: a browser would queue or drop; the call goes on.
            return Ok(());
        };
        if let ClientMessage::Stats(stats) = &message {
            self.sent_stats.push(*stats);
        }
        let text = serde_json::to_string(&message).expect("client messages serialize");
        ws.send(Message::text(text))
            .await
            .map_err(|_| CallError::SignalingClosed)
    }

    async fn recv(&mut self) -> Option<ServerMessage> {
        loop {
            let Some(ws) = self.ws.as_mut() else {
                return std::future::pending().await;
            };
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: ServerMessage = serde_json::from_str(text.as_str()).ok()?;
                    if message.seq != 0 {
                        self.last_seq = self.last_seq.max(message.seq);
                    }
                    match &message.body {
                        ServerBody::Pong {} => continue,
                        ServerBody::Offer { sdp } | ServerBody::Answer { sdp } => {
                            self.received_sdp.push(sdp.as_str().to_owned())
                        }
                        ServerBody::Candidate(c) => self
                            .received_candidates
                            .push(c.candidate.as_str().to_owned()),
                        _ => {}
                    }
                    self.received.push(message.clone());
                    return Some(message);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// The peer configuration a browser would derive from `welcome`, on
/// loopback only: the welcome's ICE servers, relay-only ICE when the
/// server says so.
pub fn peer_config(welcome: &Welcome) -> PeerConfig {
    PeerConfig {
        ice_servers: ice_servers_from_welcome(&welcome.ice_servers),
        ice_policy: if welcome.candidate_policy == CandidatePolicy::RelayOnly {
            IcePolicy::Relay
        } else {
            IcePolicy::All
        },
        network: NetworkScope::Loopback,
        video: VideoConfig::default(),
    }
}

/// How long a call may take to get media flowing both ways. Generous: the
/// machine is shared with other builds.
pub const MEDIA_TIMEOUT: StdDuration = StdDuration::from_secs(60);

/// Two headless peers in a consultation, negotiating over the real `/ws`.
pub struct LiveCall {
    /// The patient's peer (answerer).
    pub patient: Call,
    /// The therapist's peer (offerer).
    pub therapist: Call,
    /// The patient's signaling.
    pub p: WsTransport,
    /// The therapist's signaling.
    pub t: WsTransport,
    /// The patient's welcome.
    pub pw: Welcome,
    /// The therapist's welcome.
    pub tw: Welcome,
    /// When the patient was admitted (the reference for time to media).
    pub admitted: std::time::Instant,
}

/// Admits the patient and creates both peers.
pub async fn start_call(app: &TestApp, fx: &ClinicFixture, b: &Booking) -> LiveCall {
    start_call_on(app, app, fx, b).await
}

/// As [`start_call`], with the therapist on `therapist_app` and the patient
/// on `patient_app`.
pub async fn start_call_on(
    therapist_app: &TestApp,
    patient_app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
) -> LiveCall {
    let (p, pw, t, tw) = into_call_on(therapist_app, patient_app, fx, b).await;
    let admitted = std::time::Instant::now();
    let patient = Call::new(peer_config(&pw), Negotiation::Answerer, admitted)
        .await
        .unwrap();
    let therapist = Call::new(peer_config(&tw), Negotiation::Offerer, admitted)
        .await
        .unwrap();
    LiveCall {
        patient,
        therapist,
        p: WsTransport::new(p),
        t: WsTransport::new(t),
        pw,
        tw,
        admitted,
    }
}

impl LiveCall {
    /// Negotiates until both sides see media both ways, then waits for the
    /// server's `media_established` on both. Returns (therapist, patient)
    /// reports.
    pub async fn until_media(&mut self) -> (MediaReport, MediaReport) {
        let (t, p) = tokio::join!(
            self.therapist.run_until_media(&mut self.t, MEDIA_TIMEOUT),
            self.patient.run_until_media(&mut self.p, MEDIA_TIMEOUT),
        );
        let (mut t, mut p) = (t.unwrap(), p.unwrap());
        // The server holds media as two-way only after it flowed for the
        // evidence span (two seconds in tests): keep the call running
        // until both sides heard `media_established`.
        let deadline = tokio::time::Instant::now() + MEDIA_TIMEOUT;
        while !(self.t.has("media_established") && self.p.has("media_established")) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no media_established in time; stats sent: {:?}",
                self.p.sent_stats
            );
            (t, p) = self.run_for(StdDuration::from_millis(500)).await;
        }
        self.t.wait_for("media_established").await;
        self.p.wait_for("media_established").await;
        (t, p)
    }

    /// Keeps both sides running for `duration`; returns (therapist,
    /// patient) reports.
    pub async fn run_for(&mut self, duration: StdDuration) -> (MediaReport, MediaReport) {
        let (t, p) = tokio::join!(
            self.therapist.run_for(&mut self.t, duration),
            self.patient.run_for(&mut self.p, duration),
        );
        (t.unwrap(), p.unwrap())
    }

    /// The therapist ends the consultation; both peers close.
    pub async fn end(mut self) {
        self.t.send_message(&ClientMessage::Leave {}).await;
        self.t.wait_for("bye").await;
        self.p.wait_for("bye").await;
        self.therapist.close().await.unwrap();
        self.patient.close().await.unwrap();
    }
}

/// Prints a side's call figures (shown with `--nocapture`).
pub fn print_figures(label: &str, report: &MediaReport) {
    println!(
        "{label}: time to first media {:?} ms; pair {:?}; received audio {} pkts / video {} pkts ({} frames); sent audio {} / video {} pkts; acknowledged audio {} / video {}",
        report.time_to_first_media_ms,
        report.selected_pair,
        report.received.audio.packets,
        report.received.video.packets,
        report.received.video.frames,
        report.sent.audio.packets,
        report.sent.video.packets,
        report.sent_acknowledged.audio_packets,
        report.sent_acknowledged.video_packets,
    );
}

/// Asserts audio and video flowed both ways for one side.
pub fn assert_two_way(label: &str, report: &MediaReport) {
    assert!(report.media_flowed_both_ways(), "{label}: {report:#?}");
    for flow in [
        report.received.audio,
        report.received.video,
        report.sent.audio,
        report.sent.video,
    ] {
        assert!(flow.packets > 0 && flow.bytes > 0, "{label}: {report:#?}");
    }
    assert!(report.time_to_first_media_ms.is_some(), "{label}");
}

/// Completes an ended consultation with a journal note; returns whether a
/// billing line was made.
pub async fn complete_is_billable(app: &TestApp, fx: &ClinicFixture, b: &Booking) -> bool {
    let note = konsult_domain::JournalNote::parse(konsult_domain::JournalNoteDraft {
        evaluation: Some("Øvelserne virker; fortsæt.".into()),
        ..Default::default()
    })
    .unwrap();
    let done = app
        .state
        .store
        .complete(fx.clinic, fx.therapist, b.consultation, &note, app.now())
        .await
        .unwrap();
    done.line_id.is_some()
}

/// The patient (with the booking's join link) and the therapist (with the
/// clinic's session cookie, admitting) connected as `PeerClient`s over
/// loopback host candidates.
pub async fn connect_pair(
    app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
) -> (konsult_peer::PeerClient, konsult_peer::PeerClient) {
    connect_pair_speaking(app, fx, b, konsult_protocol::PROTOCOL_VERSION).await
}

/// As [`connect_pair`], both speaking protocol `version`.
pub async fn connect_pair_speaking(
    app: &TestApp,
    fx: &ClinicFixture,
    b: &Booking,
    version: u32,
) -> (konsult_peer::PeerClient, konsult_peer::PeerClient) {
    use konsult_peer::{ClientOptions, Credentials, PeerClient};
    let local = ClientOptions {
        network: NetworkScope::Loopback,
        protocol: version,
        ..ClientOptions::default()
    };
    let patient = PeerClient::connect(
        &app.base,
        Credentials::Patient {
            link_token: konsult_protocol::LinkToken::parse(b.token.clone()).unwrap(),
        },
        local.clone(),
    )
    .await
    .unwrap();
    let therapist = PeerClient::connect(
        &app.base,
        Credentials::Therapist {
            cookie: fx.cookie.clone(),
            consultation: b.id(),
        },
        ClientOptions {
            admit: true,
            ..local
        },
    )
    .await
    .unwrap();
    (patient, therapist)
}

/// Whether the relay at `relay` grants an allocation with `server`'s
/// credentials.
pub async fn allocates(relay: std::net::SocketAddr, server: &konsult_protocol::IceServer) -> bool {
    konsult_server::relay::try_allocation(
        &relay.to_string(),
        server.username.as_deref().unwrap(),
        server.credential.as_deref().unwrap(),
    )
    .await
    .is_ok()
}
