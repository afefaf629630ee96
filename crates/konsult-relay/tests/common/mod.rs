//! Shared harness for the relay's integration tests: a relay on 127.0.0.1,
//! a UDP echo peer, a `turn`-crate client, and a raw STUN client that shows
//! the exact error codes a relay answers with.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use konsult_relay::{Reference, Relay, RelayConfig, TurnCredentials};
use secrecy::{ExposeSecret, SecretString};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageType, Method, Setter, CLASS_ERROR_RESPONSE, CLASS_INDICATION,
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH, METHOD_SEND,
};
use stun::textattrs::TextAttribute;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use turn::client::{Client, ClientConfig};
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

pub const REALM: &str = "konsult.test";
pub const SECRET: &str = "relay-integration-test-secret";

/// How long a test waits for something that should happen. Generous: the
/// machine is shared and loaded; a passing run never waits this long.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How long a test waits to be sure something does *not* happen.
pub const QUIET: Duration = Duration::from_millis(700);

pub fn secret() -> SecretString {
    SecretString::from(SECRET)
}

pub fn config(allow_loopback: bool) -> RelayConfig {
    let mut c = RelayConfig::new(secret());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.realm = REALM.to_owned();
    c.peer_policy.allow_loopback = allow_loopback;
    c
}

pub async fn start_relay(allow_loopback: bool) -> Relay {
    Relay::start(config(allow_loopback))
        .await
        .expect("relay starts on 127.0.0.1")
}

pub fn issue(reference: &str, ttl_secs: u64) -> TurnCredentials {
    issue_at(reference, SystemTime::now(), ttl_secs)
}

pub fn issue_at(reference: &str, now: SystemTime, ttl_secs: u64) -> TurnCredentials {
    TurnCredentials::issue(
        &secret(),
        &Reference::parse(reference).unwrap(),
        now,
        Duration::from_secs(ttl_secs),
    )
    .unwrap()
}

/// A UDP echo server on 127.0.0.1 that counts what it received; stops when
/// dropped.
pub struct EchoPeer {
    pub addr: SocketAddr,
    pub received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl EchoPeer {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `turn`-crate client bound to 127.0.0.1, listening for responses.
pub async fn turn_client(server: SocketAddr, username: &str, password: &str) -> Client {
    let conn = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.to_owned(),
        password: password.to_owned(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    client
}

pub async fn turn_client_for(server: SocketAddr, creds: &TurnCredentials) -> Client {
    turn_client(
        server,
        &creds.username().to_string(),
        creds.password().expose_secret(),
    )
    .await
}

/// An error response's code, or the success of a raw request.
pub type Outcome<T> = Result<T, u16>;

/// The long-term credentials of an allocation made by [`RawTurn`].
#[derive(Clone)]
pub struct Session {
    username: String,
    realm: String,
    nonce: String,
    integrity: MessageIntegrity,
    pub relayed: SocketAddr,
}

impl Session {
    /// The same credentials with another NONCE.
    pub fn with_nonce(&self, nonce: &str) -> Session {
        Session {
            nonce: nonce.to_owned(),
            ..self.clone()
        }
    }
}

/// How a [`RawTurn`] reaches the relay.
enum Link {
    Udp {
        socket: UdpSocket,
        server: SocketAddr,
    },
    /// TCP or TLS: frames back to back, ChannelData padded to four bytes.
    Stream {
        reader: tokio::sync::Mutex<StreamReader>,
        writer: tokio::sync::Mutex<WriteHalf<Box<dyn Duplex>>>,
        local: SocketAddr,
    },
}

/// A stream's read half and the bytes read but not yet framed.
type StreamReader = (ReadHalf<Box<dyn Duplex>>, Vec<u8>);

/// A byte stream to the relay.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// A minimal TURN client over one UDP socket or one stream, built from
/// `stun` messages, so tests can see the exact error code of every answer.
pub struct RawTurn {
    link: Link,
}

impl RawTurn {
    pub async fn new(server: SocketAddr) -> Self {
        let local = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        Self {
            link: Link::Udp {
                socket: UdpSocket::bind(local).await.unwrap(),
                server,
            },
        }
    }

    /// A client over TCP to `server`.
    pub async fn tcp(server: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(server).await.unwrap();
        let local = stream.local_addr().unwrap();
        Self::over(Box::new(stream), local)
    }

    /// A client over any stream (e.g. TLS), whose local address is `local`.
    pub fn over(stream: Box<dyn Duplex>, local: SocketAddr) -> Self {
        let (reader, writer) = tokio::io::split(stream);
        Self {
            link: Link::Stream {
                reader: tokio::sync::Mutex::new((reader, Vec::new())),
                writer: tokio::sync::Mutex::new(writer),
                local,
            },
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        match &self.link {
            Link::Udp { socket, .. } => socket.local_addr().unwrap(),
            Link::Stream { local, .. } => *local,
        }
    }

    /// Sends one frame as it is (over a stream, ChannelData must come
    /// padded).
    pub async fn send_frame(&self, frame: &[u8]) -> anyhow::Result<()> {
        match &self.link {
            Link::Udp { socket, server } => {
                socket.send_to(frame, *server).await?;
            }
            Link::Stream { writer, .. } => {
                writer.lock().await.write_all(frame).await?;
            }
        }
        Ok(())
    }

    /// The next frame from the relay, before `deadline`; over a stream,
    /// ChannelData comes with its padding.
    pub async fn recv_frame(&self, deadline: tokio::time::Instant) -> Option<Vec<u8>> {
        match &self.link {
            Link::Udp { socket, .. } => {
                let mut buf = vec![0u8; 65_600];
                let (n, _) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                buf.truncate(n);
                Some(buf)
            }
            Link::Stream { reader, .. } => {
                let mut guard = reader.lock().await;
                let (reader, buffer) = &mut *guard;
                loop {
                    if buffer.len() >= 4 {
                        let length = usize::from(u16::from_be_bytes([buffer[2], buffer[3]]));
                        let total = if buffer[0] >> 6 == 1 {
                            (4 + length).next_multiple_of(4)
                        } else {
                            20 + length
                        };
                        if buffer.len() >= total {
                            return Some(buffer.drain(..total).collect());
                        }
                    }
                    let mut chunk = vec![0u8; 65_600];
                    let n = tokio::time::timeout_at(deadline, reader.read(&mut chunk))
                        .await
                        .ok()?
                        .ok()?;
                    if n == 0 {
                        return None;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// Whether the relay closed the stream (always false over UDP).
    pub async fn closed_within(&self, within: Duration) -> bool {
        let Link::Stream { reader, .. } = &self.link else {
            return false;
        };
        let mut guard = reader.lock().await;
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(within, guard.0.read(&mut chunk)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// Sends `request` and returns the response with its transaction id,
    /// retransmitting a few times over UDP within [`PATIENCE`].
    pub async fn transact(&self, request: &Message) -> anyhow::Result<Message> {
        let attempts = match self.link {
            Link::Udp { .. } => 5,
            Link::Stream { .. } => 1,
        };
        for _ in 0..attempts {
            self.send_frame(&request.raw).await?;
            let deadline = tokio::time::Instant::now() + PATIENCE / attempts;
            while let Some(frame) = self.recv_frame(deadline).await {
                let mut m = Message {
                    raw: frame,
                    ..Default::default()
                };
                if m.decode().is_ok() && m.transaction_id == request.transaction_id {
                    return Ok(m);
                }
            }
        }
        bail!("no response from the relay")
    }

    /// Allocate with the long-term credential dance: an unauthenticated
    /// request, the 401 challenge, then the signed request.
    pub async fn allocate(
        &self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Outcome<Session>> {
        let (session, response) = self.allocate_with(username, password, Vec::new()).await?;
        if let Some(code) = error_code(&response) {
            return Ok(Err(code));
        }
        Ok(Ok(session))
    }

    /// Like [`RawTurn::allocate`] with `extra` attributes in the signed
    /// request; returns the session (its `relayed` set from the first
    /// XOR-RELAYED-ADDRESS of a success) and the answer as it came.
    pub async fn allocate_with(
        &self,
        username: &str,
        password: &str,
        extra: Vec<Box<dyn Setter>>,
    ) -> anyhow::Result<(Session, Message)> {
        let first = build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            }),
            Box::new(FINGERPRINT),
        ])?;
        let challenge = self.transact(&first).await?;
        if error_code(&challenge) != Some(401) {
            bail!("expected a 401 challenge, got {:?}", challenge.typ);
        }
        let realm = TextAttribute::get_from_as(&challenge, ATTR_REALM)?.text;
        let nonce = TextAttribute::get_from_as(&challenge, ATTR_NONCE)?.text;
        let integrity = MessageIntegrity::new_long_term_integrity(
            username.to_owned(),
            realm.clone(),
            password.to_owned(),
        );
        let mut session = Session {
            username: username.to_owned(),
            realm,
            nonce,
            integrity,
            relayed: "0.0.0.0:0".parse().unwrap(),
        };
        let mut attrs: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })];
        attrs.extend(extra);
        let response = self.signed(&session, METHOD_ALLOCATE, attrs).await?;
        let mut relayed = RelayedAddress::default();
        if error_code(&response).is_none() && relayed.get_from(&response).is_ok() {
            session.relayed = SocketAddr::new(relayed.ip, relayed.port);
        }
        Ok((session, response))
    }

    pub async fn create_permission(
        &self,
        session: &Session,
        peer: SocketAddr,
    ) -> anyhow::Result<Outcome<()>> {
        let response = self
            .signed(session, METHOD_CREATE_PERMISSION, vec![peer_attr(peer)])
            .await?;
        Ok(outcome(&response))
    }

    pub async fn channel_bind(
        &self,
        session: &Session,
        peer: SocketAddr,
        channel: u16,
    ) -> anyhow::Result<Outcome<()>> {
        let response = self
            .signed(
                session,
                METHOD_CHANNEL_BIND,
                vec![Box::new(ChannelNumber(channel)), peer_attr(peer)],
            )
            .await?;
        Ok(outcome(&response))
    }

    /// Refresh with `lifetime`; 0 deletes the allocation.
    pub async fn refresh(
        &self,
        session: &Session,
        lifetime: Duration,
    ) -> anyhow::Result<Outcome<()>> {
        let response = self
            .signed(session, METHOD_REFRESH, vec![Box::new(Lifetime(lifetime))])
            .await?;
        Ok(outcome(&response))
    }

    /// A Send indication (no response).
    pub async fn send_indication(&self, peer: SocketAddr, data: &[u8]) -> anyhow::Result<()> {
        let msg = build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            peer_attr(peer),
            Box::new(Data(data.to_vec())),
            Box::new(FINGERPRINT),
        ])?;
        self.send_frame(&msg.raw).await
    }

    /// Waits for a Data indication and returns its payload.
    pub async fn recv_data(&self, within: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = self.recv_frame(deadline).await?;
            let mut m = Message {
                raw: frame,
                ..Default::default()
            };
            if m.decode().is_ok() && m.typ == MessageType::new(METHOD_DATA, CLASS_INDICATION) {
                let mut data = Data::default();
                if data.get_from(&m).is_ok() {
                    return Some(data.0);
                }
            }
        }
    }

    pub async fn signed(
        &self,
        session: &Session,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
    ) -> anyhow::Result<Message> {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            session.username.clone(),
        )));
        setters.push(Box::new(TextAttribute::new(
            ATTR_REALM,
            session.realm.clone(),
        )));
        setters.push(Box::new(TextAttribute::new(
            ATTR_NONCE,
            session.nonce.clone(),
        )));
        setters.push(Box::new(session.integrity.clone()));
        setters.push(Box::new(FINGERPRINT));
        let request = build(&setters)?;
        self.transact(&request).await
    }
}

fn peer_attr(peer: SocketAddr) -> Box<dyn Setter> {
    Box::new(PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    })
}

fn build(setters: &[Box<dyn Setter>]) -> anyhow::Result<Message> {
    let mut m = Message::new();
    m.build(setters)
        .map_err(|e| anyhow!("build STUN message: {e}"))?;
    Ok(m)
}

/// The ERROR-CODE of an error response, `None` for a success response.
pub fn error_code(m: &Message) -> Option<u16> {
    if m.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut code = ErrorCodeAttribute::default();
    code.get_from(m).ok()?;
    Some(code.code.0)
}

/// The ERROR-CODE reason phrase of an error response.
pub fn error_reason(m: &Message) -> Option<String> {
    let mut code = ErrorCodeAttribute::default();
    code.get_from(m).ok()?;
    Some(String::from_utf8_lossy(&code.reason).into_owned())
}

fn outcome(m: &Message) -> Outcome<()> {
    match error_code(m) {
        Some(code) => Err(code),
        None if m.typ.class == CLASS_SUCCESS_RESPONSE => Ok(()),
        None => Err(0),
    }
}

/// Sends `payload` through a relayed connection and waits for the echo.
pub async fn round_trip(
    relay_conn: &(impl webrtc_util::Conn + ?Sized),
    peer: SocketAddr,
    payload: &[u8],
) -> anyhow::Result<Vec<u8>> {
    relay_conn
        .send_to(payload, peer)
        .await
        .map_err(|e| anyhow!("send through relay: {e}"))?;
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(PATIENCE, relay_conn.recv_from(&mut buf))
        .await
        .context("no echo through the relay")?
        .map_err(|e| anyhow!("recv through relay: {e}"))?;
    if from != peer {
        bail!("echo came from {from}, expected {peer}");
    }
    Ok(buf[..n].to_vec())
}

/// One browser of a consultation: a `turn`-crate client holding an
/// allocation made with credentials of its own participant reference.
pub struct Participant {
    pub reference: Reference,
    pub client: Client,
    pub conn: Arc<dyn webrtc_util::Conn + Send + Sync>,
    /// The allocation's relayed address, where the other participant sends.
    pub relayed: SocketAddr,
}

impl Participant {
    /// Allocates on `relay` with fresh credentials of `reference`.
    pub async fn join(relay: &Relay, reference: &str) -> Self {
        let creds = issue(reference, 600);
        let client = turn_client_for(relay.local_addr(), &creds).await;
        let conn = client.allocate().await.expect("allocation");
        let relayed = webrtc_util::Conn::local_addr(&conn).unwrap();
        Self {
            reference: Reference::parse(reference).unwrap(),
            client,
            conn: Arc::new(conn),
            relayed,
        }
    }

    /// Sends `payload` through the relay to `to`'s relayed address.
    pub async fn send(&self, to: &Participant, payload: &[u8]) {
        self.conn
            .send_to(payload, to.relayed)
            .await
            .expect("send through the relay");
    }

    /// The next payload relayed to this participant, if one comes within
    /// `within`.
    pub async fn recv(&self, within: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        let (n, _) = tokio::time::timeout(within, self.conn.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[..n].to_vec())
    }

    /// Waits for exactly `payload`, skipping the [`HELLO`]s of
    /// [`meet`]; anything else is a failure.
    pub async fn expect(&self, payload: &[u8]) {
        loop {
            let got = self
                .recv(PATIENCE)
                .await
                .unwrap_or_else(|| panic!("{} received nothing", self.reference));
            if got == payload {
                return;
            }
            assert_eq!(
                got, HELLO,
                "{} received something unexpected",
                self.reference
            );
        }
    }

    pub async fn leave(self) {
        let _ = self.conn.close().await;
        let _ = self.client.close().await;
    }
}

/// A payload that is not media (first byte `h`), for setting up
/// permissions without being counted.
pub const HELLO: &[u8] = b"hello";

/// Has `a` and `b` send [`HELLO`]s to each other until each has received
/// one, so both allocations have a permission for the other (a TURN server
/// drops datagrams from peers without one).
pub async fn meet(a: &Participant, b: &Participant) {
    let (mut a_heard, mut b_heard) = (false, false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(a_heard && b_heard) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "participants never met"
        );
        a.send(b, HELLO).await;
        b.send(a, HELLO).await;
        let wait = Duration::from_millis(100);
        a_heard |= a.recv(wait).await.is_some();
        b_heard |= b.recv(wait).await.is_some();
    }
}

/// An RTP-looking packet (version 2, first byte 0x80) of `len` bytes.
pub fn rtp(seq: u16, len: usize) -> Vec<u8> {
    assert!(len >= 12, "an RTP header is 12 bytes");
    let mut packet = vec![0u8; len];
    packet[0] = 0x80;
    packet[1] = 111; // Opus
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet
}
