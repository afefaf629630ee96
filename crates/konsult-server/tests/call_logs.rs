//! Everything logged during a full relay-only call (join, admission, media,
//! a dropped and resumed patient socket, the end and the relay teardown),
//! captured at `trace` through the server's own `telemetry` setup, holds no
//! IPv4 or IPv6 address, no candidate and no SDP; and the SQLite database
//! afterwards holds no SDP, candidate or address either.
//!
//! Alone in its test binary: the subscriber is global and sees every task
//! of the server, the relay and both peers.

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every IP address in `text`: dotted quads, and every word (a run of
/// identifier characters, colons, dots and `%`) that the standard parser
/// accepts as an IPv6 address once a zone (`%eth0`) is cut off. Rust paths
/// (`konsult_peer::client`) and times (`18:01:02.123`) are no addresses.
fn addresses(text: &str) -> Vec<String> {
    let v4 = regex::Regex::new(r"\b\d{1,3}(\.\d{1,3}){3}\b").unwrap();
    let mut found: Vec<String> = v4.find_iter(text).map(|m| m.as_str().to_owned()).collect();
    let words =
        text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '%')));
    for word in words {
        let word = word
            .split('%')
            .next()
            .unwrap_or_default()
            .trim_end_matches('.');
        if word != "::" && word.contains(':') && word.parse::<IpAddr>().is_ok() {
            found.push(word.to_owned());
        }
    }
    found
}

#[test]
fn the_address_finder_finds_addresses() {
    let sample = "a 127.0.0.1:3478 b [::1]:9 c fe80::1%eth0 d 2001:db8::7. e konsult_peer::client x::cafe 18:01:02.123 f";
    assert_eq!(
        addresses(sample),
        ["127.0.0.1", "::1", "fe80::1", "2001:db8::7"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_call_logs_and_stores_no_address_candidate_or_sdp() {
    let captured = Captured::default();
    konsult_server::telemetry::init_with_filter("trace", captured.clone());

    let app = TestApp::spawn(Db::Sqlite).await;
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let (mut patient, mut therapist) = connect_pair(&app, &fx, &b).await;
    let (p, t) = tokio::join!(
        patient.run_until_established(MEDIA_TIMEOUT),
        therapist.run_until_established(MEDIA_TIMEOUT),
    );
    assert!(p.unwrap().media_established && t.unwrap().media_established);
    // A dropped socket and its resume log too.
    patient.drop_connection();
    let (p, t) = tokio::join!(
        patient.run_for(StdDuration::from_secs(3)),
        therapist.run_for(StdDuration::from_secs(3)),
    );
    assert_eq!(p.unwrap().resumes, 1);
    t.unwrap();
    therapist.leave().await.unwrap();
    let _ = patient.run_for(StdDuration::from_secs(5)).await;
    wait_for_events(&app, &fx, &b, &WHOLE_CALL).await;
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    while app.state.signaling.turn().allocations_for(b.id()).await != Some(0) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    drop(patient);
    let data_dir = app.dir.path().to_path_buf();
    let db_files: Vec<Vec<u8>> = std::fs::read_dir(&data_dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_owned();
            name.starts_with("konsult.db")
                .then(|| std::fs::read(&path).unwrap())
        })
        .collect();
    app.stop().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture saw the call: the server's, the relay's and the peers'
    // own lines.
    for marker in [
        "joined",
        "room event",
        "two_way_established",
        "closed the consultation on the relay",
        "TURN relay listening",
        "reconnected",
    ] {
        assert!(log.contains(marker), "no {marker:?} in the log:\n{log}");
    }
    let found = addresses(&log);
    assert!(found.is_empty(), "addresses in the log: {found:?}\n{log}");
    for needle in [
        "candidate:",
        "a=candidate",
        "v=0",
        "a=ice-ufrag",
        "a=fingerprint",
        "typ relay",
        "typ host",
    ] {
        assert!(!log.contains(needle), "{needle:?} in the log:\n{log}");
    }
    assert!(!log.contains(&b.token), "the link token in the log");

    assert!(!db_files.is_empty());
    for bytes in &db_files {
        let text = String::from_utf8_lossy(bytes);
        for needle in [
            "a=candidate",
            "candidate:",
            "v=0\r\n",
            "a=ice-ufrag",
            "a=fingerprint",
            "typ relay",
            "typ host",
            "127.0.0.1",
        ] {
            assert!(!text.contains(needle), "{needle:?} stored in the database");
        }
    }
}
