//! The running relay: a `turn` server behind the [`Gate`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use tokio::net::UdpSocket;
use turn::auth::{generate_auth_key, AuthHandler};
use turn::relay::relay_range::RelayAddressGeneratorRanges;
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::relay::RelayAddressGenerator;
use turn::server::config::{ConnConfig, ServerConfig};
use turn::server::Server;
use webrtc_util::vnet::net::Net;

use crate::conn::{drain, FilteringRelayGenerator, GateConn, InFlight, Meter};
use crate::credentials::{Reference, TurnCredentials};
use crate::gate::{username_reference, Gate, GateConfig};
use crate::media::MediaCounters;
use crate::peer_policy::PeerPolicy;
use crate::stats::RelayStats;

/// The longest each of [`Relay::close_references`]'s two waits lasts: for
/// the datagrams already in the server's hands to be handled, and for
/// relayed writes already under way to finish. It waits only for those (not
/// for the server to be idle), so this bound is reached only if the server
/// is stuck; when nothing is in flight it does not wait at all.
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
    /// the next Allocate gets 486. Default 24: a browser allocates one per
    /// ICE transport and restart, and each side may reconnect from a new
    /// network while its old allocations time out, so a consultation stays
    /// well below.
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
}

impl RelayConfig {
    /// The standard TURN/STUN port.
    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3478);
    /// Default [`RelayConfig::max_allocations`].
    pub const DEFAULT_MAX_ALLOCATIONS: usize = 10_000;
    /// Default [`RelayConfig::allocations_per_consultation`].
    pub const DEFAULT_ALLOCATIONS_PER_CONSULTATION: usize = 24;
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
    /// The listening socket could not be bound.
    #[error("could not bind the relay's UDP socket")]
    Bind(#[source] std::io::Error),
    /// The `turn` server refused the configuration or failed.
    #[error("TURN server error")]
    Turn(#[source] turn::Error),
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
    server: Arc<Server>,
    gate: Arc<Mutex<Gate>>,
    meter: Arc<Meter>,
    in_flight: InFlight,
    local_addr: SocketAddr,
    shut_down: bool,
}

impl Relay {
    /// Binds the listening socket and starts serving.
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
        let public_ip = match config.public_ip {
            Some(ip) => ip,
            None if config.listen.ip().is_unspecified() => {
                return Err(RelayError::PublicIpRequired)
            }
            None => config.listen.ip(),
        };
        let bind_ip = config.relay_bind_ip.unwrap_or(config.listen.ip());
        let relay_generator = relay_generator(&config, public_ip, bind_ip)?;

        let socket = Arc::new(
            UdpSocket::bind(config.listen)
                .await
                .map_err(RelayError::Bind)?,
        );
        let local_addr = socket.local_addr().map_err(RelayError::Bind)?;
        let gate = Arc::new(Mutex::new(Gate::new(GateConfig {
            secret: config.secret.clone(),
            realm: config.realm.clone(),
            policy: config.peer_policy,
            allocations_per_consultation: config.allocations_per_consultation,
            max_allocations: config.max_allocations,
            relays_ipv6: public_ip.is_ipv6(),
            max_credential_ttl: config.max_credential_ttl,
        })));
        let meter = Arc::new(Meter::new(config.max_credential_ttl));
        let server_slot = Arc::new(OnceLock::new());
        let (gate_conn, in_flight) = GateConn::new(
            socket,
            Arc::clone(&gate),
            Arc::clone(&server_slot),
            Arc::clone(&meter),
        );

        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn: Arc::new(gate_conn),
                relay_addr_generator: Box::new(FilteringRelayGenerator {
                    inner: relay_generator,
                    policy: config.peer_policy,
                    meter: Arc::clone(&meter),
                }),
            }],
            realm: config.realm.clone(),
            auth_handler: Arc::new(RestAuthHandler {
                secret: config.secret.clone(),
            }),
            channel_bind_timeout: config.channel_bind_timeout,
            alloc_close_notify: None,
        })
        .await
        .map_err(RelayError::Turn)?;
        let server = Arc::new(server);
        // The slot is fresh, so this cannot already be set.
        let _ = server_slot.set(Arc::downgrade(&server));
        tracing::info!(port = local_addr.port(), "TURN relay listening");

        Ok(Self {
            server,
            gate,
            meter,
            in_flight,
            local_addr,
            shut_down: false,
        })
    }

    /// The address the relay listens on (with the port the OS picked when
    /// configured with port 0).
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

    /// [`Relay::close_reference`] for many references at once, with one wait
    /// and one sweep: for a server that, on start-up, closes again every
    /// reference it closed within the last [`RelayConfig::max_credential_ttl`].
    /// Returns how many allocations were closed.
    pub async fn close_references<'a>(
        &self,
        references: impl IntoIterator<Item = &'a Reference>,
    ) -> Result<usize, RelayError> {
        let closing = Closing::new(references);
        if closing.is_empty() {
            return Ok(0);
        }
        // 1. Refuse the credentials: nothing new passes the gate.
        self.gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .close_references(SystemTime::now(), closing.references());
        // 2. Silence the live allocations: none starts relaying a datagram
        //    from now on.
        let mut valves = self.meter.revoke(|r| closing.covers(r));
        // 3. A request that passed the gate just before step 1 may still be
        //    in the server's hands; let it finish, so that an allocation it
        //    creates is silenced and swept too, and let the datagrams that
        //    were being relayed when step 2 came go out.
        self.in_flight.settle(IN_FLIGHT_WAIT).await;
        valves.extend(self.meter.revoke(|r| closing.covers(r)));
        drain(&valves, IN_FLIGHT_WAIT).await;
        // 4. Delete the allocations, freeing their ports and quota.
        let infos = self
            .server
            .get_allocations_info(None)
            .await
            .map_err(RelayError::Turn)?;
        let mut usernames = BTreeSet::new();
        let mut closed = 0;
        for info in infos.values() {
            if username_reference(&info.username).is_some_and(|r| closing.covers(&r)) {
                usernames.insert(info.username.clone());
                closed += 1;
            }
        }
        for username in usernames {
            self.server
                .delete_allocations_by_username(username)
                .await
                .map_err(RelayError::Turn)?;
        }
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
        self.meter.counters(reference)
    }

    /// What the relay did since it started: live allocations, media relayed
    /// each way, refusals by kind and the kernel's receive-buffer drops on
    /// the listening socket. For monitoring (`/metrics`).
    pub async fn stats(&self) -> Result<RelayStats, RelayError> {
        let allocations = self.allocation_count().await?;
        Ok(self.meter.totals.snapshot(
            allocations,
            crate::stats::kernel_drops(self.local_addr.port()),
        ))
    }

    /// Number of live allocations.
    pub async fn allocation_count(&self) -> Result<usize, RelayError> {
        let infos = self
            .server
            .get_allocations_info(None)
            .await
            .map_err(RelayError::Turn)?;
        Ok(infos.len())
    }

    /// Number of live allocations made with credentials of a reference that
    /// `reference` [covers](Reference::covers): for a consultation, its own
    /// and all its participants'.
    pub async fn allocations_for(&self, reference: &Reference) -> Result<usize, RelayError> {
        let infos = self
            .server
            .get_allocations_info(None)
            .await
            .map_err(RelayError::Turn)?;
        Ok(infos
            .values()
            .filter(|i| username_reference(&i.username).is_some_and(|r| reference.covers(&r)))
            .count())
    }

    /// Stops serving: closes every allocation and the listening socket.
    pub async fn shutdown(mut self) -> Result<(), RelayError> {
        self.shut_down = true;
        self.server.close().await.map_err(RelayError::Turn)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let server = Arc::clone(&self.server);
            runtime.spawn(async move {
                let _ = server.close().await;
            });
        }
    }
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

fn relay_generator(
    config: &RelayConfig,
    public_ip: IpAddr,
    bind_ip: IpAddr,
) -> Result<Box<dyn RelayAddressGenerator + Send + Sync>, RelayError> {
    // The turn crate formats "{address}:{port}", so an IPv6 literal needs
    // its brackets.
    let address = match bind_ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let net = Arc::new(Net::new(None));
    Ok(match &config.relay_ports {
        None => Box::new(RelayAddressGeneratorStatic {
            relay_address: public_ip,
            address,
            net,
        }),
        Some(ports) => {
            if *ports.start() == 0 || ports.is_empty() {
                return Err(RelayError::InvalidPortRange);
            }
            Box::new(RelayAddressGeneratorRanges {
                relay_address: public_ip,
                min_port: *ports.start(),
                max_port: *ports.end(),
                max_retries: 0,
                address,
                net,
            })
        }
    })
}

/// The `turn` server's own credential check: it derives the long-term key
/// from the TURN REST username. The [`Gate`] has already refused bad
/// credentials with 401; this keeps the server safe on its own too.
struct RestAuthHandler {
    secret: SecretString,
}

impl AuthHandler for RestAuthHandler {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        let creds = TurnCredentials::verify(&self.secret, username, SystemTime::now())
            .map_err(|err| turn::Error::Other(err.to_string()))?;
        Ok(generate_auth_key(
            username,
            realm,
            creds.password().expose_secret(),
        ))
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
        assert_eq!(c.allocations_per_consultation, 24);
        assert!(!c.peer_policy.allow_loopback);
        let relay = Relay::start(config()).await.unwrap();
        assert!(relay.local_addr().port() != 0);
        assert_eq!(relay.allocation_count().await.unwrap(), 0);
        relay.shutdown().await.unwrap();
    }
}
