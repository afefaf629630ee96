//! The real `konsult` binary as a child process on fixed loopback ports and
//! its own data directory, so it can be killed (`SIGKILL`) and started again
//! on the same database, and a demo clinic driven through the HTTP API as a
//! practice system would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::Client;

pub use super::ports::free_port;

/// One installation: a data directory and the ports it listens on.
pub struct Server {
    dir: tempfile::TempDir,
    /// HTTP port.
    pub port: u16,
    /// The relay's UDP port.
    pub turn_port: u16,
    child: Option<Child>,
    /// Extra `KONSULT_…` settings.
    env: Vec<(String, String)>,
}

impl Server {
    /// A new installation (nothing started yet).
    pub fn new(env: &[(&str, &str)]) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            turn_port: free_port(),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The base URL.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the binary (with `--demo` on the first start, which seeds a
    /// clinic and prints its login) and waits until it answers `/healthz`.
    /// Returns what it printed and when it answered.
    pub fn start(&mut self, demo: bool) -> (String, Instant) {
        self.start_attempt(demo, 1)
    }

    fn start_attempt(&mut self, demo: bool, attempt: u32) -> (String, Instant) {
        assert!(self.child.is_none(), "already running");
        let log_path = self.dir.path().join("server.log");
        let earlier = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_konsult"));
        for (k, _) in std::env::vars() {
            if k.starts_with("KONSULT_") {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(self.dir.path())
            .env("KONSULT_DATA_DIR", self.dir.path())
            .env(
                "KONSULT_TURN__LISTEN",
                format!("127.0.0.1:{}", self.turn_port),
            )
            .env("KONSULT_TURN__ALLOW_LOOPBACK_PEERS", "true")
            .env("KONSULT_SIGNALING__MIN_TWO_WAY_SECONDS", "2")
            .env("KONSULT_SIGNALING__MIN_TWO_WAY_PACKETS", "20")
            .env("RUST_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut args = vec!["serve".to_owned(), "--listen".to_owned()];
        args.push(format!("127.0.0.1:{}", self.port));
        if demo {
            args.push("--demo".to_owned());
        }
        let mut child = cmd
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("server.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut out = String::new();
            let mut stdout = stdout;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.push_str(&String::from_utf8_lossy(&buf[..n]));
                let _ = tx.send(out.clone());
            }
        });
        let deadline = Instant::now() + StdDuration::from_secs(60);
        let url = format!("{}/healthz", self.base());
        loop {
            assert!(
                Instant::now() < deadline,
                "konsult did not answer in time; its log ends:\n{}",
                self.log_tail(4_000)
            );
            let exited = self.child.as_mut().map(|c| c.try_wait());
            if let Some(Ok(Some(status))) = exited {
                self.child = None;
                let log = std::fs::read(&log_path).unwrap_or_default();
                let log = String::from_utf8_lossy(&log[(earlier as usize).min(log.len())..]);
                // Another process took a port after it was chosen: choose
                // again (the callers read `port` after `start`).
                if log.contains("in use") && attempt < 5 {
                    self.port = free_port();
                    self.turn_port = free_port();
                    return self.start_attempt(demo, attempt + 1);
                }
                panic!("konsult exited ({status}) before it answered; its log ends:\n{log}");
            }
            if healthy(&url) {
                {
                    let mut printed = String::new();
                    while let Ok(text) =
                        rx.recv_timeout(StdDuration::from_millis(if demo { 500 } else { 1 }))
                    {
                        printed = text;
                    }
                    return (printed, Instant::now());
                }
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
    }

    /// The last `bytes` of the server's log (all runs of this installation).
    pub fn log_tail(&self, bytes: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let start = log.len().saturating_sub(bytes);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        log[start..].to_owned()
    }

    /// `SIGKILL`: no shutdown of any kind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends `SIGTERM` (a graceful shutdown) without waiting.
    #[cfg(unix)]
    pub fn signal_term(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    #[cfg(unix)]
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill -{signal}");
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a blocking GET of `url` answers 200.
fn healthy(url: &str) -> bool {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(StdDuration::from_millis(500)));
    if write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// The demo's password, from what `serve --demo` printed.
pub fn demo_password(printed: &str) -> String {
    printed
        .split("password: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no demo password in {printed:?}"))
        .to_owned()
}

/// Logs in; returns the client and the `konsult_session=…` cookie for
/// signaling.
pub async fn login(base: &str, email: &str, password: &str) -> (Client, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("konsult_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let client = Client::new(base);
    client.login(email, password).await;
    (client, cookie)
}

/// A new eligible patient (in-clinic visit, course, assessment) and a
/// consultation starting in five minutes; returns (consultation id, join
/// link token).
pub async fn eligible_consultation(
    client: &Client,
    n: usize,
    relay_only: bool,
) -> (String, String) {
    let patient = client
        .post_ok(
            "/api/patients",
            json!({"name": format!("Soak Patient {n}"), "phone": "20304050"}),
            StatusCode::CREATED,
        )
        .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    client
        .post_ok(
            &format!("/api/patients/{pid}/visits"),
            json!({"at": Utc::now() - Duration::days(2)}),
            StatusCode::CREATED,
        )
        .await;
    let referral = (Utc::now() - Duration::days(10)).date_naive();
    let course = client
        .post_ok(
            &format!("/api/patients/{pid}/courses"),
            json!({"speciale": 51, "referral_date": referral}),
            StatusCode::CREATED,
        )
        .await;
    let cid = course["id"].as_str().unwrap().to_owned();
    client
        .post_ok(
            &format!("/api/courses/{cid}/assessments"),
            json!({"cognitively_able": true, "technically_able": true, "clinically_relevant": true, "patient_safe": true, "patient_prefers_video": true}),
            StatusCode::CREATED,
        )
        .await;
    let scheduled = client
        .post_ok(
            "/api/consultations",
            json!({"patient_id": pid, "course_id": cid, "start": Utc::now() + Duration::minutes(5),
                   "length_minutes": 30, "relay_only": relay_only}),
            StatusCode::CREATED,
        )
        .await;
    let id = scheduled["consultation"]["id"].as_str().unwrap().to_owned();
    let token = scheduled["join_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    (id, token)
}

/// Completes a consultation with a journal note; returns the answer.
pub async fn complete(client: &Client, id: &str) -> Value {
    client
        .post_ok(
            &format!("/api/consultations/{id}/complete"),
            json!({"journal": {"evaluation": "Øvelserne virker; fortsæt."}}),
            StatusCode::OK,
        )
        .await
}
