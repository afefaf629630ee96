//! Interoperability with coturn (Debian package `coturn`):
//!
//! * coturn's own test client, `turnutils_uclient -W <secret>`, relays
//!   through the embedded relay to `turnutils_peer` with no loss;
//! * credentials minted by [`konsult_relay::TurnCredentials`] are accepted
//!   by a real `turnserver --use-auth-secret`, and forged ones refused.
//!
//! The binaries are required: without them these tests fail, naming the
//! package to install, unless `KONSULT_SKIP_COTURN=1` is set. Every child
//! process is killed when its test ends, and every wait is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use common::*;
use secrecy::ExposeSecret;
use stun::agent::TransactionId;
use stun::message::{Message, BINDING_REQUEST, BINDING_SUCCESS};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use webrtc_util::Conn;

/// Longest a coturn tool may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of a coturn binary, `None` when it is absent and the run opted
/// out with `KONSULT_SKIP_COTURN=1`; panics (fails the test) when it is
/// absent otherwise.
fn coturn_binary(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var("KONSULT_SKIP_COTURN").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: `{name}` not found and KONSULT_SKIP_COTURN=1");
            None
        }
        None => panic!(
            "`{name}` not found on PATH. Install Debian's coturn package \
             (`apt-get install -y coturn`), or set KONSULT_SKIP_COTURN=1 to skip \
             the coturn interoperability tests."
        ),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A UDP port on 127.0.0.1 that was free a moment ago (coturn's tools take a
/// port number, not a socket).
fn free_udp_port() -> u16 {
    StdUdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind a probe socket")
}

fn spawn(program: &Path, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

/// Waits until something on `addr` answers a STUN Binding request.
async fn wait_for_stun(addr: SocketAddr) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let mut request = Message::new();
        request
            .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        socket.send_to(&request.raw, addr).await?;
        let mut buf = [0u8; 1500];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
        {
            let mut m = Message {
                raw: buf[..n].to_vec(),
                ..Default::default()
            };
            if m.decode().is_ok() && m.typ == BINDING_SUCCESS {
                return Ok(());
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bail!("nothing answered STUN on {addr}")
}

/// Waits until a UDP echo server on `addr` echoes.
async fn wait_for_echo(addr: SocketAddr) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        socket.send_to(b"ping", addr).await?;
        let mut buf = [0u8; 64];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await
        {
            if &buf[..n] == b"ping" {
                return Ok(());
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bail!("no echo from {addr}")
}

/// `tot_send_msgs` and `tot_recv_msgs` and the lost-packet count from
/// `turnutils_uclient`'s summary lines:
///
/// ```text
/// 6: : start_mclient: tot_send_msgs=10, tot_recv_msgs=10
/// 6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
/// ```
fn uclient_summary(output: &str) -> anyhow::Result<(u64, u64, u64)> {
    // The last such line holds the totals; earlier ones are per-stage.
    let totals = output
        .lines()
        .rev()
        .filter_map(|l| l.split_once("tot_send_msgs=").map(|(_, rest)| rest))
        .find_map(|rest| {
            let (sent, rest) = rest.split_once(", tot_recv_msgs=")?;
            let received = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            Some((sent.parse().ok()?, received.parse().ok()?))
        })
        .context("no tot_send_msgs/tot_recv_msgs line")?;
    let lost = output
        .lines()
        .find_map(|l| l.split_once("Total lost packets ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .context("no 'Total lost packets' line")?;
    Ok((totals.0, totals.1, lost))
}

#[test]
fn uclient_summary_parser_reads_the_totals() {
    let output =
        "1: : start_mclient: msz=1, tot_send_msgs=0, tot_recv_msgs=0, tot_send_bytes ~ 0\n\
                  6: : start_mclient: tot_send_msgs=20, tot_recv_msgs=19\n\
                  6: : Total lost packets 1 (5.000000%), total send dropped 0 (0.000000%)\n";
    assert_eq!(uclient_summary(output).unwrap(), (20, 19, 1));
    assert!(uclient_summary("ERROR: cannot allocate").is_err());
}

#[tokio::test]
async fn coturn_uclient_relays_through_the_embedded_relay_without_loss() {
    let (Some(uclient), Some(peer_bin)) = (
        coturn_binary("turnutils_uclient"),
        coturn_binary("turnutils_peer"),
    ) else {
        return;
    };
    let relay = start_relay(true).await;
    let peer_port = free_udp_port();
    let _peer = spawn(
        &peer_bin,
        &[
            "-L".into(),
            "127.0.0.1".into(),
            "-p".into(),
            peer_port.to_string(),
        ],
    );
    wait_for_echo(SocketAddr::from(([127, 0, 0, 1], peer_port)))
        .await
        .expect("turnutils_peer is up");

    let messages = 20;
    let child = spawn(
        &uclient,
        &[
            "-W".into(),
            SECRET.into(),
            "-u".into(),
            "consult-uclient".into(),
            "-e".into(),
            "127.0.0.1".into(),
            "-r".into(),
            peer_port.to_string(),
            "-p".into(),
            relay.local_addr().port().to_string(),
            "-n".into(),
            messages.to_string(),
            "-m".into(),
            "1".into(),  // one client
            "-c".into(), // no RTCP allocation
            "-l".into(),
            "120".into(),
            "127.0.0.1".into(),
        ],
    );
    let output = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .expect("turnutils_uclient finishes")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "uclient failed:\n{text}");
    let (sent, received, lost) = uclient_summary(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert_eq!(sent, messages, "{text}");
    assert_eq!(received, messages, "{text}");
    assert_eq!(lost, 0, "{text}");
    relay.shutdown().await.unwrap();
}

/// A `turnserver` on 127.0.0.1 with the TURN REST shared secret.
struct Coturn {
    addr: SocketAddr,
    _child: Child,
    dir: PathBuf,
}

impl Coturn {
    async fn start(turnserver: &Path) -> Self {
        let port = free_udp_port();
        let dir = std::env::temp_dir().join(format!(
            "konsult-relay-coturn-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let args: Vec<String> = [
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
            format!("--pidfile={}", dir.join("turnserver.pid").display()),
            format!("--userdb={}", dir.join("turndb").display()),
            "--log-file=stdout".to_owned(),
            "--simple-log".to_owned(),
        ]
        .into();
        let child = spawn(turnserver, &args);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_stun(addr).await.expect("turnserver is up");
        Self {
            addr,
            _child: child,
            dir,
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        // The child is killed by kill_on_drop; remove its files.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn konsult_credentials_work_against_coturn_and_forgeries_do_not() {
    let Some(turnserver) = coturn_binary("turnserver") else {
        return;
    };
    let coturn = Coturn::start(&turnserver).await;
    let echo = EchoPeer::start().await;

    // Konsult's credential allocates on coturn and relays both ways.
    let creds = issue("consult-coturn", 600);
    let client = turn_client_for(coturn.addr, &creds).await;
    let conn = client
        .allocate()
        .await
        .expect("coturn accepts Konsult's TURN REST credential");
    assert_eq!(
        round_trip(&conn, echo.addr, b"via coturn").await.unwrap(),
        b"via coturn"
    );
    conn.close().await.unwrap();
    client.close().await.unwrap();

    // The same username with the expiry pushed out and the password kept.
    let forged_name = format!("{}:consult-coturn", creds.username().expiry_unix() + 86_400);
    let forged = turn_client(coturn.addr, &forged_name, creds.password().expose_secret()).await;
    assert!(forged.allocate().await.is_err(), "coturn refuses a forgery");
    forged.close().await.unwrap();
    let raw = RawTurn::new(coturn.addr).await;
    assert_eq!(
        raw.allocate(&forged_name, creds.password().expose_secret())
            .await
            .unwrap()
            .err(),
        Some(401)
    );

    // An expired Konsult credential is refused by coturn as by the relay.
    let expired = issue_at(
        "consult-coturn",
        SystemTime::now() - Duration::from_secs(3600),
        60,
    );
    let raw = RawTurn::new(coturn.addr).await;
    assert_eq!(
        raw.allocate(
            &expired.username().to_string(),
            expired.password().expose_secret()
        )
        .await
        .unwrap()
        .err(),
        Some(401)
    );
}
