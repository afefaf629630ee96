//! TURN for the signaling server: the embedded relay started from the
//! settings, the shared secret, the ICE server list handed out in `welcome`,
//! and closing a consultation's allocations when its call ends.
//!
//! Credentials are TURN REST credentials (`konsult_relay::TurnCredentials`):
//! username `"<expiry>:<reference>"`, password
//! `base64(HMAC-SHA1(secret, username))`. The embedded relay and any external
//! coturn (`use-auth-secret`, same `static-auth-secret`) check them without a
//! round trip. The reference is [`Turn::reference`]: a keyed hash of the
//! consultation id, so the clear-text STUN username names neither a person
//! nor the consultation id that appears in the clinic's data.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use konsult_protocol::{CandidatePolicy, IceServer};
use konsult_relay::{PeerPolicy, Reference, Relay, RelayConfig, TurnCredentials};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::config::Settings;

/// The longest a TURN credential handed to a client lives, whatever the
/// consultation window says. Below the relay's own 24-hour ceiling
/// (`RelayConfig::max_credential_ttl`), so a credential is never refused for
/// being too long-lived.
pub const MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(12 * 3600);

/// Name of the generated shared-secret file in the data directory.
pub const SECRET_FILE: &str = "turn.secret";

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
}

struct Embedded {
    /// `None` once shut down.
    relay: RwLock<Option<Relay>>,
    /// Host part of the `turn:`/`stun:` URLs (brackets around IPv6).
    url_host: String,
    port: u16,
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
        }
    }

    /// Loads (or creates) the shared secret and starts the embedded relay
    /// when `turn.enabled`.
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
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
        let embedded = if turn.enabled {
            let advertised = advertised_ip(settings)?;
            let mut config = RelayConfig::new(secret.clone());
            config.listen = turn.listen;
            config.public_ip = Some(advertised);
            config.peer_policy = PeerPolicy {
                allow_loopback: turn.allow_loopback_peers,
            };
            let relay = Relay::start(config)
                .await
                .context("cannot start the embedded TURN relay")?;
            let port = relay.local_addr().port();
            if turn.allow_loopback_peers {
                tracing::warn!("the TURN relay may relay to loopback peers: for tests only");
            }
            Some(Embedded {
                relay: RwLock::new(Some(relay)),
                url_host: url_host(advertised),
                port,
            })
        } else {
            None
        };
        Ok(Self {
            secret: Some(secret),
            embedded,
            external_urls: turn.external_urls.clone(),
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

    /// The ICE servers for one participant's `welcome`: the embedded relay
    /// (`turn:` and, unless relay-only, `stun:` on the same port) and every
    /// external URL, all with one fresh credential valid from `now` for
    /// `ttl` (capped at [`MAX_CREDENTIAL_TTL`], at least one second).
    pub fn ice_servers(
        &self,
        consultation: Uuid,
        policy: CandidatePolicy,
        now: SystemTime,
        ttl: Duration,
    ) -> Vec<IceServer> {
        let (Some(secret), Some(reference)) = (&self.secret, self.reference(consultation)) else {
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
            let host_port = format!("{}:{}", embedded.url_host, embedded.port);
            if policy == CandidatePolicy::All {
                servers.push(IceServer {
                    urls: vec![format!("stun:{host_port}")],
                    username: None,
                    credential: None,
                });
            }
            servers.push(IceServer {
                urls: vec![format!("turn:{host_port}?transport=udp")],
                username: username.clone(),
                credential: credential.clone(),
            });
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
    /// embedded relay). An external coturn lets its allocations expire with
    /// their credentials.
    pub async fn close_consultation(&self, consultation: Uuid) -> anyhow::Result<usize> {
        let (Some(embedded), Some(reference)) = (&self.embedded, self.reference(consultation))
        else {
            return Ok(0);
        };
        let guard = embedded.relay.read().await;
        match guard.as_ref() {
            Some(relay) => Ok(relay.close_reference(&reference).await?),
            None => Ok(0),
        }
    }

    /// Live allocations of the consultation on the embedded relay (`None`
    /// without one). For tests and diagnostics.
    pub async fn allocations_for(&self, consultation: Uuid) -> Option<usize> {
        let embedded = self.embedded.as_ref()?;
        let reference = self.reference(consultation)?;
        let guard = embedded.relay.read().await;
        guard.as_ref()?.allocations_for(&reference).await.ok()
    }

    /// The embedded relay's UDP address, if it runs.
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
        let turn = Turn::start(&s).await.unwrap();
        let consultation = Uuid::from_u128(42);
        let now = SystemTime::now();
        let servers = turn.ice_servers(
            consultation,
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
            vec![format!("turn:127.0.0.1:{port}?transport=udp")]
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
        assert_eq!(reference.len(), 32);
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
        let turn = Turn::start(&s).await.unwrap();
        let a = turn.reference(Uuid::from_u128(1)).unwrap();
        assert_eq!(Some(a.clone()), turn.reference(Uuid::from_u128(1)));
        assert_ne!(Some(a), turn.reference(Uuid::from_u128(2)));
        assert!(
            !dir.path().join(SECRET_FILE).exists(),
            "a configured secret is not written to disk"
        );
        let ttl = turn.ice_servers(
            Uuid::from_u128(1),
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
        assert!(Turn::start(&s).await.is_err());
        let mut s = settings(dir.path());
        s.turn.listen = "0.0.0.0:0".parse().unwrap();
        s.listen = "0.0.0.0:8443".parse().unwrap();
        let err = Turn::start(&s).await.unwrap_err().to_string();
        assert!(err.contains("public_ip"), "{err}");
        let mut s = settings(dir.path());
        s.turn.enabled = false;
        let off = Turn::start(&s).await.unwrap();
        assert!(off
            .ice_servers(
                Uuid::nil(),
                CandidatePolicy::All,
                SystemTime::now(),
                Duration::from_secs(60)
            )
            .is_empty());
    }
}
