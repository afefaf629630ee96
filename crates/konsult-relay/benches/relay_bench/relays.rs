//! The two relays under test, each started as its own process on
//! 127.0.0.1 with the same shared secret and realm.

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use konsult_relay::{Relay, RelayConfig};
use secrecy::SecretString;
use stun::agent::TransactionId;
use stun::message::{Message, BINDING_REQUEST, BINDING_SUCCESS};

use super::process::{find_on_path, free_udp_port, ChildGuard, ProcessSample, ScratchDir};

/// The TURN REST shared secret both relays check credentials against.
pub const SECRET: &str = "konsult-relay-bench-secret";
/// The realm of both relays (Konsult's default).
pub const REALM: &str = "konsult";
/// The environment variable that turns the benchmark binary into a bare
/// Konsult relay listening on the address it holds (see [`serve_konsult`]).
pub const SERVE_ENV: &str = "KONSULT_RELAY_BENCH_SERVE";

/// How long a relay may take to answer its first STUN Binding request.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// Which relay a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// Konsult's embedded relay (`konsult_relay::Relay`).
    Konsult,
    /// coturn's `turnserver`.
    Coturn,
}

impl RelayKind {
    /// The order of every round: Konsult first, then coturn.
    pub const BOTH: [RelayKind; 2] = [RelayKind::Konsult, RelayKind::Coturn];
}

impl fmt::Display for RelayKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayKind::Konsult => "konsult",
            RelayKind::Coturn => "coturn",
        })
    }
}

/// The programs the benchmark runs.
#[derive(Debug, Clone)]
pub struct Programs {
    /// This benchmark binary, re-executed as the Konsult relay.
    pub bench: PathBuf,
    /// coturn's server.
    pub turnserver: PathBuf,
    /// coturn's load client.
    pub uclient: PathBuf,
    /// coturn's UDP echo peer.
    pub peer: PathBuf,
}

impl Programs {
    /// Finds coturn's programs on `PATH`; the error names what is missing
    /// and the package that brings it.
    pub fn find() -> anyhow::Result<Self> {
        let coturn = |name: &str| {
            find_on_path(name).ok_or_else(|| {
                anyhow!(
                    "`{name}` is not on PATH; install Debian's coturn package \
                     (`apt-get install -y coturn`)"
                )
            })
        };
        Ok(Self {
            bench: std::env::current_exe().context("locate the benchmark binary")?,
            turnserver: coturn("turnserver")?,
            uclient: coturn("turnutils_uclient")?,
            peer: coturn("turnutils_peer")?,
        })
    }
}

/// A relay process listening on 127.0.0.1, stopped when dropped.
pub struct RunningRelay {
    /// Where clients send TURN and STUN.
    pub addr: SocketAddr,
    process: ChildGuard,
    // Dropped after `process`, so coturn's files go after coturn.
    _scratch: ScratchDir,
}

impl RunningRelay {
    /// Starts `kind` on a free port and waits until it answers STUN.
    pub fn start(kind: RelayKind, programs: &Programs) -> anyhow::Result<Self> {
        let port = free_udp_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let scratch = ScratchDir::new(&format!("{kind}-{port}"))?;
        let log = scratch.join("relay.log");
        let process = match kind {
            RelayKind::Konsult => {
                let mut command = Command::new(&programs.bench);
                command.env(SERVE_ENV, addr.to_string());
                ChildGuard::spawn("konsult relay", &mut command, &log)?
            }
            RelayKind::Coturn => {
                let mut command = Command::new(&programs.turnserver);
                command.args([
                    "-n".to_owned(), // no configuration file
                    "--use-auth-secret".to_owned(),
                    format!("--static-auth-secret={SECRET}"),
                    format!("--realm={REALM}"),
                    "--listening-ip=127.0.0.1".to_owned(),
                    "--relay-ip=127.0.0.1".to_owned(),
                    "--allow-loopback-peers".to_owned(),
                    "--no-cli".to_owned(),
                    "--no-tls".to_owned(),
                    "--no-dtls".to_owned(),
                    "-p".to_owned(),
                    port.to_string(),
                    format!("--pidfile={}", scratch.join("turnserver.pid").display()),
                    format!("--userdb={}", scratch.join("turndb").display()),
                    "--log-file=stdout".to_owned(),
                    "--simple-log".to_owned(),
                ]);
                ChildGuard::spawn("turnserver", &mut command, &log)?
            }
        };
        let mut relay = Self {
            addr,
            process,
            _scratch: scratch,
        };
        if let Err(e) = wait_for_stun(addr, &mut relay.process) {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(20).collect::<Vec<_>>().join("\n");
            bail!("{kind} relay did not start: {e:#}\nits log, last lines first:\n{tail}");
        }
        Ok(relay)
    }

    /// CPU time and memory of the relay process now.
    pub fn sample(&self) -> anyhow::Result<ProcessSample> {
        ProcessSample::read(self.process.pid())
    }

    /// Fails when the relay process has died.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.process.ensure_running()
    }
}

/// Waits until something on `addr` answers a STUN Binding request, failing
/// at once if `process` exits.
fn wait_for_stun(addr: SocketAddr, process: &mut ChildGuard) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + START_PATIENCE;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        process.ensure_running()?;
        let mut request = Message::new();
        request
            .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
            .map_err(|e| anyhow!("build a Binding request: {e}"))?;
        socket.send_to(&request.raw, addr)?;
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            let mut response = Message {
                raw: buf[..n].to_vec(),
                ..Default::default()
            };
            if response.decode().is_ok() && response.typ == BINDING_SUCCESS {
                return Ok(());
            }
        }
    }
    bail!("nothing answered STUN on {addr} within {START_PATIENCE:?}")
}

/// The child side of [`RelayKind::Konsult`]: Konsult's relay on `listen`
/// with the benchmark's secret and realm, loopback peers allowed (every
/// client and peer is on 127.0.0.1) and quotas out of the way (coturn's
/// are off by default, and `turnutils_uclient` uses one credential for all
/// its allocations), until the process is killed. The runtime is Tokio's
/// multi-threaded one with a worker per core, as in `konsult serve`.
pub fn serve_konsult(listen: &str) -> anyhow::Result<()> {
    let listen: SocketAddr = listen
        .parse()
        .with_context(|| format!("{SERVE_ENV}={listen} is not an address"))?;
    let mut config = RelayConfig::new(SecretString::from(SECRET));
    config.listen = listen;
    config.realm = REALM.to_owned();
    config.peer_policy.allow_loopback = true;
    config.allocations_per_consultation = 1_000_000;
    config.max_allocations = 1_000_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _relay = Relay::start(config).await.context("start the relay")?;
        // Serve until the benchmark kills this process.
        std::future::pending::<anyhow::Result<()>>().await
    })
}
