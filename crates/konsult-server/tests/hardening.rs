//! Denial of service through the front door (security review, issue 10):
//! failed logins must not exhaust memory, half-sent requests must not
//! exhaust file descriptors, and the login limit must slow an attacker
//! down without locking the account's owner out.
//!
//! The first two run the real binary as a child process (its memory and
//! file descriptors are what is measured); the limiter tests run the app
//! in-process. Clients are told apart by `X-Forwarded-For`, which the
//! server trusts only because these tests configure it to.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::binary::{demo_password, free_port};
use common::{TestApp, ADMIN_PASSWORD};
use reqwest::StatusCode;
use serde_json::json;

/// The real binary in its own data directory, started through `sh` so
/// that its file-descriptor limit can be lowered (`ulimit -n`).
struct Binary {
    _dir: tempfile::TempDir,
    base: String,
    child: Child,
    printed: String,
}

impl Binary {
    /// Starts `konsult serve --demo` with `nofile` file descriptors and the
    /// given extra settings, and waits until `/healthz` answers.
    fn start(nofile: u32, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_konsult"))
            .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")]);
        for (k, _) in std::env::vars() {
            if k.starts_with("KONSULT_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(dir.path())
            .env("KONSULT_DATA_DIR", dir.path())
            .env("KONSULT_TURN__LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let printed = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = printed.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthz(port, Duration::from_millis(500)) {
            assert!(Instant::now() < deadline, "konsult did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        while !printed.lock().unwrap().contains("password: ") {
            assert!(Instant::now() < deadline, "no demo login printed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let printed = printed.lock().unwrap().clone();
        Self {
            _dir: dir,
            base,
            child,
            printed,
        }
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Resident memory in MiB (`VmRSS` of `/proc/<pid>/status`).
    fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib / 1024
    }

    /// Open file descriptors of the server.
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /healthz` answers 200 within `timeout`.
fn healthz(port: u16, timeout: Duration) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

/// A login from the client at `client` (sent as `X-Forwarded-For`).
async fn login_from(
    http: &reqwest::Client,
    base: &str,
    client: &str,
    email: &str,
    password: &str,
) -> StatusCode {
    http.post(format!("{base}/api/login"))
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::REQUEST_TIMEOUT)
}

/// Item 1: 1,000 failed logins from 50 concurrent clients keep the
/// server's memory bounded and returned, and another user's correct login
/// during the flood gets in within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_login_flood_keeps_memory_bounded() {
    let server = Binary::start(
        4096,
        &[("KONSULT_HTTP__CLIENT_ADDRESS_HEADER", "x-forwarded-for")],
    );
    let password = demo_password(&server.printed);
    let base = server.base.clone();
    let idle = server.rss_mib();
    let peak = Arc::new(AtomicU64::new(idle));
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, flooding) = (peak.clone(), flooding.clone());
        let pid = server.child.id();
        std::thread::spawn(move || {
            while flooding.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let kib: u64 = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    peak.fetch_max(kib / 1024, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut attackers = Vec::new();
    for c in 0..50 {
        let (base, statuses) = (base.clone(), statuses.clone());
        attackers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..20 {
                let status = login_from(
                    &http,
                    &base,
                    &format!("198.51.100.{c}"),
                    &format!("nobody{c}-{i}@example.com"),
                    "wrong password",
                )
                .await;
                *statuses.lock().unwrap().entry(status.as_u16()).or_insert(0) += 1;
            }
        }));
    }
    // The owner logs in from their own client while the flood is on.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    let owner = login_from(
        &reqwest::Client::new(),
        &base,
        "203.0.113.7",
        "terapeut@demo.konsult",
        &password,
    )
    .await;
    let owner_took = asked.elapsed();
    for a in attackers {
        a.await.unwrap();
    }
    let flood_took = started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_mib();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "login flood: RSS idle {idle} MiB, peak {peak} MiB, after {after} MiB; \
         flood took {flood_took:?}; answers {:?}; owner's login {owner} in {owner_took:?}",
        statuses.lock().unwrap()
    );
    assert_eq!(owner, StatusCode::OK, "the owner's login during the flood");
    assert!(
        owner_took < Duration::from_secs(2),
        "the owner's login took {owner_took:?}"
    );
    assert!(peak < 200, "RSS peaked at {peak} MiB");
    assert!(after < 200, "RSS stayed at {after} MiB");
    let hashed = statuses.lock().unwrap().get(&401).copied().unwrap_or(0);
    assert!(hashed > 0, "some failed logins were really checked");
}

/// Item 2: 1,100 connections that send half a request and stall neither
/// exhaust the server's 1,024 file descriptors nor stop `/healthz`, and
/// the server closes them after its header timeout.
#[test]
fn half_sent_requests_time_out_and_leave_room() {
    let server = Binary::start(
        1024,
        &[
            ("KONSULT_HTTP__HEADER_TIMEOUT_SECONDS", "2"),
            ("KONSULT_HTTP__MAX_CONNECTIONS", "800"),
        ],
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let fds_idle = server.open_fds();
    let mut stalled = Vec::new();
    for i in 0..1100 {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            continue;
        };
        // Half a request: the request line and part of a header.
        let _ =
            s.write_all(format!("POST /api/login HTTP/1.1\r\nHost: x{i}\r\nContent-Ty").as_bytes());
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let fds_flood = server.open_fds();
    let asked = Instant::now();
    let mut healthy = false;
    while asked.elapsed() < Duration::from_secs(6) {
        if healthz(server.port(), Duration::from_secs(1)) {
            healthy = true;
            break;
        }
    }
    let health_took = asked.elapsed();
    // Give the header timeout (2 s) time to fire, then count what the
    // server closed: a read sees end-of-file or a reset instead of waiting.
    std::thread::sleep(Duration::from_secs(3));
    let mut closed = 0;
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => closed += 1,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => closed += 1,
        }
    }
    let fds_after = server.open_fds();
    eprintln!(
        "slow headers: {} connections opened; server fds idle {fds_idle}, during {fds_flood}, \
         after {fds_after}; /healthz {} after {health_took:?}; {closed} closed by the server",
        stalled.len(),
        if healthy {
            "answered"
        } else {
            "did not answer"
        },
    );
    assert!(
        healthy,
        "/healthz did not answer under 1,100 stalled connections"
    );
    assert!(fds_flood < 1000, "the server held {fds_flood} descriptors");
    assert_eq!(closed, stalled.len(), "every stalled connection is closed");
    assert!(
        fds_after < fds_idle + 50,
        "descriptors came back: {fds_after}"
    );
    assert!(healthz(server.port(), Duration::from_secs(1)));
}

/// An in-process app whose clients are told apart by `X-Forwarded-For`.
async fn app_with_clients() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.http.client_address_header = Some("x-forwarded-for".into());
    let app = TestApp::spawn_with(settings, dir, common::t0()).await;
    app.setup_clinic("Fysio", "123456", "owner@fysio.dk").await;
    app
}

/// Item 6: an attacker hammering the owner's account from another client
/// is slowed down and then refused; the owner still gets in, after at most
/// a short delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_is_slowed_but_owner_gets_in() {
    let app = app_with_clients().await;
    let http = reqwest::Client::new();
    let mut refused = 0;
    for _ in 0..15 {
        let status = login_from(&http, &app.base, "198.51.100.1", "owner@fysio.dk", "guess").await;
        match status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "the attacker's client is never refused");
    let asked = Instant::now();
    let owner = login_from(
        &http,
        &app.base,
        "203.0.113.7",
        "owner@fysio.dk",
        ADMIN_PASSWORD,
    )
    .await;
    let took = asked.elapsed();
    eprintln!("owner after 15 guesses by another client: {owner} in {took:?}");
    assert_eq!(owner, StatusCode::OK, "the owner is locked out");
    assert!(took < Duration::from_secs(8), "the owner waited {took:?}");
}

/// Item 6: one client guessing across many accounts runs out of budget,
/// and concurrent guesses are counted before they are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_from_one_client_are_counted() {
    let app = app_with_clients().await;
    let http = reqwest::Client::new();
    let guesses = (0..24).map(|i| {
        let (http, base) = (http.clone(), app.base.clone());
        async move {
            login_from(
                &http,
                &base,
                "198.51.100.2",
                &format!("user{i}@fysio.dk"),
                "guess",
            )
            .await
        }
    });
    let started = Instant::now();
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    eprintln!(
        "24 parallel guesses from one client: {checked} checked, {refused} refused in {:?}",
        started.elapsed()
    );
    assert_eq!(checked + refused, 24, "{statuses:?}");
    assert!(checked <= 10, "{checked} guesses were checked");
    // Another client is not affected.
    assert_eq!(
        login_from(
            &http,
            &app.base,
            "203.0.113.7",
            "owner@fysio.dk",
            ADMIN_PASSWORD
        )
        .await,
        StatusCode::OK
    );
}

/// Item 2, the body: a request whose headers arrived but whose body stalls
/// is answered or closed once the body timeout passes, not held open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_timed_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.http.body_timeout_seconds = 1;
    let app = TestApp::spawn_with(settings, dir, common::t0()).await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":",
    )
    .await
    .unwrap();
    let sent = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let waited = sent.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    eprintln!(
        "stalled body: ended after {waited:?}: {:?}",
        answer.lines().next()
    );
    assert!(read.is_ok(), "the connection was still open after 10 s");
    assert!(
        waited >= Duration::from_millis(900),
        "ended before the timeout: {answer}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a client error or a close: {answer}"
    );
    app.stop().await;
}
