//! The running relay: the [`Engine`] behind its sockets.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Weak};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::credentials::Reference;
use crate::engine::{Engine, Now, RelayAddress, Settings};
use crate::gate::{Gate, GateConfig};
use crate::media::{MediaCounters, Valve};
use crate::peer_policy::PeerPolicy;
use crate::stats::RelayStats;
use crate::transport;

/// The longest [`Relay::close_references`] waits for datagrams that were
/// being written when it closed to go out. Writes never wait, so this bound
/// is reached only if a thread is stuck.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// Settings of an embedded relay. Start from [`RelayConfig::new`] and change
/// what differs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// UDP address the relay listens on for clients (TURN and STUN).
    /// Default `0.0.0.0:3478`; tests use `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The IP clients and peers reach relay sockets at, advertised in
    /// XOR-RELAYED-ADDRESS: the machine's public IP behind 1:1 NAT. `None`
    /// means the listen IP, which must then be a concrete address.
    pub public_ip: Option<IpAddr>,
    /// The local IP relay sockets bind to. `None` means the listen IP.
    pub relay_bind_ip: Option<IpAddr>,
    /// Ports for relay sockets (to open in a firewall). `None`: any free
    /// port the OS picks.
    pub relay_ports: Option<RangeInclusive<u16>>,
    /// The TURN realm; must match what credentials are checked against
    /// (coturn's `realm=`). Default `"konsult"`.
    pub realm: String,
    /// The TURN REST shared secret (coturn's `static-auth-secret`).
    pub secret: SecretString,
    /// Which peers are refused. Default: only public unicast.
    pub peer_policy: PeerPolicy,
    /// How many live allocations one consultation may hold, over all its
    /// participants and credentials (a fresh credential does not buy more);
    /// the next Allocate gets 486. Default 48: a browser allocates one per
    /// TURN URL (UDP, TCP and TLS: three) at each gathering, and an
    /// allocation it leaves behind lives until its lifetime (600 s) runs
    /// out; a phone that changes networks ten times within those ten
    /// minutes holds 3 × 11 = 33, the therapist 3 more, so 48 leaves room
    /// and still stops one consultation from hoarding the relay.
    pub allocations_per_consultation: usize,
    /// How many live allocations the whole relay holds at most; the next
    /// Allocate gets 486. Default 10,000: each holds a UDP socket (a file
    /// descriptor) and buffers, so this bounds the relay whatever the
    /// number of consultations.
    pub max_allocations: usize,
    /// Credentials expiring later than `now + max_credential_ttl` are
    /// refused, a closed reference is remembered this long, and so are the
    /// media counters of a reference after its last allocation is gone and
    /// its last media was seen. Default 24 hours (the TURN REST draft's
    /// recommended ttl).
    pub max_credential_ttl: Duration,
    /// Lifetime of a channel binding (RFC 8656: 10 minutes).
    pub channel_bind_timeout: Duration,
    /// Further relayed addresses, e.g. an IPv6 one next to the IPv4
    /// `public_ip` for dual-stack allocations (RFC 8656 §7.2, RFC 6156), or
    /// several public IPv4 addresses to spread allocations over. Each
    /// family's allocations use that family's addresses in turn.
    pub extra_addresses: Vec<RelayAddress>,
    /// UDP listening sockets sharing `listen` (`SO_REUSEPORT`), each read by
    /// a task of its own, so the kernel spreads clients over cores. 0: one
    /// per available core.
    pub udp_sockets: usize,
    /// Receive and send buffer asked for each socket, in bytes (the kernel
    /// caps it at `net.core.rmem_max`/`wmem_max`). Default 4 MiB: a video
    /// burst of many clients fits where the default ~208 KiB overflows.
    pub socket_buffer: usize,
    /// Serve TURN over UDP on `listen` (default true). Off only for tests of
    /// clients that cannot use UDP.
    pub udp: bool,
    /// Serve TURN over TCP on `listen`'s port too (RFC 8656 §3.1; default
    /// true). TURN over TLS is served through [`Relay::serve_stream`], by a
    /// listener that terminates TLS (Konsult's HTTPS port, routed by SNI).
    pub tcp: bool,
}

impl RelayConfig {
    /// The standard TURN/STUN port.
    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3478);
    /// Default [`RelayConfig::max_allocations`].
    pub const DEFAULT_MAX_ALLOCATIONS: usize = 10_000;
    /// Default [`RelayConfig::allocations_per_consultation`].
    pub const DEFAULT_ALLOCATIONS_PER_CONSULTATION: usize = 48;
    /// Default [`RelayConfig::socket_buffer`].
    pub const DEFAULT_SOCKET_BUFFER: usize = 4 << 20;
    /// Default [`RelayConfig::max_credential_ttl`].
    pub const DEFAULT_MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

    /// Defaults around the shared secret, which has none.
    pub fn new(secret: SecretString) -> Self {
        Self {
            listen: Self::DEFAULT_LISTEN,
            public_ip: None,
            relay_bind_ip: None,
            relay_ports: None,
            realm: "konsult".to_owned(),
            secret,
            peer_policy: PeerPolicy::STRICT,
            allocations_per_consultation: Self::DEFAULT_ALLOCATIONS_PER_CONSULTATION,
            max_allocations: Self::DEFAULT_MAX_ALLOCATIONS,
            max_credential_ttl: Self::DEFAULT_MAX_CREDENTIAL_TTL,
            channel_bind_timeout: Duration::from_secs(600),
            extra_addresses: Vec::new(),
            udp_sockets: 0,
            socket_buffer: Self::DEFAULT_SOCKET_BUFFER,
            udp: true,
            tcp: true,
        }
    }
}

/// Why the relay could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The shared secret is empty.
    #[error("the TURN shared secret is empty")]
    EmptySecret,
    /// The realm is empty.
    #[error("the TURN realm is empty")]
    EmptyRealm,
    /// The listen address is unspecified (0.0.0.0 or ::) and no public IP
    /// is configured, so there is no address to advertise.
    #[error("listening on an unspecified address needs a public_ip to advertise")]
    PublicIpRequired,
    /// The relay port range is empty or starts at 0.
    #[error("invalid relay port range")]
    InvalidPortRange,
    /// The quota is 0, which would refuse every allocation.
    #[error("allocations_per_consultation and max_allocations must be at least 1")]
    ZeroQuota,
    /// A listening socket could not be bound.
    #[error("could not bind the relay's listening sockets")]
    Bind(#[source] std::io::Error),
    /// Neither UDP nor TCP is to be served, or a relayed address is
    /// unspecified.
    #[error("the relay must serve UDP or TCP, on concrete relayed addresses")]
    NothingToServe,
}

/// An embedded TURN relay (RFC 8656 over UDP) that also answers STUN Binding
/// requests, with coturn-compatible TURN REST credentials, a peer deny list,
/// a per-consultation allocation quota, teardown per consultation or per
/// participant, and counters of the media it relayed.
///
/// Lifecycle: [`Relay::start`], then any number of
/// [`Relay::close_reference`]/[`Relay::close_references`] and queries
/// ([`Relay::media_counters`], [`Relay::allocations_for`], …), then
/// [`Relay::shutdown`]. Dropping a relay without shutting it down closes it
/// in the background.
pub struct Relay {
    engine: Arc<Engine>,
    tasks: JoinSet<()>,
    /// The threads serving the UDP listening sockets.
    threads: Vec<std::thread::JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl Relay {
    /// Binds the listening sockets and starts serving.
    pub async fn start(config: RelayConfig) -> Result<Self, RelayError> {
        if config.secret.expose_secret().is_empty() {
            return Err(RelayError::EmptySecret);
        }
        if config.realm.is_empty() {
            return Err(RelayError::EmptyRealm);
        }
        if config.allocations_per_consultation == 0 || config.max_allocations == 0 {
            return Err(RelayError::ZeroQuota);
        }
        if !config.udp && !config.tcp {
            return Err(RelayError::NothingToServe);
        }
        let public_ip = match config.public_ip {
            Some(ip) => ip,
            None if config.listen.ip().is_unspecified() => {
                return Err(RelayError::PublicIpRequired)
            }
            None => config.listen.ip(),
        };
        if let Some(ports) = &config.relay_ports {
            if *ports.start() == 0 || ports.is_empty() {
                return Err(RelayError::InvalidPortRange);
            }
        }
        let mut addresses = vec![RelayAddress {
            public: public_ip,
            bind: config.relay_bind_ip.unwrap_or(config.listen.ip()),
        }];
        addresses.extend(config.extra_addresses.iter().copied());
        if addresses.iter().any(|a| a.public.is_unspecified()) {
            return Err(RelayError::NothingToServe);
        }

        let mut tasks = JoinSet::new();
        let (udp_sockets, tcp, local_addr) = bind_listeners(&config).await?;

        let gate = Gate::new(GateConfig {
            secret: config.secret.clone(),
            realm: config.realm.clone(),
            policy: config.peer_policy,
            allocations_per_consultation: config.allocations_per_consultation,
            max_allocations: config.max_allocations,
            max_credential_ttl: config.max_credential_ttl,
        });
        let settings = Settings {
            realm: config.realm.clone(),
            policy: config.peer_policy,
            channel_bind_timeout: config.channel_bind_timeout,
            addresses,
            ports: config.relay_ports.clone(),
            socket_buffer: config.socket_buffer,
        };
        // Relay sockets' receive tasks hold the engine strongly only while
        // their allocation lives; the engine reaches the runtime through a
        // weak reference to itself.
        let engine = Arc::new_cyclic(|me: &Weak<Engine>| {
            let me = me.clone();
            Engine::new(
                settings,
                gate,
                config.max_credential_ttl,
                Box::new(move |allocation| {
                    let Some(engine) = me.upgrade() else { return };
                    for index in 0..allocation.relays.len() {
                        let task = tokio::spawn(transport::serve_relay(
                            Arc::clone(&engine),
                            Arc::clone(&allocation),
                            index,
                        ));
                        allocation.add_task(task.abort_handle());
                    }
                }),
            )
        });
        let mut threads = Vec::with_capacity(udp_sockets.len());
        for (index, socket) in udp_sockets.into_iter().enumerate() {
            match transport::serve_udp_thread(Arc::clone(&engine), socket, index) {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    engine.clear();
                    return Err(RelayError::Bind(err));
                }
            }
        }
        if let Some(listener) = tcp {
            tasks.spawn(transport::serve_tcp(Arc::clone(&engine), listener));
        }
        tasks.spawn(transport::sweep(Arc::clone(&engine)));
        tracing::info!(
            port = local_addr.port(),
            udp = config.udp,
            tcp = config.tcp,
            "TURN relay listening"
        );
        Ok(Self {
            engine,
            tasks,
            threads,
            local_addr,
        })
    }

    /// The address the relay listens on (with the port the OS picked when
    /// configured with port 0); UDP and TCP share the port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes every allocation made with credentials of `reference`, and
    /// refuses those credentials from now on (for
    /// [`RelayConfig::max_credential_ttl`], by which time every credential
    /// issued before the close has expired). Returns how many allocations
    /// were closed.
    ///
    /// A consultation-only reference (`"c"`) closes the consultation: its
    /// own credentials and those of every participant under it
    /// (`"c.p1"`, `"c.p2"`, …). A participant reference (`"c.p1"`) closes
    /// that participant only, e.g. a patient whose join link was revoked,
    /// while the others keep their relay. See [`Reference::covers`].
    ///
    /// When it returns, no datagram of those allocations is relayed any
    /// more, in either direction. Closing a closed reference again is
    /// harmless (and cheap); its media counters stay readable.
    pub async fn close_reference(&self, reference: &Reference) -> Result<usize, RelayError> {
        self.close_references([reference]).await
    }

    /// [`Relay::close_reference`] for many references at once, with one
    /// sweep: for a server that, on start-up, closes again every reference
    /// it closed within the last [`RelayConfig::max_credential_ttl`].
    /// Returns how many allocations were closed.
    pub async fn close_references<'a>(
        &self,
        references: impl IntoIterator<Item = &'a Reference>,
    ) -> Result<usize, RelayError> {
        let closing = Closing::new(references);
        if closing.is_empty() {
            return Ok(0);
        }
        // The gate refuses the credentials first, then the allocations go
        // (their valves shut, their relay sockets close); see Engine::close.
        let references: Vec<&Reference> = closing.references().collect();
        let valves = self
            .engine
            .close(Now::read(), &references, |r| closing.covers(r));
        let closed = valves.len();
        drain(&valves, IN_FLIGHT_WAIT).await;
        tracing::info!(
            references = closing.len(),
            allocations = closed,
            "closed references"
        );
        Ok(closed)
    }

    /// The media this relay observed, per reference: for a consultation-only
    /// reference, the counters of itself and of every participant under it;
    /// for a participant reference, its own. References that allocated but
    /// relayed no media are there with zero counters; references that never
    /// allocated here are absent.
    ///
    /// Counted is what the relay forwarded and what looks like RTP/RTCP
    /// (first byte 128..=191, RFC 7983); see [`MediaCounters`]. Counters
    /// outlive the allocations (an expired or closed allocation's media is
    /// still there) and are forgotten once a reference has had no allocation
    /// and no media for [`RelayConfig::max_credential_ttl`]. The relay keeps
    /// them in memory only: a restart forgets them.
    pub fn media_counters(&self, reference: &Reference) -> HashMap<Reference, MediaCounters> {
        self.engine.counters(reference)
    }

    /// What the relay did since it started: live allocations, media relayed
    /// each way, refusals by kind and the kernel's receive-buffer drops on
    /// the listening sockets. For monitoring (`/metrics`).
    pub async fn stats(&self) -> Result<RelayStats, RelayError> {
        Ok(self.engine.totals.snapshot(
            self.engine.allocation_count(),
            crate::stats::kernel_drops(self.local_addr.port()),
        ))
    }

    /// Number of live allocations.
    pub async fn allocation_count(&self) -> Result<usize, RelayError> {
        Ok(self.engine.allocation_count())
    }

    /// Number of live allocations made with credentials of a reference that
    /// `reference` [covers](Reference::covers): for a consultation, its own
    /// and all its participants'.
    pub async fn allocations_for(&self, reference: &Reference) -> Result<usize, RelayError> {
        Ok(self.engine.allocations_for(reference))
    }

    /// Serves TURN over one accepted byte stream: a TCP connection, or a TLS
    /// connection whose handshake the caller completed (Konsult's HTTPS
    /// listener hands over connections for the relay's host name this way).
    /// `client` is the peer address of the underlying TCP connection. The
    /// stream is served in a task of its own until the client closes it, its
    /// allocation ends, it allocates nothing within 30 s, or the relay shuts
    /// down.
    pub fn serve_stream<S>(&self, stream: S, client: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        tokio::spawn(transport::serve_stream(
            Arc::clone(&self.engine),
            stream,
            client,
        ));
    }

    /// Stops serving: closes every allocation and the listening sockets.
    pub async fn shutdown(mut self) -> Result<(), RelayError> {
        self.stop();
        while self.tasks.join_next().await.is_some() {}
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        Ok(())
    }

    fn stop(&mut self) {
        self.tasks.abort_all();
        self.engine.clear();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until every valve is drained (shut, and nothing still being
/// written), checking every millisecond, for at most `max_wait`. Returns at
/// once when there are none.
async fn drain(valves: &[Arc<Valve>], max_wait: Duration) {
    let deadline = tokio::time::Instant::now() + max_wait;
    while !valves.iter().all(|valve| valve.is_drained()) {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Binds the UDP listening sockets and the TCP listener on one port. With
/// port 0 the OS picks it for UDP, and it may be taken for TCP (another
/// listener, an outgoing connection's local port): then another is tried.
async fn bind_listeners(
    config: &RelayConfig,
) -> Result<(Vec<std::net::UdpSocket>, Option<TcpListener>, SocketAddr), RelayError> {
    const ATTEMPTS: usize = 10;
    let mut attempt = 1;
    loop {
        let (udp, addr) = bind_udp(config).await?;
        if !config.tcp {
            return Ok((udp, None, addr));
        }
        let tcp_addr = SocketAddr::new(config.listen.ip(), addr.port());
        match TcpListener::bind(tcp_addr).await {
            Ok(listener) => {
                let addr = if config.udp {
                    addr
                } else {
                    listener.local_addr().map_err(RelayError::Bind)?
                };
                return Ok((udp, Some(listener), addr));
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && config.listen.port() == 0
                    && config.udp
                    && attempt < ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(e) => return Err(RelayError::Bind(e)),
        }
    }
}

/// Binds the UDP listening sockets (none when UDP is off: then the TCP
/// listener picks the port).
async fn bind_udp(
    config: &RelayConfig,
) -> Result<(Vec<std::net::UdpSocket>, SocketAddr), RelayError> {
    if !config.udp {
        return Ok((Vec::new(), config.listen));
    }
    let count = match config.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let first = transport::listening_socket(config.listen, config.socket_buffer)
        .map_err(RelayError::Bind)?;
    let addr = first.local_addr().map_err(RelayError::Bind)?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(
            transport::listening_socket(addr, config.socket_buffer).map_err(RelayError::Bind)?,
        );
    }
    Ok((sockets, addr))
}

/// The references being closed, to test many allocations against many
/// references at once with [`Reference::covers`]'s rule.
struct Closing<'a> {
    references: HashSet<&'a str>,
    list: Vec<&'a Reference>,
}

impl<'a> Closing<'a> {
    fn new(references: impl IntoIterator<Item = &'a Reference>) -> Self {
        let mut list: Vec<&Reference> = references.into_iter().collect();
        list.sort();
        list.dedup();
        Self {
            references: list.iter().map(|r| r.as_str()).collect(),
            list,
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn references(&self) -> impl Iterator<Item = &'a Reference> + '_ {
        self.list.iter().copied()
    }

    /// Whether one of the references being closed covers `reference`.
    fn covers(&self, reference: &Reference) -> bool {
        self.references.contains(reference.as_str())
            || self.references.contains(reference.consultation_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RelayConfig {
        let mut c = RelayConfig::new(SecretString::from("s"));
        c.listen = "127.0.0.1:0".parse().unwrap();
        c
    }

    #[tokio::test]
    async fn configuration_errors_are_typed() {
        let mut c = config();
        c.secret = SecretString::from("");
        assert!(matches!(
            Relay::start(c).await,
            Err(RelayError::EmptySecret)
        ));
        let mut c = config();
        c.realm.clear();
        assert!(matches!(Relay::start(c).await, Err(RelayError::EmptyRealm)));
        let mut c = config();
        c.allocations_per_consultation = 0;
        assert!(matches!(Relay::start(c).await, Err(RelayError::ZeroQuota)));
        let mut c = config();
        c.listen = "0.0.0.0:0".parse().unwrap();
        assert!(matches!(
            Relay::start(c).await,
            Err(RelayError::PublicIpRequired)
        ));
        let mut c = config();
        c.relay_ports = Some(0..=10);
        assert!(matches!(
            Relay::start(c).await,
            Err(RelayError::InvalidPortRange)
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 50_000..=49_000;
        let mut c = config();
        c.relay_ports = Some(empty);
        assert!(matches!(
            Relay::start(c).await,
            Err(RelayError::InvalidPortRange)
        ));
    }

    #[tokio::test]
    async fn defaults_are_the_documented_ones() {
        let c = RelayConfig::new(SecretString::from("s"));
        assert_eq!(c.listen, "0.0.0.0:3478".parse().unwrap());
        assert_eq!(c.allocations_per_consultation, 48);
        assert!(!c.peer_policy.allow_loopback);
        let relay = Relay::start(config()).await.unwrap();
        assert!(relay.local_addr().port() != 0);
        assert_eq!(relay.allocation_count().await.unwrap(), 0);
        relay.shutdown().await.unwrap();
    }
}
