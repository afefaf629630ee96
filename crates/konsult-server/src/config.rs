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
    /// File holding the base64 data-at-rest key; default `data_dir/data.key`,
    /// created (mode 0600) on first run.
    pub key_file: Option<PathBuf>,
    /// The address patients' links point to; default derived from `listen`.
    pub public_url: Option<String>,
    /// TLS.
    pub tls: TlsSettings,
    /// Hours a therapist's login lasts.
    pub session_hours: u32,
    /// Minutes before the start that a join link opens.
    pub link_opens_minutes_before: u32,
    /// Minutes after the scheduled end that a join link still works.
    pub link_closes_minutes_after_end: u32,
    /// The embedded TURN relay.
    pub turn: TurnSettings,
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

/// The embedded relay and any external coturn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnSettings {
    /// Start the embedded TURN relay.
    pub enabled: bool,
    /// Its UDP listen address.
    pub listen: SocketAddr,
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
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 3478)),
            public_ip: None,
            secret: None,
            external_urls: Vec::new(),
            allow_loopback_peers: false,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("konsult-data"),
            database_url: None,
            key_file: None,
            public_url: None,
            tls: TlsSettings::default(),
            session_hours: 12,
            link_opens_minutes_before: 15,
            link_closes_minutes_after_end: 30,
            turn: TurnSettings::default(),
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

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("konsult.db").display()))
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
        assert_eq!(s.turn.external_urls.len(), 2);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("konsult.toml");
        std::fs::write(&file, "lissen = \"0.0.0.0:9000\"\n").unwrap();
        assert!(Settings::load(Some(&file)).is_err());
    }
}
