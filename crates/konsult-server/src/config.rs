//! Typed, layered settings: defaults, then a TOML file, then `KONSULT_…`
//! environment variables (`__` separates nested keys, e.g.
//! `KONSULT_TLS__BEHIND_PROXY=true`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Every setting of `konsult serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP(S) listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the SQLite file, the data key and a generated certificate live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: an SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Seconds a request waits for a database connection (connecting
    /// included) before it is answered 503 `database_unavailable` with
    /// `Retry-After`; also how long start-up tries to reach the database.
    pub database_timeout_seconds: u32,
    /// File holding the base64 data-at-rest key; default `data_dir/data.key`,
    /// created (mode 0600) on first run.
    pub key_file: Option<PathBuf>,
    /// The address patients' links point to; default derived from `listen`.
    pub public_url: Option<String>,
    /// TLS.
    pub tls: TlsSettings,
    /// Limits on HTTP connections and on where clients are told apart.
    pub http: HttpSettings,
    /// Hours a therapist's login lasts.
    pub session_hours: u32,
    /// Hours a one-time setup link (first run, or `konsult clinic add`)
    /// works after it was made.
    pub setup_link_hours: u32,
    /// Minutes before the start that a join link opens.
    pub link_opens_minutes_before: u32,
    /// Minutes after the scheduled end that a join link still works.
    pub link_closes_minutes_after_end: u32,
    /// The embedded TURN relay.
    pub turn: TurnSettings,
    /// Signaling: evidence of two-way media, resuming after a restart.
    pub signaling: SignalingSettings,
    /// Alerts in the log on unusual access to patients' records.
    pub alerts: AlertSettings,
    /// Who runs this installation (the clinics' data processor) and its
    /// sub-processors, for the records of processing.
    pub operator: OperatorSettings,
    /// Prometheus metrics at `/metrics`.
    pub metrics: MetricsSettings,
    /// Several nodes serving one installation (NATS between them).
    pub cluster: ClusterSettings,
}

/// Several nodes of one installation. They share the database (PostgreSQL)
/// and tell each other over NATS what ended: login sessions, consultations,
/// join links, calls (their connections and relay allocations may be on
/// any node). Without `nats_url` the node runs alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// `nats://host:port` of the NATS server (or one of its cluster).
    pub nats_url: Option<String>,
    /// The first token of every subject this installation uses, so that
    /// several installations (or test runs) can share one NATS.
    pub subject_prefix: String,
    /// Seconds between the checks each node makes against the database for
    /// what it may have missed on NATS (a message lost while NATS or the
    /// node was unreachable): ended login sessions of its connections,
    /// consultations and links closed on its relay.
    pub sweep_seconds: u32,
    /// Seconds a room's lease lives unless its owner renews it (every
    /// third of it): how long a room stays with a node that stopped.
    pub lease_seconds: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            nats_url: None,
            subject_prefix: "konsult".into(),
            sweep_seconds: 15,
            lease_seconds: 3,
        }
    }
}

/// Prometheus metrics: `GET /metrics` on the API listener, for a scraper
/// that sends `Authorization: Bearer <token>`. Without a token the route
/// does not exist (404).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// The scraper's bearer token.
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
}

/// Signaling settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingSettings {
    /// How long media must flow both ways before it counts as two-way
    /// (`konsult_domain::evidence`; 30 s, RFC 7675's consent timeout).
    pub min_two_way_seconds: u32,
    /// How many media packets the relay must count each way.
    pub min_two_way_packets: u64,
    /// How long participants of a call saved before a restart have to come
    /// back before the call ends as abandoned.
    pub restore_grace_seconds: u32,
    /// How long a dropped participant may resume before the peer is told
    /// (announced to clients as `resume_grace_ms`).
    pub resume_grace_seconds: u32,
    /// A connection silent this long is closed as dropped (announced as
    /// `heartbeat_timeout_ms`).
    pub heartbeat_timeout_seconds: u32,
    /// Bytes each signaling WebSocket reads at a time. A larger frame is
    /// read in several reads into a buffer grown to its size, so this is
    /// memory per connection, not a limit: 1 KiB holds every frame of a
    /// waiting or idle participant (pings, candidates) and costs an SDP
    /// offer (3–6 KiB) a few more reads, where the WebSocket library's
    /// default, 128 KiB, is allocated for every waiting patient.
    pub ws_read_buffer_bytes: usize,
    /// Hub tasks serving the rooms, each a shard of them; 0: one per core.
    pub hub_shards: usize,
}

impl Default for SignalingSettings {
    fn default() -> Self {
        let core = konsult_signal::Config::default();
        Self {
            min_two_way_seconds: u32::try_from(core.evidence.min_span.as_secs()).unwrap_or(30),
            min_two_way_packets: core.evidence.min_packets,
            restore_grace_seconds: u32::try_from(core.restore_grace.as_secs()).unwrap_or(60),
            resume_grace_seconds: u32::try_from(core.resume_grace.as_secs()).unwrap_or(30),
            heartbeat_timeout_seconds: u32::try_from(core.heartbeat_timeout.as_secs())
                .unwrap_or(30),
            ws_read_buffer_bytes: 1024,
            hub_shards: 0,
        }
    }
}

/// The shortest heartbeat timeout in force; a smaller setting is raised to it.
pub const MIN_HEARTBEAT_TIMEOUT_SECONDS: u32 = 3;

/// How often clients are asked to ping: three pings fit in the heartbeat
/// timeout, so one late or lost ping never closes a live connection; never
/// more often than once a second nor less often than `default`.
fn ping_interval_for(
    heartbeat_timeout: std::time::Duration,
    default: std::time::Duration,
) -> std::time::Duration {
    (heartbeat_timeout / 3).clamp(std::time::Duration::from_secs(1), default)
}

/// When the log raises an alert about access to patients' records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// One account opening more than this many different patients' records
    /// (details, journal notes, safety confirmations, exports) within
    /// `unusual_access_minutes` raises an `unusual_access` alert; 0 turns
    /// the alert off.
    pub unusual_access_patients: u32,
    /// The window of that count, in minutes.
    pub unusual_access_minutes: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            unusual_access_patients: 20,
            unusual_access_minutes: 10,
        }
    }
}

impl SignalingSettings {
    /// How many hub tasks serve the rooms: `hub_shards`, or one per core.
    pub fn hub_shards(&self) -> usize {
        match self.hub_shards {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }

    /// The signaling core's configuration with these settings.
    pub fn core_config(&self) -> konsult_signal::Config {
        let defaults = konsult_signal::Config::default();
        // Below three seconds a connection would be closed between two
        // pings of a busy browser tab.
        let heartbeat_timeout = std::time::Duration::from_secs(u64::from(
            self.heartbeat_timeout_seconds
                .max(MIN_HEARTBEAT_TIMEOUT_SECONDS),
        ));
        konsult_signal::Config {
            evidence: konsult_domain::EvidenceRules {
                min_span: std::time::Duration::from_secs(u64::from(self.min_two_way_seconds)),
                min_packets: self.min_two_way_packets,
            },
            restore_grace: std::time::Duration::from_secs(u64::from(self.restore_grace_seconds)),
            resume_grace: std::time::Duration::from_secs(u64::from(self.resume_grace_seconds)),
            heartbeat_timeout,
            ping_interval: ping_interval_for(heartbeat_timeout, defaults.ping_interval),
            ..defaults
        }
    }
}

/// The operator of the installation: the data processor of every clinic on
/// it (GDPR art. 28), as named in the records of processing (art. 30).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorSettings {
    /// The operator's legal name.
    pub name: String,
    /// How clinics and the supervisory authority reach the operator
    /// (address, e-mail, phone; the data protection officer if there is one).
    pub contact: String,
    /// Sub-processors engaged by the operator (hosting, backup, an external
    /// TURN relay's provider, …).
    pub sub_processors: Vec<SubProcessor>,
}

/// One sub-processor of the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubProcessor {
    /// Legal name.
    pub name: String,
    /// What it does for the installation, e.g. "server hosting".
    pub purpose: String,
    /// Country or countries where it processes the data (ISO 3166 codes).
    pub countries: Vec<String>,
    /// For a country outside the EU/EEA: the transfer basis (adequacy
    /// decision, standard contractual clauses, …).
    pub transfer_basis: Option<String>,
}

/// TLS settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; with `key`. Without both, a non-loopback
    /// listener gets a generated self-signed certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// A TLS-terminating proxy sits in front: serve plain HTTP on any address.
    pub behind_proxy: bool,
}

/// Limits on HTTP connections (against clients that connect and stall),
/// and how the login limiter tells clients apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Most connections open at once; kept below the file-descriptor
    /// limit (`LimitNOFILE`) minus room for the database and relay. A
    /// connection beyond it is closed at once.
    pub max_connections: u32,
    /// Seconds a client has to send a request's line and headers (the TLS
    /// handshake included, for a new connection) before it is closed.
    pub header_timeout_seconds: u32,
    /// Seconds a request body may stall between two pieces before the
    /// request fails.
    pub body_timeout_seconds: u32,
    /// A header that a trusted proxy in front sets to the client's address
    /// (`X-Forwarded-For`: its last entry counts; `X-Real-IP`). Only for the
    /// login limiter, which keeps a keyed hash of it in memory and never
    /// stores or logs it. Unset: the peer's address, or, with
    /// `tls.behind_proxy`, no per-client limit (every client would share
    /// the proxy's address).
    pub client_address_header: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
            client_address_header: None,
        }
    }
}

/// The embedded relay and any external coturn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnSettings {
    /// Start the embedded TURN relay.
    pub enabled: bool,
    /// Its listen address: TURN over UDP, and over TCP on the same port.
    pub listen: SocketAddr,
    /// Serve TURN over UDP on `listen` (the fast way, and the only one
    /// `stun:` uses).
    pub udp: bool,
    /// Serve TURN over plain TCP on `listen`'s port, for networks that
    /// block UDP.
    pub tcp: bool,
    /// The relay's own host name (e.g. `turn.klinik.example`), for TURN over
    /// TLS on the HTTPS listener: a TLS connection naming it (SNI), or
    /// offering only the ALPN protocol `stun.turn` (RFC 7443), is handed to
    /// the relay; all others are HTTPS. Only when the server serves TLS
    /// itself; its certificate must cover this name too. Unset: no TURN
    /// over TLS.
    pub tls_host: Option<String>,
    /// The address advertised as relay address; default: the listen address,
    /// or 127.0.0.1 when listening on all interfaces of a loopback-only server.
    pub public_ip: Option<IpAddr>,
    /// Shared secret for TURN REST credentials (the same `static-auth-secret`
    /// as an external coturn); default: generated into `data_dir/turn.secret`.
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    /// External coturn-compatible relays (`turn:host:port?transport=udp`).
    pub external_urls: Vec<String>,
    /// Allow relaying to loopback peers. Only for tests and machine-local
    /// trials; never in production.
    pub allow_loopback_peers: bool,
    /// Ports of the relayed sockets, `"first-last"` (to open in a firewall);
    /// default: any free port.
    pub relay_ports: Option<String>,
    /// Live allocations one consultation may hold over all its participants
    /// and credentials; a phone that changes networks leaves its old ones
    /// behind until they time out, so keep room for ten changes.
    pub allocations_per_consultation: usize,
    /// Live allocations the relay holds at most (each is a socket).
    pub max_allocations: usize,
    /// More addresses the relay hands out relayed addresses on, each bound
    /// as it is (no 1:1 NAT): the server's IPv6 address next to an IPv4
    /// `public_ip` for dual-stack allocations (RFC 8656, RFC 6156; listen on
    /// `[::]` so IPv6 clients reach the relay too), or more public IPv4
    /// addresses to spread allocations over.
    pub extra_public_ips: Vec<IpAddr>,
    /// UDP listening sockets on the relay port, each served by a thread of
    /// its own; 0: one per core.
    pub udp_sockets: usize,
    /// Receive and send buffer asked for each relay socket, in bytes; the
    /// kernel caps it at `net.core.rmem_max`/`wmem_max` (raise those; the
    /// README says how).
    pub socket_buffer_bytes: usize,
}

impl TurnSettings {
    /// `relay_ports` as a range; an error names the setting.
    pub fn relay_port_range(&self) -> Result<Option<std::ops::RangeInclusive<u16>>, String> {
        let Some(text) = &self.relay_ports else {
            return Ok(None);
        };
        let bad = || {
            format!("turn.relay_ports must be \"first-last\" with 1 <= first <= last <= 65535, not {text:?}")
        };
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(Some(first..=last))
    }
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 3478)),
            udp: true,
            tcp: true,
            tls_host: None,
            public_ip: None,
            secret: None,
            external_urls: Vec::new(),
            allow_loopback_peers: false,
            relay_ports: None,
            allocations_per_consultation:
                konsult_relay::RelayConfig::DEFAULT_ALLOCATIONS_PER_CONSULTATION,
            max_allocations: konsult_relay::RelayConfig::DEFAULT_MAX_ALLOCATIONS,
            extra_public_ips: Vec::new(),
            udp_sockets: 0,
            socket_buffer_bytes: konsult_relay::RelayConfig::DEFAULT_SOCKET_BUFFER,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("konsult-data"),
            database_url: None,
            database_timeout_seconds: 5,
            key_file: None,
            public_url: None,
            tls: TlsSettings::default(),
            http: HttpSettings::default(),
            session_hours: 12,
            setup_link_hours: 24,
            link_opens_minutes_before: 15,
            link_closes_minutes_after_end: 30,
            turn: TurnSettings::default(),
            signaling: SignalingSettings::default(),
            alerts: AlertSettings::default(),
            operator: OperatorSettings::default(),
            metrics: MetricsSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

/// `KONSULT_…` variables that are not settings: the settings file itself
/// (read by the command line) and the test suite's own variables.
fn is_not_a_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "config" || key.starts_with("test_") || key.starts_with("skip_")
}

impl Settings {
    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(
                Env::prefixed("KONSULT_")
                    .filter(|key| !is_not_a_setting(key.as_str()))
                    .split("__"),
            )
            .extract()
            .map_err(Box::new)
    }

    /// When a consultation's join link works, relative to its schedule.
    pub fn link_window(&self) -> konsult_store::consultations::LinkWindow {
        konsult_store::consultations::LinkWindow {
            opens_before: chrono::Duration::minutes(i64::from(self.link_opens_minutes_before)),
            closes_after_end: chrono::Duration::minutes(i64::from(
                self.link_closes_minutes_after_end,
            )),
        }
    }

    /// How long a setup link works.
    pub fn setup_link_max_age(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.setup_link_hours))
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("konsult.db").display()))
    }

    /// How long the store waits for the database.
    pub fn pool_settings(&self) -> konsult_store::PoolSettings {
        konsult_store::PoolSettings {
            acquire_timeout: std::time::Duration::from_secs(u64::from(
                self.database_timeout_seconds.max(1),
            )),
        }
    }

    /// The key file in force.
    pub fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("data.key"))
    }

    /// Whether the listener serves TLS itself.
    pub fn serves_tls(&self) -> bool {
        !self.tls.behind_proxy && (!self.listen.ip().is_loopback() || self.tls.cert.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_without_tls() {
        let s = Settings::default();
        assert!(s.listen.ip().is_loopback());
        assert!(!s.serves_tls());
        assert!(s.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn clients_ping_three_times_within_the_heartbeat_timeout() {
        let with = |seconds| {
            let core = SignalingSettings {
                heartbeat_timeout_seconds: seconds,
                ..SignalingSettings::default()
            }
            .core_config();
            (
                core.heartbeat_timeout.as_millis(),
                core.ping_interval.as_millis(),
            )
        };
        // The defaults are as documented: 30 s and a ping every 10 s.
        assert_eq!(with(30), (30_000, 10_000));
        // A short timeout (the browser tests use 4 s) asks for pings often
        // enough that a connection with nothing else to say stays open.
        assert_eq!(with(4), (4_000, 1_333));
        // A long one keeps the 10 s ping; a tiny one is raised to 3 s.
        assert_eq!(with(120), (120_000, 10_000));
        assert_eq!(with(0), (3_000, 1_000));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("konsult.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\nsession_hours = 8\n[tls]\nbehind_proxy = true\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("KONSULT_SESSION_HOURS", "4");
            // Not settings: must not be refused as unknown keys.
            jail.set_env("KONSULT_CONFIG", "elsewhere.toml");
            jail.set_env("KONSULT_TEST_POSTGRES_URL", "postgres://x/y");
            jail.set_env("KONSULT_SKIP_COTURN", "1");
            let s = Settings::load(Some(&file)).map_err(|e| e.to_string())?;
            assert_eq!(s.listen.port(), 9000);
            assert!(s.tls.behind_proxy);
            assert_eq!(s.session_hours, 4);
            Ok(())
        });
    }

    #[test]
    fn the_deploy_example_is_valid() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/konsult.toml");
        let s = Settings::load(Some(&file)).unwrap();
        assert!(s.serves_tls());
        assert!(s.database_url().starts_with("postgres://"));
        assert_eq!(s.turn.external_urls.len(), 1);
        // TURN over TLS on the HTTPS port, under a name of its own.
        assert_eq!(s.turn.tls_host.as_deref(), Some("turn.klinik.example"));
        assert!(s.turn.udp && s.turn.tcp);
        // Dual-stack relay, buffers the sysctl file lets the kernel grant.
        assert!(s.turn.listen.ip().is_unspecified() && s.turn.listen.is_ipv6());
        assert!(s.turn.public_ip.is_some_and(|ip| ip.is_ipv4()));
        assert!(s.turn.extra_public_ips.iter().any(|ip| ip.is_ipv6()));
        let sysctl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/sysctl-konsult.conf");
        let sysctl = std::fs::read_to_string(sysctl).unwrap();
        for key in ["net.core.rmem_max", "net.core.wmem_max"] {
            let granted: usize = sysctl
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.trim_start_matches([' ', '=']).trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key} in deploy/sysctl-konsult.conf"));
            assert!(granted >= s.turn.socket_buffer_bytes, "{key}");
        }
        assert_eq!(s.listen.port(), 443);
        assert!(!s.operator.name.is_empty() && !s.operator.contact.is_empty());
        assert!(!s.operator.sub_processors.is_empty());
    }

    /// The systemd unit gives the server room for its default connection
    /// cap (a unit without `LimitNOFILE` gets 1,024 descriptors, which 1,100
    /// half-sent requests exhausted) and confines it.
    #[test]
    fn the_systemd_unit_gives_room_and_confines() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/konsult.service");
        let unit = std::fs::read_to_string(file).unwrap();
        let value = |key: &str| {
            unit.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key}= in deploy/konsult.service"))
                .trim()
                .to_owned()
        };
        let nofile: u64 = value("LimitNOFILE").parse().unwrap();
        let defaults = Settings::default();
        // Connections, and a relay socket per family for each allocation.
        let cap =
            u64::from(defaults.http.max_connections) + 2 * defaults.turn.max_allocations as u64;
        assert!(
            nofile >= cap + 1024,
            "LimitNOFILE={nofile} leaves no room above {cap} connections and relay sockets"
        );
        for (key, expected) in [
            ("NoNewPrivileges", "true"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "true"),
            ("PrivateTmp", "true"),
            ("PrivateDevices", "true"),
            ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("MemoryDenyWriteExecute", "true"),
            ("SystemCallFilter", "@system-service"),
            ("UMask", "0077"),
            ("KillSignal", "SIGTERM"),
        ] {
            assert_eq!(value(key), expected, "{key}");
        }
    }

    #[test]
    fn relay_ports_are_a_range() {
        let ports = |text: &str| {
            TurnSettings {
                relay_ports: Some(text.to_owned()),
                ..TurnSettings::default()
            }
            .relay_port_range()
        };
        assert_eq!(TurnSettings::default().relay_port_range(), Ok(None));
        assert_eq!(ports("49152-65535"), Ok(Some(49152..=65535)));
        assert_eq!(ports(" 50000 - 50000 "), Ok(Some(50000..=50000)));
        for bad in ["", "50000", "0-10", "20-10", "1-70000", "a-b"] {
            assert!(
                ports(bad).unwrap_err().contains("turn.relay_ports"),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("konsult.toml");
        std::fs::write(&file, "lissen = \"0.0.0.0:9000\"\n").unwrap();
        assert!(Settings::load(Some(&file)).is_err());
    }
}
