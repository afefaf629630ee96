//! The two servers under test as child processes, and the clinic the
//! Konsult side is seeded with through its HTTP API.
//!
//! Konsult is the real `konsult` binary (`serve --demo` the first time, on
//! a data directory of its own that later starts reuse), listening on
//! 127.0.0.1 (plain HTTP and WebSocket). The bare forwarder is this
//! benchmark binary run again with `--bare-forwarder`. Each step starts
//! fresh processes, so its memory and CPU figures start from an idle
//! server.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{Duration as ChronoDuration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::process::{free_port, log_tail, ChildGuard, ProcessSample};

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The `konsult` binary.
    Konsult,
    /// The bare forwarder.
    Bare,
}

impl Kind {
    /// Every step runs Konsult, then the bare forwarder.
    pub const BOTH: [Kind; 2] = [Kind::Konsult, Kind::Bare];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Konsult => "konsult",
            Kind::Bare => "bare",
        })
    }
}

/// The demo clinic's therapist.
pub const THERAPIST_EMAIL: &str = "terapeut@demo.konsult";

/// How long a server may take to start, and to stop gracefully (Konsult
/// commits its queued room writes for at most 15 s when it shuts down).
const START_PATIENCE: Duration = Duration::from_secs(60);
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// Konsult's data directory, kept over the run's restarts.
pub struct Installation {
    dir: tempfile::TempDir,
    /// The relay's UDP port (not used by the load, but the relay runs).
    turn_port: u16,
    started: u32,
    /// The demo password, once the first start printed it.
    pub password: Option<String>,
    /// Settings beside the data directory's (`KONSULT_…` variables): a
    /// cluster node's database and NATS.
    env: Vec<(String, String)>,
}

impl Installation {
    /// A fresh, empty data directory.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            // KONSULT_BENCH_KEEP=1 keeps the data directories (and the
            // servers' logs) for a look afterwards.
            dir: tempfile::Builder::new()
                .prefix("konsult-signaling-load-")
                .disable_cleanup(std::env::var("KONSULT_BENCH_KEEP").is_ok_and(|v| v == "1"))
                .tempdir()?,
            turn_port: free_port(),
            started: 0,
            password: None,
            env: Vec::new(),
        })
    }

    /// A fresh data directory for the first node of a cluster, with the
    /// settings `env` (its first start seeds the demo clinic into the
    /// shared database).
    pub fn clustered(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut installation = Self::new()?;
        installation.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Ok(installation)
    }

    /// Another node of `first`'s cluster: the same settings and the same
    /// keys (data key, relay secret), a data directory and a relay port of
    /// its own; it seeds nothing.
    pub fn node_of(first: &Installation) -> anyhow::Result<Self> {
        let mut node = Self::new()?;
        for name in ["data.key", "data.key.audit-keyed", "turn.secret"] {
            let from = first.dir.path().join(name);
            if from.exists() {
                std::fs::copy(&from, node.dir.path().join(name))
                    .with_context(|| format!("copy {name} to another node"))?;
            }
        }
        node.env = first.env.clone();
        node.started = 1;
        node.password = first.password.clone();
        Ok(node)
    }

    /// The server's log (every start of this installation).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

/// A running server.
pub struct Server {
    /// Which one.
    pub kind: Kind,
    /// Its HTTP and WebSocket address.
    pub addr: SocketAddr,
    child: ChildGuard,
    log: PathBuf,
}

impl Server {
    /// Starts Konsult on `installation` (the first start seeds the demo
    /// clinic) and waits until `/healthz` answers.
    pub async fn konsult(installation: &mut Installation) -> anyhow::Result<Self> {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let demo = installation.started == 0;
        let log = installation.log();
        let mut command = Command::new(env!("CARGO_BIN_EXE_konsult"));
        for (k, _) in std::env::vars() {
            if k.starts_with("KONSULT_") || k == "RUST_LOG" {
                command.env_remove(k);
            }
        }
        command
            .current_dir(installation.dir.path())
            .env("KONSULT_DATA_DIR", installation.dir.path())
            .env(
                "KONSULT_TURN__LISTEN",
                format!("127.0.0.1:{}", installation.turn_port),
            )
            // The server caps connections by its descriptor limit as well.
            .env("KONSULT_HTTP__MAX_CONNECTIONS", "60000")
            .envs(installation.env.iter().map(|(k, v)| (k, v)))
            .args(["serve", "--listen", &addr.to_string()]);
        if demo {
            command.arg("--demo");
        }
        let log_start = std::fs::metadata(&log).map_or(0, |m| m.len());
        let child = ChildGuard::spawn("konsult", &mut command, &log)?;
        installation.started += 1;
        let mut server = Self {
            kind: Kind::Konsult,
            addr,
            child,
            log: log.clone(),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            server.child.ensure_running().with_context(|| {
                format!("konsult did not start; its log:\n{}", log_tail(&log, 4000))
            })?;
            let healthy = http
                .get(format!("http://{addr}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if healthy {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "konsult did not answer /healthz within {START_PATIENCE:?}; its log:\n{}",
                    log_tail(&log, 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if demo {
            // `serve --demo` prints the login once the clinic is seeded.
            loop {
                let printed = std::fs::read(&log).unwrap_or_default();
                let printed = String::from_utf8_lossy(&printed[log_start as usize..]);
                if let Some(rest) = printed.split("password: ").nth(1) {
                    if let Some(password) = rest.split_whitespace().next() {
                        installation.password = Some(password.to_owned());
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!("konsult --demo printed no password; its log:\n{printed}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        server.settle().await;
        Ok(server)
    }

    /// Starts the bare forwarder (this binary again); `nagle`: without
    /// `TCP_NODELAY`.
    pub async fn bare(scratch: &std::path::Path, nagle: bool) -> anyhow::Result<Self> {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = scratch.join("bare.log");
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["--bare-forwarder", "--listen", &addr.to_string()]);
        if nagle {
            command.arg("--nagle");
        }
        let child = ChildGuard::spawn("bare forwarder", &mut command, &log)?;
        let mut server = Self {
            kind: Kind::Bare,
            addr,
            child,
            log,
        };
        let deadline = Instant::now() + START_PATIENCE;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            server.child.ensure_running()?;
            if Instant::now() > deadline {
                bail!("the bare forwarder does not listen on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.settle().await;
        Ok(server)
    }

    /// Starts a server of `kind`.
    pub async fn start(
        kind: Kind,
        installation: &mut Installation,
        scratch: &std::path::Path,
        bare_nagle: bool,
    ) -> anyhow::Result<Self> {
        match kind {
            Kind::Konsult => Self::konsult(installation).await,
            Kind::Bare => Self::bare(scratch, bare_nagle).await,
        }
    }

    /// Lets a freshly started server finish its start-up work (background
    /// jobs, lazy allocations) before anything is measured.
    async fn settle(&mut self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// CPU time and memory now.
    pub fn sample(&self) -> anyhow::Result<ProcessSample> {
        ProcessSample::read(self.child.pid())
    }

    /// Fails (with the log's tail) if the server died.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        let log = self.log.clone();
        self.child
            .ensure_running()
            .with_context(|| format!("its log:\n{}", log_tail(&log, 4000)))
    }

    /// A graceful stop (SIGTERM), SIGKILL if it takes too long.
    pub fn stop(self) {
        self.child.stop(STOP_PATIENCE);
    }

    /// The last `bytes` of the server's log.
    pub fn log_tail(&self, bytes: usize) -> String {
        log_tail(&self.log, bytes)
    }

    /// SIGKILL: the server dies at once, as a crashed node does.
    pub fn kill(self) {
        drop(self.child);
    }
}

/// A logged-in dashboard session, through the HTTP API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// `konsult_session=…`, for the WebSocket upgrade too.
    pub cookie: String,
    csrf: String,
}

impl Api {
    /// Logs in at `addr`.
    pub async fn login(addr: SocketAddr, email: &str, password: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let base = format!("http://{addr}");
        let response = http
            .post(format!("{base}/api/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!(
                "login as {email}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("konsult_session="))
            .and_then(|v| v.split(';').next())
            .context("no session cookie in the login answer")?
            .to_owned();
        let me: Value = response.json().await?;
        let csrf = me["csrf_token"]
            .as_str()
            .context("no csrf_token in the login answer")?
            .to_owned();
        Ok(Self {
            http,
            base,
            cookie,
            csrf,
        })
    }

    /// POST as the logged-in user; the status, the JSON answer and the
    /// `Retry-After` seconds, if any.
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value, u64)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(1);
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry_after,
        ))
    }

    /// GET as the logged-in user; the JSON answer of a 200.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        if status != StatusCode::OK {
            bail!("GET {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn post_created(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, answer, _) = self.post(path, &body).await?;
        if status != StatusCode::CREATED {
            bail!("POST {path}: {status} {answer}");
        }
        Ok(answer)
    }

    /// A new patient eligible for video (in-clinic visit two days ago, a
    /// course, an assessment with every criterion met): (patient, course).
    pub async fn eligible_patient(&self) -> anyhow::Result<(String, String)> {
        let patient = self
            .post_created(
                "/api/patients",
                json!({"name": "Belastning Testesen", "phone": "20304050"}),
            )
            .await?;
        let pid = patient["id"].as_str().context("patient id")?.to_owned();
        self.post_created(
            &format!("/api/patients/{pid}/visits"),
            json!({"at": Utc::now() - ChronoDuration::days(2)}),
        )
        .await?;
        let referral = (Utc::now() - ChronoDuration::days(10)).date_naive();
        let course = self
            .post_created(
                &format!("/api/patients/{pid}/courses"),
                json!({"speciale": 51, "referral_date": referral}),
            )
            .await?;
        let cid = course["id"].as_str().context("course id")?.to_owned();
        self.post_created(
            &format!("/api/courses/{cid}/assessments"),
            json!({"cognitively_able": true, "technically_able": true,
                   "clinically_relevant": true, "patient_safe": true,
                   "patient_prefers_video": true}),
        )
        .await?;
        Ok((pid, cid))
    }
}

/// One consultation to join: the therapist names `consultation`, the
/// patient holds `token` (for the bare forwarder both are the pairing key).
#[derive(Debug, Clone)]
pub struct Room {
    /// The consultation id.
    pub consultation: String,
    /// The patient's join-link token.
    pub token: String,
}

/// What scheduling the consultations took.
#[derive(Debug, Clone, Default)]
pub struct Seeding {
    /// Consultations scheduled.
    pub scheduled: usize,
    /// Wall time of the scheduling requests.
    pub elapsed: Duration,
    /// Answers 429 or 503 (each retried after its `Retry-After`).
    pub rate_limited: u64,
    /// Request latencies.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

/// Schedules `count` consultations for one patient (overlapping, starting
/// in five minutes, 30 minutes long, not relay-only), `concurrency`
/// requests in flight.
pub async fn schedule_consultations(
    api: &Api,
    patient: &str,
    course: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<Room>, Seeding)> {
    let start = Utc::now() + ChronoDuration::minutes(5);
    let body = Arc::new(json!({
        "patient_id": patient, "course_id": course, "start": start,
        "length_minutes": 30, "relay_only": false, "allow_overlap": true,
    }));
    let began = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut jobs = tokio::task::JoinSet::new();
    for n in 0..count {
        let api = api.clone();
        let body = body.clone();
        let semaphore = semaphore.clone();
        jobs.spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            let mut rate_limited = 0u64;
            loop {
                let sent = Instant::now();
                let (status, answer, retry_after) = api.post("/api/consultations", &body).await?;
                let took = sent.elapsed();
                // 503: the database is busy (a cluster's shared PostgreSQL
                // with every scheduling request in one clinic's lock).
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE
                {
                    rate_limited += 1;
                    tokio::time::sleep(Duration::from_secs(retry_after.clamp(1, 60))).await;
                    continue;
                }
                if status != StatusCode::CREATED {
                    bail!("POST /api/consultations: {status} {answer}");
                }
                let consultation = answer["consultation"]["id"]
                    .as_str()
                    .context("consultation.id")?
                    .to_owned();
                let token = answer["join_url"]
                    .as_str()
                    .and_then(|url| url.rsplit('/').next())
                    .context("join_url")?
                    .to_owned();
                return Ok::<_, anyhow::Error>((
                    n,
                    Room {
                        consultation,
                        token,
                    },
                    took,
                    rate_limited,
                ));
            }
        });
    }
    let mut rooms: Vec<Option<Room>> = vec![None; count];
    let mut latencies = Vec::with_capacity(count);
    let mut rate_limited = 0;
    while let Some(done) = jobs.join_next().await {
        let (n, room, took, limited) = done??;
        rooms[n] = Some(room);
        latencies.push(took);
        rate_limited += limited;
    }
    let elapsed = began.elapsed();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let seeding = Seeding {
        scheduled: count,
        elapsed,
        rate_limited,
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    };
    Ok((rooms.into_iter().flatten().collect(), seeding))
}
