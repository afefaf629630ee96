//! The `konsult` binary: clear one-line errors at start, and a graceful
//! shutdown on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn konsult() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_konsult"));
    // Only what the test sets: no settings from the caller's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("KONSULT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[test]
fn a_bad_database_url_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = konsult()
        .current_dir(dir.path())
        .env("KONSULT_DATABASE_URL", "mysql://nowhere/db")
        .env("KONSULT_TURN__ENABLED", "false")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("konsult: ") && last.contains("database"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn invalid_settings_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.toml"), "listen = 5\n").unwrap();
    let out = konsult()
        .current_dir(dir.path())
        .args(["--config", "k.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("konsult: invalid settings"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully_and_a_restart_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        konsult()
            .current_dir(dir.path())
            .env("KONSULT_TURN__ENABLED", "false")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let wait_ready = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "konsult did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut child = start();
    wait_ready();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no shutdown within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(
        stdout.contains("/app/setup#"),
        "first run prints the setup link: {stdout}"
    );
    let data = dir.path().join("konsult-data");
    assert!(data.join("konsult.db").exists() && data.join("data.key").exists());

    // A restart uses the same key and database.
    let key = std::fs::read(data.join("data.key")).unwrap();
    let mut child = start();
    wait_ready();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(key, std::fs::read(data.join("data.key")).unwrap());
}
