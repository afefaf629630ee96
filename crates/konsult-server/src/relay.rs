//! TURN for the signaling server: the embedded relay started from the
//! settings, the shared secret, the ICE server list handed out in `welcome`,
//! and closing a consultation's allocations when its call ends.
//!
//! The embedded relay is offered over UDP and TCP on its own port
//! (`turn.listen`) and, with `turn.tls_host`, over TLS on the HTTPS port
//! (`turns:`, for networks that let only HTTPS out; the HTTPS listener
//! hands those connections over, `crate::tls_router`). Clients are given
//! the URLs in that order, fastest first.
//!
//! Credentials are TURN REST credentials (`konsult_relay::TurnCredentials`):
//! username `"<expiry>:<reference>"`, password
//! `base64(HMAC-SHA1(secret, username))`. The embedded relay and any external
//! coturn (`use-auth-secret`, same `static-auth-secret`) check them without a
//! round trip. The reference is [`Turn::participant_reference`]: a keyed
//! hash of the consultation id, a dot, and a keyed hash naming the
//! participant (the therapist, or the patient's join link), so the
//! clear-text STUN username names neither a person nor the consultation id
//! that appears in the clinic's data. Closing the consultation part closes
//! every participant; closing a participant (a revoked link) only that one.
//!
//! The embedded relay counts the media it relays per participant
//! reference; [`Turn::observed`] turns the counts into what the signaling
//! core needs to establish two-way media by relay-observed evidence.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use konsult_domain::evidence::ObservedFlow;
use konsult_protocol::{CandidatePolicy, IceServer};
use konsult_relay::{Flow, PeerPolicy, Reference, Relay, RelayConfig, TurnCredentials};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::config::Settings;

pub mod check;

pub use check::{check_relays, try_allocation, Transport, UrlCheck};

/// The longest a TURN credential handed to a client lives, whatever the
/// consultation window says. Below the relay's own 24-hour ceiling
/// (`RelayConfig::max_credential_ttl`), so a credential is never refused for
/// being too long-lived.
pub const MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(12 * 3600);

/// Name of the generated shared-secret file in the data directory.
pub const SECRET_FILE: &str = "turn.secret";

/// Who a TURN credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participant<'a> {
    /// The consultation's therapist.
    Therapist,
    /// The patient who came with this join link ([`konsult_store::consultations::link_ref`]).
    Patient {
        /// The link's reference.
        link: &'a str,
    },
}

/// TURN as the signaling server sees it; cheap to share behind an `Arc`.
///
/// Lifecycle: [`Turn::start`] (or [`Turn::disabled`]), then any number of
/// [`Turn::ice_servers`] and [`Turn::close_consultation`], then
/// [`Turn::shutdown`] at graceful shutdown.
pub struct Turn {
    /// `None` when there is neither an embedded nor an external relay.
    secret: Option<SecretString>,
    embedded: Option<Embedded>,
    external_urls: Vec<String>,
    /// The addresses relay candidates may carry in relay-only calls.
    relays: konsult_signal::filter::Relays,
}

struct Embedded {
    /// `None` once shut down.
    relay: RwLock<Option<Relay>>,
    urls: EmbeddedUrls,
}

/// Where clients reach the embedded relay, by transport.
#[derive(Debug, Clone)]
struct EmbeddedUrls {
    /// `host:port` of the relay's own port (brackets around IPv6).
    host_port: String,
    /// TURN (and STUN) over UDP there.
    udp: bool,
    /// TURN over TCP there.
    tcp: bool,
    /// TURN over TLS on the HTTPS listener: the relay's host name and the
    /// HTTPS port clients reach.
    tls: Option<(TlsHost, u16)>,
}

impl EmbeddedUrls {
    /// The STUN URL (UDP only; `None` without UDP).
    fn stun(&self) -> Option<String> {
        self.udp.then(|| format!("stun:{}", self.host_port))
    }

    /// The TURN URLs: UDP, TCP, TLS, those that are served.
    fn turn(&self) -> Vec<String> {
        let mut urls = Vec::new();
        if self.udp {
            urls.push(format!("turn:{}?transport=udp", self.host_port));
        }
        if self.tcp {
            urls.push(format!("turn:{}?transport=tcp", self.host_port));
        }
        if let Some((host, port)) = &self.tls {
            urls.push(format!("turns:{}:{port}?transport=tcp", host.as_str()));
        }
        urls
    }
}

/// The relay's host name for TURN over TLS (`turn.tls_host`): a DNS name
/// (letters, digits and hyphens in dot-separated labels; not an IP
/// address), kept in lower case. TLS clients name it in SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHost(String);

/// `turn.tls_host` is not a DNS host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("turn.tls_host must be a host name such as turn.klinik.example (no scheme, port or IP address), not {0:?}")]
pub struct InvalidTlsHost(String);

impl TlsHost {
    /// Parses a host name (a trailing dot is dropped, case is folded).
    pub fn parse(text: &str) -> Result<Self, InvalidTlsHost> {
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let is_ip = name.parse::<IpAddr>().is_ok()
            || name
                .split('.')
                .next_back()
                .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
        if name.is_empty() || name.len() > 253 || is_ip || !name.split('.').all(label_ok) {
            return Err(InvalidTlsHost(text.to_owned()));
        }
        Ok(Self(name))
    }

    /// The name, in lower case.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a TLS client's server name (SNI) is this host.
    pub fn matches(&self, server_name: &str) -> bool {
        server_name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&self.0)
    }
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("embedded", &self.embedded.is_some())
            .field("external_urls", &self.external_urls.len())
            .finish_non_exhaustive()
    }
}

impl Turn {
    /// No relay at all: `welcome` lists no ICE servers (host candidates
    /// only; relay-only consultations cannot connect).
    pub fn disabled() -> Self {
        Self {
            secret: None,
            embedded: None,
            external_urls: Vec::new(),
            relays: konsult_signal::filter::Relays::default(),
        }
    }

    /// The relays handed out to clients, by address: what a relay candidate
    /// must carry to pass the relay-only filter.
    pub fn relays(&self) -> &konsult_signal::filter::Relays {
        &self.relays
    }

    /// Loads (or creates) the shared secret and starts the embedded relay
    /// when `turn.enabled`. `https_port` is the port the server serves
    /// HTTPS on itself (`None`: plain HTTP, or behind a proxy): with
    /// `turn.tls_host`, TURN over TLS is offered there.
    pub async fn start(settings: &Settings, https_port: Option<u16>) -> anyhow::Result<Self> {
        let turn = &settings.turn;
        if !turn.enabled && turn.external_urls.is_empty() {
            return Ok(Self::disabled());
        }
        for url in &turn.external_urls {
            if !(url.starts_with("turn:") || url.starts_with("turns:") || url.starts_with("stun:"))
            {
                anyhow::bail!("turn.external_urls must be turn:, turns: or stun: URLs");
            }
        }
        let secret = match &turn.secret {
            Some(secret) if secret.expose_secret().is_empty() => {
                anyhow::bail!("turn.secret is empty")
            }
            Some(secret) => secret.clone(),
            None => load_or_create_secret(&settings.data_dir.join(SECRET_FILE))?,
        };
        let mut relay_ips = external_relay_ips(&turn.external_urls).await;
        let embedded = if turn.enabled {
            let tls = tls_offer(settings, https_port)?;
            let advertised = advertised_ip(settings)?;
            relay_ips.push(advertised);
            relay_ips.extend(turn.extra_public_ips.iter().copied());
            let mut config = RelayConfig::new(secret.clone());
            config.listen = turn.listen;
            config.public_ip = Some(advertised);
            config.peer_policy = PeerPolicy {
                allow_loopback: turn.allow_loopback_peers,
            };
            config.relay_ports = turn.relay_port_range().map_err(anyhow::Error::msg)?;
            config.allocations_per_consultation = turn.allocations_per_consultation;
            config.max_allocations = turn.max_allocations;
            config.udp = turn.udp;
            config.tcp = turn.tcp;
            config.extra_addresses = turn
                .extra_public_ips
                .iter()
                .map(|ip| konsult_relay::RelayAddress {
                    public: *ip,
                    bind: *ip,
                })
                .collect();
            config.udp_sockets = turn.udp_sockets;
            config.socket_buffer = turn.socket_buffer_bytes;
            let relay = Relay::start(config)
                .await
                .context("cannot start the embedded TURN relay")?;
            let port = relay.local_addr().port();
            if turn.allow_loopback_peers {
                tracing::warn!("the TURN relay may relay to loopback peers: for tests only");
            }
            // A relay candidate over TCP or TLS still relays from a UDP
            // socket at the advertised address: the relay-only filter's
            // addresses are the same whichever way clients come in.
            Some(Embedded {
                relay: RwLock::new(Some(relay)),
                urls: EmbeddedUrls {
                    host_port: format!("{}:{port}", url_host(advertised)),
                    udp: turn.udp,
                    tcp: turn.tcp,
                    tls,
                },
            })
        } else {
            None
        };
        Ok(Self {
            secret: Some(secret),
            embedded,
            external_urls: turn.external_urls.clone(),
            relays: konsult_signal::filter::Relays::new(relay_ips),
        })
    }

    /// The pseudonymous, consultation-scoped reference in TURN usernames:
    /// the first 128 bits of HMAC-SHA256 over the consultation id, keyed
    /// with the shared secret, in hex. Stable for a consultation (so
    /// [`Turn::close_consultation`] finds every allocation of it), and
    /// without the secret it cannot be linked to the consultation.
    pub fn reference(&self, consultation: Uuid) -> Option<Reference> {
        let secret = self.secret.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"konsult turn reference v1\0");
        mac.update(consultation.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Some(Reference::parse(&hex).expect("32 hex digits are a valid reference"))
    }

    /// A participant's reference: the consultation's [`Turn::reference`], a
    /// dot, and the first 64 bits of HMAC-SHA256 over the participant (role
    /// and, for a patient, the join link's reference) in hex. Stable, so the
    /// relay's counts of one participant add up across its credentials.
    pub fn participant_reference(
        &self,
        consultation: Uuid,
        participant: Participant<'_>,
    ) -> Option<Reference> {
        let secret = self.secret.as_ref()?;
        let base = self.reference(consultation)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"konsult turn participant v1\0");
        mac.update(consultation.as_bytes());
        match participant {
            Participant::Therapist => mac.update(b"t"),
            Participant::Patient { link } => {
                mac.update(b"p");
                mac.update(link.as_bytes());
            }
        }
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Some(Reference::for_participant(&base, &hex).expect("32 + 1 + 16 characters"))
    }

    /// The relay URLs handed out under `policy` (no credentials): the
    /// embedded relay's and every external one, in the order of
    /// [`Turn::ice_servers`].
    pub fn urls(&self, policy: CandidatePolicy) -> Vec<String> {
        let mut urls = Vec::new();
        if let Some(embedded) = &self.embedded {
            if policy == CandidatePolicy::All {
                urls.extend(embedded.urls.stun());
            }
            urls.extend(embedded.urls.turn());
        }
        if self.secret.is_some() {
            urls.extend(self.external_urls.iter().cloned());
        }
        urls
    }

    /// The ICE servers for one participant's `welcome`: the embedded relay
    /// (unless relay-only, `stun:` on its port; then one entry with its
    /// `turn:` URLs over UDP and TCP and its `turns:` URL, those served) and
    /// every external URL, all with one fresh credential for the participant's
    /// reference, valid from `now` for `ttl` (capped at
    /// [`MAX_CREDENTIAL_TTL`], at least one second).
    pub fn ice_servers(
        &self,
        consultation: Uuid,
        participant: Participant<'_>,
        policy: CandidatePolicy,
        now: SystemTime,
        ttl: Duration,
    ) -> Vec<IceServer> {
        let (Some(secret), Some(reference)) = (
            &self.secret,
            self.participant_reference(consultation, participant),
        ) else {
            return Vec::new();
        };
        let ttl = ttl.clamp(Duration::from_secs(1), MAX_CREDENTIAL_TTL);
        let creds = match TurnCredentials::issue(secret, &reference, now, ttl) {
            Ok(creds) => creds,
            Err(error) => {
                tracing::error!(%error, "could not issue TURN credentials");
                return Vec::new();
            }
        };
        let username = Some(creds.username().to_string());
        let credential = Some(creds.password().expose_secret().to_owned());
        let mut servers = Vec::new();
        if let Some(embedded) = &self.embedded {
            if policy == CandidatePolicy::All {
                if let Some(stun) = embedded.urls.stun() {
                    servers.push(IceServer {
                        urls: vec![stun],
                        username: None,
                        credential: None,
                    });
                }
            }
            let turn = embedded.urls.turn();
            if !turn.is_empty() {
                servers.push(IceServer {
                    urls: turn,
                    username: username.clone(),
                    credential: credential.clone(),
                });
            }
        }
        if !self.external_urls.is_empty() {
            servers.push(IceServer {
                urls: self.external_urls.clone(),
                username,
                credential,
            });
        }
        servers
    }

    /// Ends the consultation on the embedded relay: its credentials are
    /// refused from now on and its allocations are deleted, so relayed media
    /// stops at once. Returns how many allocations were closed (0 without an
    /// embedded relay). An external coturn is not told: it refuses new
    /// allocations once the credentials expire, but keeps one made before
    /// for as long as its client refreshes it (docs/cluster.md).
    pub async fn close_consultation(&self, consultation: Uuid) -> anyhow::Result<usize> {
        let Some(reference) = self.reference(consultation) else {
            return Ok(0);
        };
        self.close_references(&[reference]).await
    }

    /// Ends one patient's join link on the embedded relay: that link's
    /// credentials are refused and its allocations deleted; the therapist's
    /// stay.
    pub async fn close_link(&self, consultation: Uuid, link: &str) -> anyhow::Result<usize> {
        let Some(reference) =
            self.participant_reference(consultation, Participant::Patient { link })
        else {
            return Ok(0);
        };
        self.close_references(&[reference]).await
    }

    /// Closes consultations and links again after a restart (the relay
    /// forgets what it closed): those that closed in the last
    /// [`MAX_CREDENTIAL_TTL`], whose credentials could still be valid.
    pub async fn reclose(
        &self,
        consultations: &[Uuid],
        links: &[(Uuid, String)],
    ) -> anyhow::Result<usize> {
        let mut references: Vec<Reference> = consultations
            .iter()
            .filter_map(|c| self.reference(*c))
            .collect();
        references.extend(
            links.iter().filter_map(|(c, link)| {
                self.participant_reference(*c, Participant::Patient { link })
            }),
        );
        self.close_references(&references).await
    }

    async fn close_references(&self, references: &[Reference]) -> anyhow::Result<usize> {
        let Some(embedded) = &self.embedded else {
            return Ok(0);
        };
        let guard = embedded.relay.read().await;
        match guard.as_ref() {
            Some(relay) => Ok(relay.close_references(references).await?),
            None => Ok(0),
        }
    }

    /// What the embedded relay saw of the consultation's media, as the two
    /// directions between patient and therapist (`None` without an embedded
    /// relay or before any media passed it). A direction counts what one
    /// side sent into the relay or what the other received from it,
    /// whichever shows more: with only one side relayed, its allocation
    /// sees both directions.
    pub async fn observed(&self, consultation: Uuid) -> Option<(ObservedFlow, ObservedFlow)> {
        let embedded = self.embedded.as_ref()?;
        let base = self.reference(consultation)?;
        let therapist = self.participant_reference(consultation, Participant::Therapist)?;
        let counters = {
            let guard = embedded.relay.read().await;
            guard.as_ref()?.media_counters(&base)
        };
        if counters.is_empty() {
            return None;
        }
        let mut patient_sent = Flow::default();
        let mut patient_received = Flow::default();
        let mut therapist_sent = Flow::default();
        let mut therapist_received = Flow::default();
        for (reference, c) in &counters {
            if *reference == therapist {
                therapist_sent = merge(therapist_sent, c.sent);
                therapist_received = merge(therapist_received, c.received);
            } else if reference.participant_part().is_some() {
                patient_sent = merge(patient_sent, c.sent);
                patient_received = merge(patient_received, c.received);
            }
        }
        Some((
            stronger(observed(patient_sent), observed(therapist_received)),
            stronger(observed(therapist_sent), observed(patient_received)),
        ))
    }

    /// Live allocations of the consultation (all participants) on the
    /// embedded relay (`None` without one). For tests and diagnostics.
    pub async fn allocations_for(&self, consultation: Uuid) -> Option<usize> {
        let embedded = self.embedded.as_ref()?;
        let reference = self.reference(consultation)?;
        let guard = embedded.relay.read().await;
        guard.as_ref()?.allocations_for(&reference).await.ok()
    }

    /// The embedded relay's counters (`None` without one, or once shut
    /// down), for `/metrics`.
    pub async fn stats(&self) -> Option<konsult_relay::RelayStats> {
        let embedded = self.embedded.as_ref()?;
        let guard = embedded.relay.read().await;
        guard.as_ref()?.stats().await.ok()
    }

    /// The relay's host name for TURN over TLS, when the HTTPS listener
    /// offers it (`turn.tls_host` on a server that serves TLS itself, with
    /// the embedded relay): connections naming it go to
    /// [`Turn::serve_stream`].
    pub fn tls_host(&self) -> Option<&TlsHost> {
        let (host, _) = self.embedded.as_ref()?.urls.tls.as_ref()?;
        Some(host)
    }

    /// Serves TURN on the embedded relay over a stream whose TLS handshake
    /// the HTTPS listener completed; `client` is the TCP peer's address
    /// (the relay's to key the allocation by, never logged). Without an
    /// embedded relay, or once it is shut down, the stream is closed.
    pub async fn serve_stream<S>(&self, stream: S, client: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let Some(embedded) = &self.embedded else {
            return;
        };
        if let Some(relay) = embedded.relay.read().await.as_ref() {
            relay.serve_stream(stream, client);
        }
    }

    /// The embedded relay's listen address, if it runs.
    pub async fn relay_addr(&self) -> Option<SocketAddr> {
        let embedded = self.embedded.as_ref()?;
        let guard = embedded.relay.read().await;
        guard.as_ref().map(Relay::local_addr)
    }

    /// Stops the embedded relay (closing every allocation). Idempotent.
    pub async fn shutdown(&self) {
        let Some(embedded) = &self.embedded else {
            return;
        };
        let relay = embedded.relay.write().await.take();
        if let Some(relay) = relay {
            if let Err(error) = relay.shutdown().await {
                tracing::warn!(%error, "the TURN relay did not shut down cleanly");
            } else {
                tracing::info!("TURN relay stopped");
            }
        }
    }
}

/// Two counts of one participant's flow (several links of one patient, or
/// credentials of one reference) as one.
fn merge(a: Flow, b: Flow) -> Flow {
    Flow {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
        first: match (a.first, b.first) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        },
        last: a.last.max(b.last),
    }
}

fn observed(flow: Flow) -> ObservedFlow {
    ObservedFlow {
        packets: flow.packets,
        bytes: flow.bytes,
        span: match (flow.first, flow.last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        },
    }
}

fn stronger(a: ObservedFlow, b: ObservedFlow) -> ObservedFlow {
    if b.packets > a.packets {
        b
    } else {
        a
    }
}

/// The IP clients reach the embedded relay at: `turn.public_ip`, else the
/// listen IP, else (listening on all interfaces) 127.0.0.1 when the server
/// itself only listens on loopback.
fn advertised_ip(settings: &Settings) -> anyhow::Result<IpAddr> {
    let turn = &settings.turn;
    if let Some(ip) = turn.public_ip {
        return Ok(ip);
    }
    let ip = turn.listen.ip();
    if !ip.is_unspecified() {
        return Ok(ip);
    }
    if settings.listen.ip().is_loopback() {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    anyhow::bail!(
        "turn.listen is on all interfaces: set turn.public_ip to the address clients reach the relay at"
    )
}

/// TURN over TLS, when offered: `turn.tls_host` and the HTTPS port
/// patients reach (`public_url`'s port when it is an `https:` URL, else
/// the port served on). `https_port` is `None` when the server does not
/// serve TLS itself: then `turn.tls_host` is ignored, with a warning.
fn tls_offer(
    settings: &Settings,
    https_port: Option<u16>,
) -> anyhow::Result<Option<(TlsHost, u16)>> {
    let Some(text) = &settings.turn.tls_host else {
        return Ok(None);
    };
    let host = TlsHost::parse(text)?;
    let Some(served) = https_port else {
        tracing::warn!("turn.tls_host is ignored: this server does not serve TLS itself (tls.cert, or a public listen address)");
        return Ok(None);
    };
    let public = public_https(settings);
    if let Some((name, _)) = public {
        if host.matches(name) {
            anyhow::bail!(
                "turn.tls_host must be a name of its own, not public_url's host {name}: every HTTPS connection to it would go to the relay"
            );
        }
    }
    Ok(Some((host, public.map_or(served, |(_, port)| port))))
}

/// `public_url`'s host and port when it is an `https:` URL (443 unless it
/// names a port).
fn public_https(settings: &Settings) -> Option<(&str, u16)> {
    let rest = settings.public_url.as_deref()?.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => 443,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, 443)),
    }
}

/// How long resolving an external relay's host name may take at start-up.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The addresses of the external relays: each `turn:`/`turns:` URL's host,
/// as written if it is an IP address, else resolved once at start-up. A name
/// that does not resolve is logged: relay-only calls through that relay
/// would find their candidates dropped.
async fn external_relay_ips(urls: &[String]) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for url in urls {
        let Some((host, port)) = turn_url_host(url) else {
            continue;
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            ips.push(ip);
            continue;
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(found)) => ips.extend(found.map(|a| a.ip())),
            _ => tracing::warn!(
                relay = host,
                "cannot resolve an external relay: relay-only candidates through it will be dropped"
            ),
        }
    }
    ips
}

/// The host and port of a `turn:` or `turns:` URL (`turn:host[:port][?…]`,
/// IPv6 in brackets); `None` for `stun:` and anything else.
fn turn_url_host(url: &str) -> Option<(&str, u16)> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("turns:") {
        (rest, 5349)
    } else {
        (url.strip_prefix("turn:")?, 3478)
    };
    let rest = rest.split('?').next()?;
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then_some((host, port))
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// Reads the shared secret file, creating it (mode 0600, 32 random bytes in
/// base64) on first run.
fn load_or_create_secret(path: &Path) -> anyhow::Result<SecretString> {
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
                }
            }
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let text = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write as _;
        let mut file = options
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        tracing::info!("created a new TURN shared secret file");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the TURN secret file {}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        anyhow::bail!("the TURN secret file {} is empty", path.display());
    }
    Ok(SecretString::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        let mut s = Settings {
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        };
        s.turn.listen = "127.0.0.1:0".parse().unwrap();
        s
    }

    #[test]
    fn turn_urls_name_their_relay() {
        assert_eq!(
            turn_url_host("turn:203.0.113.7:3478?transport=udp"),
            Some(("203.0.113.7", 3478))
        );
        assert_eq!(
            turn_url_host("turns:relay.example:443?transport=tcp"),
            Some(("relay.example", 443))
        );
        assert_eq!(
            turn_url_host("turn:[2001:db8::7]"),
            Some(("2001:db8::7", 3478))
        );
        assert_eq!(
            turn_url_host("turns:relay.example"),
            Some(("relay.example", 5349))
        );
        assert_eq!(turn_url_host("stun:203.0.113.7"), None);
        assert_eq!(turn_url_host("turn::3478"), None);
    }

    #[test]
    fn relay_host_names_are_dns_names_in_lower_case() {
        let host = TlsHost::parse("TURN.Klinik.Example.").unwrap();
        assert_eq!(host.as_str(), "turn.klinik.example");
        assert!(host.matches("turn.klinik.example"));
        assert!(host.matches("Turn.Klinik.Example."));
        assert!(!host.matches("klinik.example"));
        assert_eq!(
            TlsHost::parse("turn.localhost").unwrap().as_str(),
            "turn.localhost"
        );
        for bad in [
            "",
            "203.0.113.7",
            "::1",
            "turn.klinik.example:443",
            "https://turn.klinik.example",
            "turn..example",
            "-turn.example",
            "turn_relay.example",
            "turn.example/x",
        ] {
            let err = TlsHost::parse(bad).unwrap_err().to_string();
            assert!(err.contains("turn.tls_host"), "{bad}: {err}");
        }
    }

    #[test]
    fn embedded_urls_come_udp_then_tcp_then_tls() {
        let mut urls = EmbeddedUrls {
            host_port: "203.0.113.10:3478".into(),
            udp: true,
            tcp: true,
            tls: Some((TlsHost::parse("turn.klinik.example").unwrap(), 443)),
        };
        assert_eq!(urls.stun().as_deref(), Some("stun:203.0.113.10:3478"));
        assert_eq!(
            urls.turn(),
            [
                "turn:203.0.113.10:3478?transport=udp",
                "turn:203.0.113.10:3478?transport=tcp",
                "turns:turn.klinik.example:443?transport=tcp",
            ]
        );
        urls.udp = false;
        urls.tls = None;
        assert_eq!(urls.stun(), None, "STUN is UDP only");
        assert_eq!(urls.turn(), ["turn:203.0.113.10:3478?transport=tcp"]);
    }

    #[test]
    fn tls_is_offered_on_the_https_port_patients_reach() {
        let mut s = Settings::default();
        s.turn.tls_host = Some("turn.klinik.example".into());
        let host = TlsHost::parse("turn.klinik.example").unwrap();
        // Not served over TLS: ignored.
        assert_eq!(tls_offer(&s, None).unwrap(), None);
        assert_eq!(
            tls_offer(&s, Some(8443)).unwrap(),
            Some((host.clone(), 8443))
        );
        // public_url's port, 443 unless it names one.
        s.public_url = Some("https://video.klinik.example".into());
        assert_eq!(
            tls_offer(&s, Some(8443)).unwrap(),
            Some((host.clone(), 443))
        );
        s.public_url = Some("https://video.klinik.example:9443/".into());
        assert_eq!(tls_offer(&s, Some(8443)).unwrap(), Some((host, 9443)));
        // The dashboard's own name would send every visitor to the relay.
        s.public_url = Some("https://Turn.Klinik.Example".into());
        let err = tls_offer(&s, Some(443)).unwrap_err().to_string();
        assert!(err.contains("public_url"), "{err}");
        s.turn.tls_host = Some("203.0.113.7".into());
        assert!(tls_offer(&s, Some(443)).is_err());
    }

    #[tokio::test]
    async fn the_relays_are_the_embedded_and_the_external_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.turn.external_urls = vec![
            "turn:203.0.113.7:3478?transport=udp".into(),
            "turns:[2001:db8::7]:443?transport=tcp".into(),
        ];
        let turn = Turn::start(&s, None).await.unwrap();
        let relays: Vec<IpAddr> = turn.relays().iter().copied().collect();
        assert_eq!(
            relays,
            ["127.0.0.1", "203.0.113.7", "2001:db8::7"]
                .map(|ip| ip.parse::<IpAddr>().unwrap())
                .to_vec()
        );
        turn.shutdown().await;
    }

    #[tokio::test]
    async fn the_secret_is_generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(SECRET_FILE);
        let a = load_or_create_secret(&path).unwrap();
        let b = load_or_create_secret(&path).unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().len() >= 43);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn ice_servers_carry_rest_credentials_the_relay_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.turn.external_urls = vec!["turn:coturn.example:3478?transport=udp".into()];
        let turn = Turn::start(&s, None).await.unwrap();
        let consultation = Uuid::from_u128(42);
        let now = SystemTime::now();
        let servers = turn.ice_servers(
            consultation,
            Participant::Therapist,
            CandidatePolicy::All,
            now,
            Duration::from_secs(600),
        );
        let port = turn.relay_addr().await.unwrap().port();
        assert_eq!(servers.len(), 3, "{servers:?}");
        assert_eq!(servers[0].urls, vec![format!("stun:127.0.0.1:{port}")]);
        assert_eq!(servers[0].username, None);
        assert_eq!(
            servers[1].urls,
            vec![
                format!("turn:127.0.0.1:{port}?transport=udp"),
                format!("turn:127.0.0.1:{port}?transport=tcp"),
            ]
        );
        assert_eq!(servers[2].urls, s.turn.external_urls);
        let username = servers[1].username.clone().unwrap();
        assert_eq!(servers[2].username.as_deref(), Some(username.as_str()));
        // `expiry:reference`, the reference pseudonymous (not the id).
        let (expiry, reference) = username.split_once(':').unwrap();
        let expiry: u64 = expiry.parse().unwrap();
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(expiry, unix + 600);
        assert_eq!(reference.len(), 32 + 1 + 16, "consultation.participant");
        assert!(!username.contains(&consultation.to_string()));
        assert!(!username.contains(&consultation.simple().to_string()));
        // The password is the coturn REST password under the file's secret.
        let secret = load_or_create_secret(&dir.path().join(SECRET_FILE)).unwrap();
        let expected = TurnCredentials::verify(&secret, &username, now).unwrap();
        assert_eq!(
            servers[1].credential.as_deref(),
            Some(expected.password().expose_secret())
        );
        // Relay-only leaves out the STUN entry.
        let relay_only = turn.ice_servers(
            consultation,
            Participant::Patient { link: "abc" },
            CandidatePolicy::RelayOnly,
            now,
            Duration::from_secs(600),
        );
        assert!(relay_only
            .iter()
            .all(|s| s.urls.iter().all(|u| !u.starts_with("stun:"))));
        turn.shutdown().await;
        assert_eq!(turn.relay_addr().await, None);
        turn.shutdown().await;
    }

    #[tokio::test]
    async fn references_are_stable_per_consultation_and_differ_between_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.turn.enabled = false;
        s.turn.external_urls = vec!["turns:coturn.example:5349".into()];
        s.turn.secret = Some(SecretString::from("configured"));
        let turn = Turn::start(&s, None).await.unwrap();
        let a = turn.reference(Uuid::from_u128(1)).unwrap();
        assert_eq!(Some(a.clone()), turn.reference(Uuid::from_u128(1)));
        assert_ne!(Some(a.clone()), turn.reference(Uuid::from_u128(2)));
        // Participants share the consultation part and differ from each other.
        let c = Uuid::from_u128(1);
        let t = turn
            .participant_reference(c, Participant::Therapist)
            .unwrap();
        let p1 = turn
            .participant_reference(c, Participant::Patient { link: "l1" })
            .unwrap();
        let p2 = turn
            .participant_reference(c, Participant::Patient { link: "l2" })
            .unwrap();
        assert_eq!(t.consultation_part(), a);
        assert_eq!(p1.consultation_part(), a);
        assert!(t != p1 && p1 != p2);
        assert!(
            !dir.path().join(SECRET_FILE).exists(),
            "a configured secret is not written to disk"
        );
        let ttl = turn.ice_servers(
            Uuid::from_u128(1),
            Participant::Therapist,
            CandidatePolicy::All,
            SystemTime::now(),
            Duration::from_secs(100 * 3600),
        );
        let username = ttl[0].username.clone().unwrap();
        let expiry: u64 = username.split_once(':').unwrap().0.parse().unwrap();
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(expiry <= unix + MAX_CREDENTIAL_TTL.as_secs() + 1);
        assert_eq!(
            turn.close_consultation(Uuid::from_u128(1)).await.unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn bad_settings_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.turn.external_urls = vec!["http://not-turn".into()];
        assert!(Turn::start(&s, None).await.is_err());
        let mut s = settings(dir.path());
        s.turn.listen = "0.0.0.0:0".parse().unwrap();
        s.listen = "0.0.0.0:8443".parse().unwrap();
        let err = Turn::start(&s, None).await.unwrap_err().to_string();
        assert!(err.contains("public_ip"), "{err}");
        let mut s = settings(dir.path());
        s.turn.enabled = false;
        let off = Turn::start(&s, None).await.unwrap();
        assert!(off
            .ice_servers(
                Uuid::nil(),
                Participant::Therapist,
                CandidatePolicy::All,
                SystemTime::now(),
                Duration::from_secs(60)
            )
            .is_empty());
    }
}
