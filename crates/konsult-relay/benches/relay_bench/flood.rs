//! Memory under a flood of unauthenticated Allocate requests.
//!
//! Anyone who can reach a relay's port can send it Allocate requests
//! without credentials, and each is answered with 401 and a nonce. If the
//! relay kept state per answered request (a remembered nonce, a session),
//! such a flood would grow its memory without bound; a relay that derives
//! its nonces from a key and the time keeps nothing. This measures the
//! relay process's resident memory before and after such a flood from a
//! few source sockets, sent in windows so the relay answers (rather than
//! the kernel dropping most of a blind burst).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::relays::RunningRelay;
use super::turn_client::{check_challenge, is_allocate_error, unauthenticated_allocate};

/// Requests one socket has outstanding before it waits for their answers.
const WINDOW: u64 = 64;
/// How long a socket waits for a window's answers before it sends the next
/// window (answers dropped under load are not waited for).
const WINDOW_PATIENCE: Duration = Duration::from_millis(200);
/// How long the relay may settle after the flood before memory is read.
const SETTLE: Duration = Duration::from_secs(1);

/// What a flood sends.
#[derive(Debug, Clone, Copy)]
pub struct FloodLoad {
    /// Requests in all, after the warm-up.
    pub requests: u64,
    /// Source sockets they come from.
    pub sockets: u64,
}

/// The outcome of one flood on one relay.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloodOutcome {
    /// Requests sent (after the warm-up).
    pub sent: u64,
    /// Allocate error responses received for them.
    pub answered: u64,
    /// Resident memory after the warm-up, in KiB.
    pub rss_before_kib: u64,
    /// Resident memory after the flood and [`SETTLE`], in KiB.
    pub rss_after_kib: u64,
    /// Peak resident memory of the process's whole life, in KiB.
    pub peak_rss_kib: u64,
    /// How long the flood took.
    pub duration: Duration,
}

impl FloodOutcome {
    /// Growth of resident memory over the flood, in MiB (negative when the
    /// relay gave memory back).
    pub fn growth_mib(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / 1024.0
    }
}

/// Floods `relay` with `load`. A warm-up of 1 % of the requests first
/// (at least 100 per socket) fills what any relay allocates once (buffers,
/// thread caches), so the growth measured after it is what the requests
/// themselves leave behind.
pub async fn run(relay: &mut RunningRelay, load: FloodLoad) -> anyhow::Result<FloodOutcome> {
    let mut sockets = Vec::new();
    for _ in 0..load.sockets {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(relay.addr).await?;
        sockets.push(Arc::new(socket));
    }
    let per_socket = load.requests.div_ceil(load.sockets);
    let warm_up = (per_socket / 100).max(100);
    flood(&sockets, warm_up, 0).await?;

    let before = relay.sample()?;
    let started = Instant::now();
    let (sent, answered) = flood(&sockets, per_socket, warm_up).await?;
    let duration = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    relay.ensure_running()?;
    let after = relay.sample()?;
    Ok(FloodOutcome {
        sent,
        answered,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        peak_rss_kib: after.peak_rss_kib,
        duration,
    })
}

/// Sends `count` requests from every socket, numbered from `first`, in
/// windows; returns (sent, answered) over all sockets.
async fn flood(sockets: &[Arc<UdpSocket>], count: u64, first: u64) -> anyhow::Result<(u64, u64)> {
    let mut tasks = Vec::new();
    for (index, socket) in sockets.iter().enumerate() {
        let socket = Arc::clone(socket);
        tasks.push(tokio::spawn(async move {
            flood_one(&socket, index as u32, count, first).await
        }));
    }
    let (mut sent, mut answered) = (0, 0);
    for task in tasks {
        let (s, a) = task.await??;
        sent += s;
        answered += a;
    }
    Ok((sent, answered))
}

async fn flood_one(
    socket: &UdpSocket,
    tag: u32,
    count: u64,
    first: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut buf = vec![0u8; 1500];
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut checked = false;
    while sent < count {
        let window = WINDOW.min(count - sent);
        for i in 0..window {
            let request = unauthenticated_allocate(first + sent + i, tag);
            socket.send(&request).await.context("send an Allocate")?;
        }
        sent += window;
        let deadline = Instant::now() + WINDOW_PATIENCE;
        let mut window_answers = 0;
        while window_answers < window {
            let Ok(read) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await else {
                break;
            };
            let n = read.context("receive an answer")?;
            if is_allocate_error(&buf[..n]) {
                if !checked {
                    check_challenge(&buf[..n])?;
                    checked = true;
                }
                window_answers += 1;
            }
        }
        answered += window_answers;
    }
    Ok((sent, answered))
}
