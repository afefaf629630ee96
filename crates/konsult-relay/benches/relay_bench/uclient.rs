//! Load from coturn's own test client, `turnutils_uclient`, the tool
//! coturn's maintainers measure coturn with. Using it on both relays
//! means the load is the same bytes, paced by the same code.
//!
//! Its behaviour, read from its source (coturn 4.6): `-m` is the number of
//! allocations (with `-c`, no extra RTCP allocation each); every allocation
//! binds a channel and sends `-n` messages of `-l` bytes, one every `-z`
//! milliseconds, starting at a random moment 1–6 s after all are set up;
//! setting up costs it 100 ms per allocation. Without `-y` each message
//! goes to a UDP echo peer (`turnutils_peer`) and back, a round trip through
//! the relay both ways; with `-y` the allocations are paired and send to
//! each other once. `-W` makes TURN REST credentials from the secret.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::process::{ChildGuard, ProcessSample, ScratchDir};
use super::relays::{RunningRelay, SECRET};

/// The reference in `turnutils_uclient`'s username (`<expiry>:<reference>`).
const UCLIENT_REFERENCE: &str = "bench-uclient";

/// What one `turnutils_uclient` run sends.
#[derive(Debug, Clone, Copy)]
pub struct UclientLoad {
    /// Allocations (`-m`).
    pub allocations: u32,
    /// Messages each allocation sends (`-n`).
    pub messages: u32,
    /// Bytes of each message (`-l`).
    pub length: u32,
    /// Milliseconds between two messages of one allocation (`-z`).
    pub interval_ms: u32,
    /// Pair the allocations and send to each other (`-y`) instead of to the
    /// echo peer on `echo_port`.
    pub client_to_client: bool,
}

/// The outcome of one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct UclientOutcome {
    /// Messages the client sent.
    pub sent: u64,
    /// Messages it received back (echoed, or from its partner with `-y`).
    pub received: u64,
    /// CPU time the relay process spent during the whole run (setup,
    /// traffic, tear-down).
    pub relay_cpu: Duration,
    /// How long the run took, setup and random start delays included.
    pub wall: Duration,
}

impl UclientOutcome {
    /// Lost messages in percent of those sent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.sent.saturating_sub(self.received) as f64 * 100.0 / self.sent as f64
    }
}

/// Runs `turnutils_uclient` with `load` against `relay` and measures the
/// relay's CPU time around it. `echo_port` is a `turnutils_peer` on
/// 127.0.0.1 (unused with `-y`).
pub fn run(
    uclient: &Path,
    relay: &mut RunningRelay,
    load: UclientLoad,
    echo_port: u16,
) -> anyhow::Result<UclientOutcome> {
    let scratch = ScratchDir::new(&format!("uclient-{}", relay.addr.port()))?;
    let log = scratch.join("uclient.log");
    let mut args: Vec<String> = vec![
        "-W".into(),
        SECRET.into(),
        "-u".into(),
        UCLIENT_REFERENCE.into(),
        "-p".into(),
        relay.addr.port().to_string(),
        "-c".into(), // no RTCP allocations: -m counts allocations
        "-m".into(),
        load.allocations.to_string(),
        "-n".into(),
        load.messages.to_string(),
        "-l".into(),
        load.length.to_string(),
        "-z".into(),
        load.interval_ms.to_string(),
    ];
    if load.client_to_client {
        args.push("-y".into());
    } else {
        args.extend([
            "-e".into(),
            "127.0.0.1".into(),
            "-r".into(),
            echo_port.to_string(),
        ]);
    }
    args.push("127.0.0.1".into());

    // The client's own bound: setup, the longest start delay, the sending,
    // and its 10 s wait for stragglers, with room for a loaded machine.
    let limit = Duration::from_millis(
        100 * u64::from(load.allocations)
            + 6_000
            + u64::from(load.messages) * u64::from(load.interval_ms)
            + 10_000,
    ) * 2
        + Duration::from_secs(20);

    let before = relay.sample()?;
    let started = Instant::now();
    let mut child =
        ChildGuard::spawn("turnutils_uclient", Command::new(uclient).args(&args), &log)?;
    let status = child.wait_at_most(limit)?;
    let wall = started.elapsed();
    relay.ensure_running()?;
    let after: ProcessSample = relay.sample()?;

    let output = std::fs::read_to_string(&log).context("read turnutils_uclient's output")?;
    if !status.success() {
        bail!(
            "turnutils_uclient failed ({status}):\n{}",
            last_lines(&output)
        );
    }
    let (sent, received) = summary(&output)
        .with_context(|| format!("turnutils_uclient's output:\n{}", last_lines(&output)))?;
    Ok(UclientOutcome {
        sent,
        received,
        relay_cpu: after.cpu.saturating_sub(before.cpu),
        wall,
    })
}

/// The totals `tot_send_msgs` and `tot_recv_msgs` from the client's last
/// summary line:
///
/// ```text
/// 6: : start_mclient: tot_send_msgs=10, tot_recv_msgs=10
/// ```
///
/// (It also prints "Total lost packets", which is the same difference.)
fn summary(output: &str) -> anyhow::Result<(u64, u64)> {
    output
        .lines()
        .rev()
        .filter_map(|line| line.split_once("tot_send_msgs=").map(|(_, rest)| rest))
        .find_map(|rest| {
            let (sent, rest) = rest.split_once(", tot_recv_msgs=")?;
            let received = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            Some((sent.parse().ok()?, received.parse().ok()?))
        })
        .context("no tot_send_msgs/tot_recv_msgs line")
}

fn last_lines(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts coturn's UDP echo peer on a free port of 127.0.0.1, for the
/// round-trip runs; returns it with its port.
pub fn start_echo_peer(peer: &Path, scratch: &ScratchDir) -> anyhow::Result<(ChildGuard, u16)> {
    let port = super::process::free_udp_port()?;
    let mut child = ChildGuard::spawn(
        "turnutils_peer",
        Command::new(peer).args(["-L", "127.0.0.1", "-p", &port.to_string()]),
        &scratch.join("peer.log"),
    )?;
    wait_for_echo(port, &mut child)?;
    Ok((child, port))
}

fn wait_for_echo(port: u16, child: &mut ChildGuard) -> anyhow::Result<()> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        child.ensure_running()?;
        socket.send_to(b"ping", ("127.0.0.1", port))?;
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            if &buf[..n] == b"ping" {
                return Ok(());
            }
        }
    }
    bail!("turnutils_peer on port {port} does not echo")
}
