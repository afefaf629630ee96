//! The relay's TURN server (RFC 8656): allocations, permissions, channels
//! and the two relay directions, on the `stun`/`turn` crates' codecs.
//!
//! The transports ([`crate::transport`]) hand every frame a client sends to
//! [`Engine::on_client_frame`] and every datagram a peer sends to an
//! allocation's relay socket to [`Engine::on_peer_datagram`]; both run to the end
//! without awaiting anything. A request is answered, and a relayed datagram
//! written, with a non-blocking send (a full socket buffer drops the
//! datagram, as the network would); nothing holds a lock across an await,
//! and the data path takes no lock shared by all allocations for writing:
//! the allocation table is read under a read lock, and each allocation's
//! permissions and channels sit behind a lock of their own.
//!
//! Policy (credentials, closed references, quotas, denied peers) is the
//! [`Gate`]'s; what is left here is the protocol.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stun::attributes::{
    AttrType, ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_DONT_FRAGMENT, ATTR_EVEN_PORT, ATTR_LIFETIME,
    ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_NONCE, ATTR_REALM,
    ATTR_REQUESTED_ADDRESS_FAMILY, ATTR_REQUESTED_TRANSPORT, ATTR_RESERVATION_TOKEN, ATTR_USERNAME,
    ATTR_XOR_PEER_ADDRESS,
};
use stun::error_code::{
    ErrorCode, CODE_ADDR_FAMILY_NOT_SUPPORTED, CODE_ALLOC_MISMATCH, CODE_BAD_REQUEST,
    CODE_FORBIDDEN, CODE_INSUFFICIENT_CAPACITY, CODE_PEER_ADDR_FAMILY_MISMATCH, CODE_STALE_NONCE,
    CODE_UNAUTHORIZED, CODE_UNKNOWN_ATTRIBUTE, CODE_UNSUPPORTED_TRANS_PROTO,
};
use stun::fingerprint::FINGERPRINT;
use stun::message::{
    is_message, Getter, Message, MessageType, Method, Setter, CLASS_REQUEST,
    CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH,
};
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::AbortHandle;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

use crate::credentials::Reference;
use crate::framing::{self, HEADROOM};
use crate::gate::{error_response, peer_addresses, Gate, Key, Refusal, Verdict};
use crate::grants::{granted_lifetime, BindConflict, Grants};
use crate::media::{self, AllocationId, Direction, Ledger, LiveCounters, MediaCounters, Valve};
use crate::nonce::{NonceCheck, Nonces};
use crate::peer_policy::{denied_range, is_denied_peer, PeerPolicy};
use crate::stats::Counters;

/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): also an IPv6 relayed
/// address, next to the IPv4 one.
const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
/// ADDRESS-ERROR-CODE (RFC 8656 §18.12): why one family of a dual-stack
/// Allocate was not allocated.
const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);
/// REQUESTED-ADDRESS-FAMILY values (RFC 8656 §18.10).
const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

/// Room in front of a peer's datagram for the ChannelData header, so it is
/// framed in place.
pub(crate) const CHANNEL_HEADER: usize = 4;

/// Attributes a TURN request may carry that the relay understands (the
/// comprehension-required range, below 0x8000); any other there gets 420.
const KNOWN_REQUEST_ATTRIBUTES: [AttrType; 14] = [
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_DONT_FRAGMENT,
    ATTR_RESERVATION_TOKEN,
    ATTR_REQUESTED_ADDRESS_FAMILY,
];

/// An address the relay hands out relayed addresses on: the public IP
/// clients and peers reach, and the local IP the relay sockets bind to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAddress {
    /// Advertised in XOR-RELAYED-ADDRESS.
    pub public: IpAddr,
    /// Relay sockets bind here (the same as `public` without 1:1 NAT).
    pub bind: IpAddr,
}

/// The engine's settings, from [`crate::RelayConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub realm: String,
    pub policy: PeerPolicy,
    pub channel_bind_timeout: Duration,
    /// Relayed addresses, at least one; IPv4 ones serve IPv4 allocations,
    /// IPv6 ones IPv6 allocations.
    pub addresses: Vec<RelayAddress>,
    pub ports: Option<RangeInclusive<u16>>,
    /// SO_RCVBUF/SO_SNDBUF asked for each relay socket.
    pub socket_buffer: usize,
}

/// How a client is reached: its transport address, and for TCP/TLS the
/// connection (0 for UDP, whose listening sockets all share one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub addr: SocketAddr,
    pub stream: u64,
}

/// Where answers and relayed data for one client go.
#[derive(Clone)]
pub(crate) enum Sink {
    /// The listening socket, to the client's address.
    Udp {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
    },
    /// A TCP or TLS connection's writer, and the signal that ends it.
    Stream {
        frames: mpsc::Sender<Vec<u8>>,
        close: Arc<Notify>,
    },
}

impl Sink {
    /// Sends one frame without waiting; `false` if it was dropped (a full
    /// socket buffer or queue, or a closed connection).
    fn send(&self, frame: &[u8]) -> bool {
        match self {
            Sink::Udp { socket, to } => send_now(socket, frame, *to),
            Sink::Stream { frames, .. } => {
                // Over TCP and TLS, ChannelData is padded to a multiple of
                // four bytes (RFC 8656 §12.5).
                let mut owned = Vec::with_capacity(frame.len() + 3);
                owned.extend_from_slice(frame);
                if is_channel_data(frame) {
                    owned.resize(frame.len().next_multiple_of(4), 0);
                }
                frames.try_send(owned).is_ok()
            }
        }
    }

    fn close(&self) {
        if let Sink::Stream { close, .. } = self {
            close.notify_one();
        }
    }
}

/// Sends one datagram now, without waiting: `false` if the socket's buffer
/// is full (the datagram is dropped, as the network would) or it failed.
///
/// This is the send syscall itself, not Tokio's `try_send_to`, which first
/// consults the readiness its reactor last saw: a socket made a moment ago
/// on a runtime whose thread has not yet polled its reactor counts as not
/// writable, and a datagram sent right after the Allocate would be dropped.
fn send_now(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) -> bool {
    socket2::SockRef::from(socket)
        .send_to(datagram, &to.into())
        .is_ok()
}

/// Whether a frame is ChannelData (first two bits 01, RFC 8656 §12.4).
pub(crate) fn is_channel_data(frame: &[u8]) -> bool {
    frame.len() >= CHANNEL_HEADER && (0x40..=0x7F).contains(&frame[0])
}

/// One relay socket of an allocation.
pub(crate) struct RelaySocket {
    pub socket: Arc<UdpSocket>,
    /// The relayed address advertised for it.
    pub public: SocketAddr,
}

struct AllocState {
    grants: Grants,
    expires: Instant,
}

/// One allocation: a client's relayed address(es) and what it lets through.
pub(crate) struct Allocation {
    id: AllocationId,
    reference: Reference,
    client: ClientKey,
    sink: Sink,
    pub(crate) relays: Vec<RelaySocket>,
    state: Mutex<AllocState>,
    valve: Arc<Valve>,
    /// Media relayed since it was last moved into the ledger.
    media: LiveCounters,
    /// The Allocate's transaction and success answer, resent to a
    /// retransmission (RFC 8656 §7.2).
    answer: ([u8; 12], Vec<u8>),
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Allocation {
    fn state(&self) -> MutexGuard<'_, AllocState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The relay socket for a peer of `ip`'s family.
    fn relay_for(&self, ip: IpAddr) -> Option<&RelaySocket> {
        self.relays
            .iter()
            .find(|r| r.public.is_ipv4() == ip.is_ipv4())
    }

    /// Registers the relay socket's receive task, to stop with it.
    pub(crate) fn add_task(&self, task: AbortHandle) {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Stops relaying: shuts the valve, ends the receive tasks (which frees
    /// the relay sockets and their ports) and, for a stream, the connection.
    fn retire(&self) {
        self.valve.shut();
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        self.sink.close();
    }
}

#[derive(Default)]
struct Table {
    /// Keyed by client address, which the client picks: a hasher seeded
    /// per process.
    by_client: HashMap<ClientKey, Arc<Allocation>, foldhash::fast::RandomState>,
    /// Live allocations per consultation: the quota's count, and where to
    /// find a consultation's media counters.
    per_consultation: HashMap<String, Vec<Arc<Allocation>>>,
}

impl Table {
    fn insert(&mut self, allocation: Arc<Allocation>) {
        self.per_consultation
            .entry(allocation.reference.consultation_str().to_owned())
            .or_default()
            .push(Arc::clone(&allocation));
        self.by_client.insert(allocation.client, allocation);
    }

    fn remove(&mut self, key: &ClientKey) -> Option<Arc<Allocation>> {
        let allocation = self.by_client.remove(key)?;
        let consultation = allocation.reference.consultation_str();
        if let Some(live) = self.per_consultation.get_mut(consultation) {
            live.retain(|a| !Arc::ptr_eq(a, &allocation));
            if live.is_empty() {
                self.per_consultation.remove(consultation);
            }
        }
        Some(allocation)
    }

    fn of_consultation(&self, consultation: &str) -> usize {
        self.per_consultation.get(consultation).map_or(0, Vec::len)
    }
}

/// A new allocation whose relay sockets need receive tasks.
pub(crate) type Spawn = dyn Fn(Arc<Allocation>) + Send + Sync;

/// The relay's state and protocol logic; see the module docs.
pub(crate) struct Engine {
    settings: Settings,
    gate: Mutex<Gate>,
    nonces: Nonces,
    table: RwLock<Table>,
    ledger: Mutex<Ledger>,
    pub(crate) totals: Counters,
    /// Where the next relay port search starts, when ports are a range.
    next_port: AtomicUsize,
    next_stream: AtomicU64,
    /// Starts the receive tasks of a new allocation's relay sockets.
    spawn: Box<Spawn>,
    /// Data indications sent, and the key their transaction ids are mixed
    /// with.
    transactions: AtomicU64,
    transaction_key: u64,
    /// The instant live media counters count from.
    epoch: Instant,
    /// Set when the relay shuts down; TCP/TLS connections end on it.
    stopping: watch::Sender<bool>,
}

/// The current time, read once per frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub instant: Instant,
    pub system: SystemTime,
}

impl Now {
    pub(crate) fn read() -> Self {
        Self {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    fn unix(&self) -> u64 {
        self.system
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl Engine {
    pub(crate) fn new(
        settings: Settings,
        gate: Gate,
        max_idle: Duration,
        spawn: Box<Spawn>,
    ) -> Self {
        Self {
            settings,
            gate: Mutex::new(gate),
            nonces: Nonces::new(),
            table: RwLock::new(Table::default()),
            ledger: Mutex::new(Ledger::new(max_idle)),
            totals: Counters::default(),
            next_port: AtomicUsize::new(0),
            next_stream: AtomicU64::new(1),
            spawn,
            transactions: AtomicU64::new(0),
            transaction_key: random_u64(),
            epoch: Instant::now(),
            stopping: watch::Sender::new(false),
        }
    }

    /// Becomes true when the relay shuts down.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// A fresh id for a TCP or TLS connection's [`ClientKey`].
    pub(crate) fn next_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn allocation(&self, key: &ClientKey) -> Option<Arc<Allocation>> {
        self.table().by_client.get(key).cloned()
    }

    /// Whether the client holds an allocation.
    pub(crate) fn holds_allocation(&self, key: &ClientKey) -> bool {
        self.table().by_client.contains_key(key)
    }

    /// Number of live allocations.
    pub(crate) fn allocation_count(&self) -> usize {
        self.table().by_client.len()
    }

    /// Live allocations of references `reference` covers.
    pub(crate) fn allocations_for(&self, reference: &Reference) -> usize {
        self.table()
            .by_client
            .values()
            .filter(|a| reference.covers(&a.reference))
            .count()
    }

    /// See [`crate::Relay::media_counters`]: the ledger's counts, with what
    /// the consultation's live allocations relayed since they were last
    /// moved there.
    pub(crate) fn counters(&self, reference: &Reference) -> HashMap<Reference, MediaCounters> {
        let live: Vec<Arc<Allocation>> = self
            .table()
            .per_consultation
            .get(reference.consultation_str())
            .cloned()
            .unwrap_or_default();
        let mut ledger = self.ledger();
        for allocation in live.iter().filter(|a| reference.covers(&a.reference)) {
            ledger.add(allocation.id, &allocation.media.take(self.epoch));
        }
        ledger.counters(reference)
    }

    /// Moves an allocation that is going out of the ledger's live set, with
    /// the media it relayed last.
    fn settle(&self, ledger: &mut Ledger, now: Instant, allocation: &Allocation) {
        ledger.add(allocation.id, &allocation.media.take(self.epoch));
        ledger.allocation_gone(now, allocation.id);
    }

    /// One frame from a client: a STUN message or ChannelData.
    ///
    /// `now` is read once per frame by the caller; the wall clock only for
    /// STUN messages, which need it (credential expiry, nonces).
    pub(crate) fn on_client_frame(&self, now: Instant, sink: &Sink, key: ClientKey, frame: &[u8]) {
        if is_channel_data(frame) {
            self.channel_data(now, key, frame);
            return;
        }
        if framing::is_send_indication(frame) {
            self.send_indication(now, key, frame);
            return;
        }
        if !is_message(frame) {
            return;
        }
        let now = Now {
            instant: now,
            system: SystemTime::now(),
        };
        let mut msg = Message {
            raw: frame.to_vec(),
            ..Default::default()
        };
        if msg.decode().is_err() {
            return;
        }
        match (msg.typ.class, msg.typ.method) {
            (CLASS_REQUEST, METHOD_BINDING) => {
                let answer = build(&[
                    Box::new(msg.clone()),
                    Box::new(MessageType::new(METHOD_BINDING, CLASS_SUCCESS_RESPONSE)),
                    Box::new(mapped(key.addr)),
                    Box::new(FINGERPRINT),
                ]);
                sink.send(&answer);
            }
            (CLASS_REQUEST, method)
                if [
                    METHOD_ALLOCATE,
                    METHOD_REFRESH,
                    METHOD_CREATE_PERMISSION,
                    METHOD_CHANNEL_BIND,
                ]
                .contains(&method) =>
            {
                self.request(now, sink, key, &msg)
            }
            (CLASS_REQUEST, method) => {
                sink.send(&error_response(
                    &msg,
                    method,
                    CODE_BAD_REQUEST,
                    "Bad Request",
                    vec![],
                ));
            }
            // Responses and other indications from a client mean nothing.
            _ => {}
        }
    }

    /// An Allocate, Refresh, CreatePermission or ChannelBind request.
    fn request(&self, now: Now, sink: &Sink, key: ClientKey, msg: &Message) {
        let method = msg.typ.method;
        let unknown: Vec<AttrType> = msg
            .attributes
            .0
            .iter()
            .map(|a| a.typ)
            .filter(|t| t.required() && !KNOWN_REQUEST_ATTRIBUTES.contains(t))
            .collect();
        if !msg.contains(ATTR_MESSAGE_INTEGRITY) {
            // The first request of every client: the challenge. Cheap and
            // stateless, since anyone can send it from any address.
            self.challenge(now, sink, key, msg, CODE_UNAUTHORIZED, "Unauthorized");
            return;
        }
        let Ok(nonce) = TextAttribute::get_from_as(msg, ATTR_NONCE) else {
            sink.send(&error_response(
                msg,
                method,
                CODE_BAD_REQUEST,
                "Bad Request",
                vec![],
            ));
            return;
        };
        if self.nonces.check(&nonce.text, now.unix(), key.addr) != NonceCheck::Valid {
            self.challenge(now, sink, key, msg, CODE_STALE_NONCE, "Stale Nonce");
            return;
        }
        let verdict = self.gate().screen(now.system, msg);
        let key_for = |v: &Verdict| match v {
            Verdict::Accept(k) | Verdict::CheckAllocation(_, k) => Some(k.clone()),
            Verdict::CheckQuota(check) => Some(check.key().clone()),
            _ => None,
        };
        if let (Some(k), false) = (key_for(&verdict), unknown.is_empty()) {
            sink.send(&error_response(
                msg,
                method,
                CODE_UNKNOWN_ATTRIBUTE,
                "Unknown Attribute",
                vec![Box::new(UnknownAttributes(unknown)), Box::new(k.0)],
            ));
            return;
        }
        match verdict {
            Verdict::Reply(why, answer) => {
                self.refused(&why);
                sink.send(&answer);
            }
            Verdict::Drop(why) => self.refused(&why),
            // Authenticated, but missing USERNAME or the like.
            Verdict::Forward => {
                sink.send(&error_response(
                    msg,
                    method,
                    CODE_BAD_REQUEST,
                    "Bad Request",
                    vec![],
                ));
            }
            Verdict::CheckQuota(check) => {
                if let Some(existing) = self.allocation(&key) {
                    // A retransmission gets the same answer; anything else
                    // on a 5-tuple that holds an allocation is 437.
                    let answer = if existing.answer.0 == msg.transaction_id.0 {
                        existing.answer.1.clone()
                    } else {
                        self.refused(&Refusal::Invalid("allocation exists"));
                        signed_error(msg, check.key(), CODE_ALLOC_MISMATCH, "Allocation Mismatch")
                    };
                    sink.send(&answer);
                    return;
                }
                let reference = check.reference.clone();
                let (of_consultation, total) = {
                    let table = self.table();
                    (
                        table.of_consultation(reference.consultation_str()),
                        table.by_client.len(),
                    )
                };
                match check.verdict(of_consultation, total) {
                    Verdict::Accept(k) => self.allocate(now, sink, key, msg, reference, &k),
                    Verdict::Reply(why, answer) => {
                        self.refused(&why);
                        sink.send(&answer);
                    }
                    _ => {}
                }
            }
            Verdict::CheckAllocation(mismatch, k) => match self.allocation(&key) {
                Some(allocation) => self.refresh(now, sink, msg, &allocation, &k),
                None => {
                    self.refused(&Refusal::Invalid("no allocation to refresh"));
                    sink.send(&mismatch);
                }
            },
            Verdict::Accept(k) => {
                let Some(allocation) = self.allocation(&key) else {
                    self.refused(&Refusal::Invalid("no allocation"));
                    sink.send(&signed_error(
                        msg,
                        &k,
                        CODE_ALLOC_MISMATCH,
                        "Allocation Mismatch",
                    ));
                    return;
                };
                let answer = if method == METHOD_CREATE_PERMISSION {
                    self.create_permission(now.instant, msg, &allocation, &k)
                } else {
                    self.channel_bind(now.instant, msg, &allocation, &k)
                };
                sink.send(&answer);
            }
        }
    }

    /// A challenge (401 for a first request, 438 for a stale or unknown
    /// nonce): REALM and a fresh nonce for this client's address.
    fn challenge(
        &self,
        now: Now,
        sink: &Sink,
        key: ClientKey,
        msg: &Message,
        code: ErrorCode,
        reason: &str,
    ) {
        let nonce = self.nonces.mint(now.unix(), key.addr);
        sink.send(&error_response(
            msg,
            msg.typ.method,
            code,
            reason,
            vec![
                Box::new(TextAttribute::new(ATTR_REALM, self.settings.realm.clone())),
                Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
            ],
        ));
    }

    fn refused(&self, why: &Refusal) {
        self.totals.refused(why);
        tracing::debug!(refusal = ?why, "refused TURN request");
    }

    /// An accepted Allocate for a client without one (RFC 8656 §7.2).
    fn allocate(
        &self,
        now: Now,
        sink: &Sink,
        key: ClientKey,
        msg: &Message,
        reference: Reference,
        k: &Key,
    ) {
        let fail = |code: ErrorCode, reason: &str, why: &'static str| {
            self.refused(&Refusal::Invalid(why));
            sink.send(&signed_error(msg, k, code, reason));
        };
        let mut transport = RequestedTransport::default();
        if transport.get_from(msg).is_err() {
            return fail(CODE_BAD_REQUEST, "Bad Request", "no requested transport");
        }
        if transport.protocol != PROTO_UDP {
            return fail(
                CODE_UNSUPPORTED_TRANS_PROTO,
                "Unsupported Transport Protocol",
                "transport not UDP",
            );
        }
        if msg.contains(ATTR_RESERVATION_TOKEN) {
            // This relay reserves no ports, so no token is valid (§7.2).
            return fail(
                CODE_INSUFFICIENT_CAPACITY,
                "Insufficient Capacity",
                "reservation token",
            );
        }
        // EVEN-PORT: an even port is found; reserving the next one (the R
        // bit) is not offered, which §7.2 answers with 508.
        let even_port = match msg.get(ATTR_EVEN_PORT) {
            Ok(value) if value.first().is_some_and(|flags| flags & 0x80 != 0) => {
                return fail(
                    CODE_INSUFFICIENT_CAPACITY,
                    "Insufficient Capacity",
                    "port reservation",
                )
            }
            Ok(_) => true,
            Err(_) => false,
        };
        let families = match requested_families(msg) {
            Ok(families) => families,
            Err(()) => return fail(CODE_BAD_REQUEST, "Bad Request", "address family attributes"),
        };
        let served: Vec<(u8, RelayAddress)> = families
            .iter()
            .filter_map(|family| self.address_for(*family).map(|a| (*family, a)))
            .collect();
        if served.is_empty() {
            return fail(
                CODE_ADDR_FAMILY_NOT_SUPPORTED,
                "Address Family not Supported",
                "address family not served",
            );
        }
        let dont_fragment = msg.contains(ATTR_DONT_FRAGMENT);
        let mut relays = Vec::with_capacity(served.len());
        for (_, address) in &served {
            match self.bind_relay(address, even_port, dont_fragment) {
                Ok(relay) => relays.push(relay),
                Err(error) => {
                    tracing::warn!(%error, "could not bind a relay socket");
                    return fail(
                        CODE_INSUFFICIENT_CAPACITY,
                        "Insufficient Capacity",
                        "no relay port",
                    );
                }
            }
        }
        let mut requested = Lifetime::default();
        let lifetime = granted_lifetime(requested.get_from(msg).ok().map(|()| requested.0));
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(msg.clone()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE)),
        ];
        for relay in &relays {
            setters.push(Box::new(RelayedAddress {
                ip: relay.public.ip(),
                port: relay.public.port(),
            }));
        }
        for family in families
            .iter()
            .filter(|f| !served.iter().any(|(s, _)| s == *f))
        {
            setters.push(Box::new(AddressErrorCode(*family)));
        }
        setters.push(Box::new(Lifetime(lifetime)));
        setters.push(Box::new(mapped(key.addr)));
        setters.push(Box::new(k.0.clone()));
        setters.push(Box::new(FINGERPRINT));
        let answer = build(&setters);

        let (id, valve) = self
            .ledger()
            .allocation_made(now.instant, reference.clone());
        let allocation = Arc::new(Allocation {
            id,
            reference,
            client: key,
            sink: sink.clone(),
            relays,
            state: Mutex::new(AllocState {
                grants: Grants::default(),
                expires: now.instant + lifetime,
            }),
            valve,
            media: LiveCounters::default(),
            answer: (msg.transaction_id.0, answer.clone()),
            tasks: Mutex::new(Vec::new()),
        });
        {
            let mut table = self.table_mut();
            // A close that came after the gate let this request through has
            // marked the reference already: refuse rather than outlive it
            // (a close sweeps under this same lock, so one of the two sees
            // the other).
            if self.gate().is_closed(now.system, &allocation.reference) {
                drop(table);
                self.ledger().allocation_gone(now.instant, id);
                self.refused(&Refusal::Unauthorized("reference closed"));
                sink.send(&signed_error(msg, k, CODE_UNAUTHORIZED, "Unauthorized"));
                return;
            }
            table.insert(Arc::clone(&allocation));
        }
        (self.spawn)(Arc::clone(&allocation));
        sink.send(&answer);
    }

    /// The relay address for `family`, spreading allocations over several.
    fn address_for(&self, family: u8) -> Option<RelayAddress> {
        let candidates: Vec<&RelayAddress> = self
            .settings
            .addresses
            .iter()
            .filter(|a| a.public.is_ipv4() == (family == FAMILY_IPV4))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let pick = self.next_port.load(Ordering::Relaxed) % candidates.len();
        Some(*candidates[pick])
    }

    fn bind_relay(
        &self,
        address: &RelayAddress,
        even_port: bool,
        dont_fragment: bool,
    ) -> std::io::Result<RelaySocket> {
        let socket = match &self.settings.ports {
            None => {
                let mut tries = 0;
                loop {
                    let socket = crate::transport::relay_socket(
                        SocketAddr::new(address.bind, 0),
                        self.settings.socket_buffer,
                    )?;
                    tries += 1;
                    if !even_port || socket.local_addr()?.port() % 2 == 0 || tries > 16 {
                        break socket;
                    }
                }
            }
            Some(ports) => {
                let (start, end) = (*ports.start() as usize, *ports.end() as usize);
                let span = end - start + 1;
                let first = self.next_port.fetch_add(1, Ordering::Relaxed);
                let mut found = None;
                for step in 0..span.min(4096) {
                    let port = (start + (first + step) % span) as u16;
                    if even_port && port % 2 == 1 {
                        continue;
                    }
                    if let Ok(socket) = crate::transport::relay_socket(
                        SocketAddr::new(address.bind, port),
                        self.settings.socket_buffer,
                    ) {
                        found = Some(socket);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free relay port")
                })?
            }
        };
        if dont_fragment {
            crate::transport::set_dont_fragment(&socket, address.bind)?;
        }
        let port = socket.local_addr()?.port();
        Ok(RelaySocket {
            socket: Arc::new(UdpSocket::from_std(socket)?),
            public: SocketAddr::new(address.public, port),
        })
    }

    /// A Refresh of the client's allocation (§7.3).
    fn refresh(&self, now: Now, sink: &Sink, msg: &Message, allocation: &Allocation, k: &Key) {
        let mut requested = Lifetime::default();
        let asked = requested.get_from(msg).ok().map(|()| requested.0);
        let lifetime = if asked == Some(Duration::ZERO) {
            self.remove(now.instant, &allocation.client);
            Duration::ZERO
        } else {
            let lifetime = granted_lifetime(asked);
            allocation.state().expires = now.instant + lifetime;
            lifetime
        };
        sink.send(&build(&[
            Box::new(msg.clone()),
            Box::new(MessageType::new(METHOD_REFRESH, CLASS_SUCCESS_RESPONSE)),
            Box::new(Lifetime(lifetime)),
            Box::new(k.0.clone()),
            Box::new(FINGERPRINT),
        ]));
    }

    fn create_permission(
        &self,
        now: Instant,
        msg: &Message,
        allocation: &Allocation,
        k: &Key,
    ) -> Vec<u8> {
        let peers: Vec<IpAddr> = peer_addresses(msg).collect();
        if peers.is_empty() {
            self.refused(&Refusal::Invalid("no peer address"));
            return signed_error(msg, k, CODE_BAD_REQUEST, "Bad Request");
        }
        if peers.iter().any(|ip| allocation.relay_for(*ip).is_none()) {
            self.refused(&Refusal::Invalid("peer address family"));
            return signed_error(
                msg,
                k,
                CODE_PEER_ADDR_FAMILY_MISMATCH,
                "Peer Address Family Mismatch",
            );
        }
        if peers
            .iter()
            .any(|ip| is_denied_peer(*ip, &self.settings.policy))
        {
            // The gate answers these with 403 first; never grant one.
            return signed_error(msg, k, CODE_FORBIDDEN, "Forbidden IP");
        }
        let mut state = allocation.state();
        if state.grants.room_for(now, &peers).is_err() {
            drop(state);
            self.refused(&Refusal::Invalid("too many permissions"));
            return signed_error(msg, k, CODE_INSUFFICIENT_CAPACITY, "Insufficient Capacity");
        }
        for ip in peers {
            state.grants.permit(now, ip);
        }
        drop(state);
        success(msg, METHOD_CREATE_PERMISSION, k)
    }

    fn channel_bind(
        &self,
        now: Instant,
        msg: &Message,
        allocation: &Allocation,
        k: &Key,
    ) -> Vec<u8> {
        let mut number = ChannelNumber::default();
        let mut peer = PeerAddress::default();
        if number.get_from(msg).is_err() || peer.get_from(msg).is_err() {
            self.refused(&Refusal::Invalid("channel bind without number or peer"));
            return signed_error(msg, k, CODE_BAD_REQUEST, "Bad Request");
        }
        if allocation.relay_for(peer.ip).is_none() {
            self.refused(&Refusal::Invalid("peer address family"));
            return signed_error(
                msg,
                k,
                CODE_PEER_ADDR_FAMILY_MISMATCH,
                "Peer Address Family Mismatch",
            );
        }
        if is_denied_peer(peer.ip, &self.settings.policy) {
            // The gate answers these with 403 first; never grant one.
            return signed_error(msg, k, CODE_FORBIDDEN, "Forbidden IP");
        }
        let peer = SocketAddr::new(peer.ip, peer.port);
        let bound =
            allocation
                .state()
                .grants
                .bind(now, number.0, peer, self.settings.channel_bind_timeout);
        match bound {
            Ok(()) => success(msg, METHOD_CHANNEL_BIND, k),
            Err(BindConflict::Full) => {
                self.refused(&Refusal::Invalid("too many channels or permissions"));
                signed_error(msg, k, CODE_INSUFFICIENT_CAPACITY, "Insufficient Capacity")
            }
            Err(conflict) => {
                self.refused(&Refusal::Invalid(match conflict {
                    BindConflict::NumberTaken => "channel number bound to another peer",
                    _ => "peer bound to another channel",
                }));
                signed_error(msg, k, CODE_BAD_REQUEST, "Bad Request")
            }
        }
    }

    /// A Send indication: relay its DATA to its peer, if permitted.
    /// Read in place: a Send indication carries media before a channel is
    /// bound, so it takes the data path's care (no decode, no copy).
    fn send_indication(&self, now: Instant, key: ClientKey, frame: &[u8]) {
        let Some((peer, data)) = framing::send_parts(frame) else {
            return;
        };
        if let Some(range) = denied_range(peer.ip(), &self.settings.policy) {
            self.refused(&Refusal::ForbiddenPeer(range));
            return;
        }
        let Some(allocation) = self.allocation(&key) else {
            return;
        };
        self.to_peer(now, &allocation, peer, data);
    }

    /// A fresh transaction id for a Data indication: a keyed mix of a
    /// counter (unique within the relay's life, unpredictable without the
    /// key), without a random draw per datagram.
    fn next_transaction(&self) -> [u8; 12] {
        let n = self.transactions.fetch_add(1, Ordering::Relaxed);
        let a = splitmix64(self.transaction_key ^ n);
        let b = splitmix64(a);
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes()[..4]);
        id
    }

    /// ChannelData from a client: relay the payload to the channel's peer.
    fn channel_data(&self, now: Instant, key: ClientKey, frame: &[u8]) {
        let number = u16::from_be_bytes([frame[0], frame[1]]);
        let length = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
        let Some(payload) = frame.get(CHANNEL_HEADER..CHANNEL_HEADER + length) else {
            return;
        };
        let Some(allocation) = self.allocation(&key) else {
            return;
        };
        let Some(peer) = allocation.state().grants.channel_peer(now, number) else {
            return;
        };
        self.send_to_peer(now, &allocation, peer, payload);
    }

    /// Writes `payload` to `peer` from the allocation's relay socket, if the
    /// allocation is open and holds a permission for the peer. (Permissions
    /// are only ever granted to peers the policy allows, so this and the
    /// peer path check nothing else per datagram.)
    fn to_peer(&self, now: Instant, allocation: &Allocation, peer: SocketAddr, payload: &[u8]) {
        if !allocation.state().grants.permitted(now, peer.ip()) {
            return;
        }
        self.send_to_peer(now, allocation, peer, payload);
    }

    /// [`Engine::to_peer`] once the permission is checked.
    fn send_to_peer(
        &self,
        now: Instant,
        allocation: &Allocation,
        peer: SocketAddr,
        payload: &[u8],
    ) {
        let Some(relay) = allocation.relay_for(peer.ip()) else {
            return;
        };
        let Some(_passing) = allocation.valve.pass() else {
            return;
        };
        if send_now(&relay.socket, payload, peer) && media::is_media(payload) {
            self.count(allocation, Direction::Sent, now, payload.len());
        }
    }

    fn count(&self, allocation: &Allocation, direction: Direction, now: Instant, bytes: usize) {
        let flow = match direction {
            Direction::Sent => &allocation.media.sent,
            Direction::Received => &allocation.media.received,
        };
        flow.record(self.epoch, now, bytes);
        self.totals.media(direction, bytes);
    }

    /// A datagram from `peer` on one of the allocation's relay sockets:
    /// `buffer[HEADROOM..HEADROOM + length]` holds it, with room in front
    /// (and [`framing::TAILROOM`] behind) to frame it as ChannelData or a
    /// Data indication in place.
    pub(crate) fn on_peer_datagram(
        &self,
        now: Instant,
        allocation: &Allocation,
        peer: SocketAddr,
        buffer: &mut [u8],
        length: usize,
    ) {
        let channel = {
            let state = allocation.state();
            if !state.grants.permitted(now, peer.ip()) {
                return;
            }
            state.grants.peer_channel(now, peer)
        };
        let Some(_passing) = allocation.valve.pass() else {
            return;
        };
        let payload_is_media = media::is_media(&buffer[HEADROOM..HEADROOM + length]);
        let sent = match channel {
            Some(number) => allocation
                .sink
                .send(framing::channel_data(buffer, number, length)),
            None => {
                let transaction = self.next_transaction();
                allocation
                    .sink
                    .send(framing::data_indication(buffer, peer, length, transaction))
            }
        };
        if sent && payload_is_media {
            self.count(allocation, Direction::Received, now, length);
        }
    }

    /// Removes and retires the client's allocation, if any.
    pub(crate) fn remove(&self, now: Instant, key: &ClientKey) {
        let removed = self.table_mut().remove(key);
        if let Some(allocation) = removed {
            allocation.retire();
            self.settle(&mut self.ledger(), now, &allocation);
        }
    }

    /// Removes expired allocations and forgets expired permissions and
    /// channels; returns how many allocations expired.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let expired: Vec<ClientKey> = self
            .table()
            .by_client
            .values()
            .filter_map(|a| {
                let mut state = a.state();
                state.grants.prune(now);
                (state.expires <= now).then_some(a.client)
            })
            .collect();
        for key in &expired {
            self.remove(now, key);
        }
        expired.len()
    }

    /// Closes references (see [`crate::Relay::close_references`]): refuses
    /// their credentials, then removes their allocations. Returns the
    /// valves of the removed allocations, to wait until nothing is passing.
    pub(crate) fn close(
        &self,
        now: Now,
        references: &[&Reference],
        covers: impl Fn(&Reference) -> bool,
    ) -> Vec<Arc<Valve>> {
        self.gate()
            .close_references(now.system, references.iter().copied());
        let removed: Vec<Arc<Allocation>> = {
            let mut table = self.table_mut();
            let keys: Vec<ClientKey> = table
                .by_client
                .values()
                .filter(|a| covers(&a.reference))
                .map(|a| a.client)
                .collect();
            keys.iter().filter_map(|k| table.remove(k)).collect()
        };
        let mut ledger = self.ledger();
        removed
            .iter()
            .map(|allocation| {
                allocation.retire();
                self.settle(&mut ledger, now.instant, allocation);
                Arc::clone(&allocation.valve)
            })
            .collect()
    }

    /// Removes every allocation and ends every connection (shutdown).
    pub(crate) fn clear(&self) {
        self.stopping.send_replace(true);
        let removed: Vec<Arc<Allocation>> = {
            let mut table = self.table_mut();
            table.per_consultation.clear();
            table.by_client.drain().map(|(_, a)| a).collect()
        };
        for allocation in removed {
            allocation.retire();
        }
    }
}

/// The families an Allocate asks for (RFC 8656 §7.2, RFC 6156): REQUESTED-
/// ADDRESS-FAMILY names one; ADDITIONAL-ADDRESS-FAMILY (IPv6 only) asks for
/// IPv6 next to IPv4; neither means IPv4. Both, or values other than these,
/// are a bad request.
fn requested_families(msg: &Message) -> Result<Vec<u8>, ()> {
    let requested = msg.get(ATTR_REQUESTED_ADDRESS_FAMILY).ok();
    let additional = msg.get(ATTR_ADDITIONAL_ADDRESS_FAMILY).ok();
    match (requested, additional) {
        (Some(_), Some(_)) => Err(()),
        (Some(value), None) => match value.first() {
            Some(&family @ (FAMILY_IPV4 | FAMILY_IPV6)) if value.len() == 4 => Ok(vec![family]),
            _ => Err(()),
        },
        (None, Some(value)) => match value.first() {
            Some(&FAMILY_IPV6) if value.len() == 4 => Ok(vec![FAMILY_IPV4, FAMILY_IPV6]),
            _ => Err(()),
        },
        (None, None) => Ok(vec![FAMILY_IPV4]),
    }
}

/// ADDRESS-ERROR-CODE 440 for a family of a dual-stack Allocate the relay
/// does not serve.
struct AddressErrorCode(u8);

impl Setter for AddressErrorCode {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        let reason = b"Address Family not Supported";
        let mut value = vec![self.0, 0, 4, 40];
        value.extend_from_slice(reason);
        m.add(ATTR_ADDRESS_ERROR_CODE, &value);
        Ok(())
    }
}

/// XOR-MAPPED-ADDRESS of a client, in its own family (an IPv4 client seen
/// on a dual-stack socket as `::ffff:a.b.c.d` is told its IPv4 address).
fn mapped(addr: SocketAddr) -> XorMappedAddress {
    XorMappedAddress {
        ip: addr.ip().to_canonical(),
        port: addr.port(),
    }
}

fn build(setters: &[Box<dyn Setter>]) -> Vec<u8> {
    let mut message = Message::new();
    match message.build(setters) {
        Ok(()) => message.raw,
        // Well-formed attributes of bounded size always build; an empty
        // frame is never sent as anything but nothing.
        Err(_) => Vec::new(),
    }
}

fn success(msg: &Message, method: Method, k: &Key) -> Vec<u8> {
    build(&[
        Box::new(msg.clone()),
        Box::new(MessageType::new(method, CLASS_SUCCESS_RESPONSE)),
        Box::new(k.0.clone()),
        Box::new(FINGERPRINT),
    ])
}

fn signed_error(msg: &Message, k: &Key, code: ErrorCode, reason: &str) -> Vec<u8> {
    error_response(
        msg,
        msg.typ.method,
        code,
        reason,
        vec![Box::new(k.0.clone())],
    )
}

/// SplitMix64's finaliser: a fast, well-mixed bijection of 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 bits from the system's random generator.
fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    u64::from_be_bytes(bytes)
}
