//! The database fails under a running server (issue 10, item 5, and the
//! server's side of item 4): requests are answered 503
//! `database_unavailable` with `Retry-After` within seconds, `/readyz` says
//! why it is not ready, and both recover by themselves; start-up names the
//! database it cannot reach, without its password.
//!
//! PostgreSQL is reached through a TCP proxy that the test stops and
//! starts again on the same port (skipped without
//! `KONSULT_TEST_POSTGRES_URL`); SQLite lives on an 8 MiB tmpfs that the
//! test fills (skipped without mount rights).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use common::{t0, Client, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A TCP proxy to PostgreSQL that can be stopped (listener closed, every
/// connection cut) and started again on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let mut proxy = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            upstream,
            task: None,
        };
        proxy.listen().await;
        proxy
    }

    async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener: TcpListener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every
            // connection, which closes both of its sockets.
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Closes the listener and cuts every connection.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        assert!(self.task.is_none(), "still running");
        self.listen().await;
    }
}

/// A PostgreSQL database made for one test and dropped after it.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    async fn create(admin_url: &str) -> Self {
        use sqlx::Connection;
        let name = format!("konsult_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        Self {
            admin_url: admin_url.to_owned(),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The status, `Retry-After`, body and duration of a request.
async fn timed(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let started = Instant::now();
    let mut req = client
        .http
        .request(method, format!("{}{path}", client.base));
    req = req.header("x-csrf-token", client.csrf_token());
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        took: started.elapsed(),
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

impl Answer {
    /// Asserts 503 `problem` (a problem type, or a `/readyz` reason) with a
    /// `Retry-After` of whole seconds.
    fn assert_unavailable(&self, what: &str, code: &str) {
        assert_eq!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {self:?}"
        );
        let seconds: u64 = self
            .retry_after
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: no Retry-After: {self:?}"))
            .parse()
            .unwrap();
        assert!(seconds >= 1, "{what}: {self:?}");
        let named = self.body["type"] == format!("urn:konsult:problem:{code}")
            || self.body["reason"] == code;
        assert!(named, "{what}: expected {code}: {self:?}");
    }
}

const GET: reqwest::Method = reqwest::Method::GET;
const POST: reqwest::Method = reqwest::Method::POST;

#[tokio::test]
async fn postgres_down_is_503_within_seconds_and_recovers() {
    let Ok(base_url) = std::env::var("KONSULT_TEST_POSTGRES_URL") else {
        eprintln!("KONSULT_TEST_POSTGRES_URL is not set: skipping");
        return;
    };
    let pg = PgDatabase::create(&base_url).await;
    let options = sqlx::postgres::PgConnectOptions::from_str(&base_url).unwrap();
    let upstream: SocketAddr = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let mut proxy = Proxy::start(upstream).await;
    let mut url = reqwest::Url::parse(&base_url).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    url.set_path(&pg.name);

    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.database_url = Some(url.to_string());
    let timeout = Duration::from_secs(u64::from(settings.database_timeout_seconds));
    let app = TestApp::spawn_with(settings, dir, t0()).await;
    let client = app
        .setup_clinic("Klinik Nord", "111111", "admin@nord.example")
        .await;
    let patient = json!({"name": "Karen Jensen", "phone": "20304050"});
    assert_eq!(
        timed(&client, GET, "/api/patients", None).await.status,
        StatusCode::OK
    );
    let ready = timed(&client, GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");

    proxy.stop().await;

    // A read, a write and readiness: told within seconds, not 30.
    let read = timed(&client, GET, "/api/patients", None).await;
    read.assert_unavailable("a read with PostgreSQL down", "database_unavailable");
    let write = timed(&client, POST, "/api/patients", Some(patient.clone())).await;
    write.assert_unavailable("a write with PostgreSQL down", "database_unavailable");
    let not_ready = timed(&client, GET, "/readyz", None).await;
    not_ready.assert_unavailable("/readyz with PostgreSQL down", "database_unavailable");
    assert_eq!(not_ready.body["status"], "not_ready", "{not_ready:?}");
    let detail = not_ready.body["detail"].as_str().unwrap_or_default();
    assert!(
        !detail.is_empty() && !detail.contains("postgres://"),
        "{not_ready:?}"
    );
    eprintln!(
        "PostgreSQL down: read 503 after {:.2} s, write 503 after {:.2} s, /readyz 503 after {:.2} s (database_timeout_seconds = {})",
        read.took.as_secs_f64(),
        write.took.as_secs_f64(),
        not_ready.took.as_secs_f64(),
        timeout.as_secs()
    );
    let limit = timeout + Duration::from_secs(2);
    assert!(
        read.took < limit && write.took < limit,
        "{read:?} {write:?}"
    );
    assert!(not_ready.took < Duration::from_secs(4), "{not_ready:?}");

    // PostgreSQL back: both recover without a restart.
    proxy.restart().await;
    let back = Instant::now();
    loop {
        let read = timed(&client, GET, "/api/patients", None).await;
        if read.status == StatusCode::OK {
            break;
        }
        read.assert_unavailable("a read while PostgreSQL comes back", "database_unavailable");
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "no recovery: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "PostgreSQL back: reads answered again after {:.2} s",
        back.elapsed().as_secs_f64()
    );
    let write = timed(&client, POST, "/api/patients", Some(patient)).await;
    assert_eq!(write.status, StatusCode::CREATED, "{write:?}");
    let ready = timed(&client, GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body["status"], "ready");

    app.stop().await;
    proxy.stop().await;
    drop(pg);
}

#[test]
fn start_up_names_an_unreachable_postgres_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_konsult"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KONSULT_") {
            cmd.env_remove(k);
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .current_dir(dir.path())
        .env(
            "KONSULT_DATABASE_URL",
            format!("postgres://konsult:hemmelig@127.0.0.1:{port}/klinik"),
        )
        .env("KONSULT_TURN__ENABLED", "false")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("konsult still trying to reach PostgreSQL after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(exit.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("konsult: cannot reach PostgreSQL at ")
            && last.contains(&format!("127.0.0.1:{port}/klinik"))
            && last.to_lowercase().contains("refused"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hemmelig") && !stderr.contains("konsult:hemmelig"),
        "the password was printed: {stderr}"
    );
    eprintln!(
        "start-up with PostgreSQL unreachable: exit 1 after {:.2} s: {last}",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Writes `path` until the file system has no room left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 16 * 1024];
    while let Ok(n) = f.write(&chunk) {
        if n == 0 {
            break;
        }
    }
    let _ = f.sync_all();
}

#[tokio::test]
async fn sqlite_on_a_full_disk_is_not_ready_and_never_500() {
    let fs = match Tmpfs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED sqlite_on_a_full_disk_is_not_ready_and_never_500: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.database_url = Some(format!(
        "sqlite://{}",
        fs.path().join("konsult.db").display()
    ));
    let app = TestApp::spawn_with(settings, dir, t0()).await;
    let client = app
        .setup_clinic("Klinik Syd", "222222", "admin@syd.example")
        .await;
    let patient = |n: usize| json!({"name": format!("Patient {n}"), "phone": "20304050"});
    let ready = timed(&client, GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");

    // Full: not ready; writes are done or refused 503, never 500.
    let filler = fs.path().join("filler");
    fill(&filler);
    let not_ready = timed(&client, GET, "/readyz", None).await;
    not_ready.assert_unavailable("/readyz on a full disk", "database_disk_full");
    let mut refused = 0;
    for n in 0..20 {
        let write = timed(&client, POST, "/api/patients", Some(patient(n))).await;
        if write.status != StatusCode::CREATED {
            write.assert_unavailable("a write on a full disk", "database_unavailable");
            refused += 1;
        }
    }
    assert!(refused > 0, "no write was refused on a full disk");
    std::fs::remove_file(&filler).unwrap();
    let ready = timed(&client, GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    let write = timed(&client, POST, "/api/patients", Some(patient(100))).await;
    assert_eq!(write.status, StatusCode::CREATED, "{write:?}");

    app.stop().await;
}
