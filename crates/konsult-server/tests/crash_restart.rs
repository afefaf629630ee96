//! Calls survive a crash of the server. The real `konsult` binary runs on
//! fixed loopback ports with its own SQLite file; two `konsult-peer`
//! clients (a patient with its join link, a therapist with a dashboard
//! login) hold a consultation, and the server is killed with `SIGKILL` and
//! started again on the same database.
//!
//! - A direct call keeps its media flowing while the server is gone; both
//!   sides resume signaling without a new admission and without a
//!   renegotiation, and the time from the server answering again to both
//!   resumes is printed.
//! - Soak: the server is killed at random points of many calls (direct and
//!   relay-only): before the admission, during it, while media starts,
//!   after two-way media, right after the therapist ended it. Afterwards no
//!   consultation is stuck, every one completes, each billable line is
//!   backed by evidence, and no line is lost or doubled. The suite runs a
//!   short smoke (`KONSULT_SOAK_CALLS`, default 4); the full run is
//!   `KONSULT_SOAK_CALLS=100 cargo test -p konsult-server --test faults
//!   kill_9 -- --nocapture`.

use crate::common;

use std::time::{Duration, Instant};

use common::binary::*;
use common::Client;
use konsult_peer::{CallReport, ClientOptions, Credentials, NetworkScope, PeerClient};

async fn connect(base: &str, cookie: &str, id: &str, token: &str) -> (PeerClient, PeerClient) {
    let local = ClientOptions {
        network: NetworkScope::Loopback,
        max_reconnects: 40,
        ..ClientOptions::default()
    };
    let patient = PeerClient::connect(
        base,
        Credentials::Patient {
            link_token: konsult_protocol::LinkToken::parse(token.to_owned()).unwrap(),
        },
        local.clone(),
    )
    .await
    .unwrap();
    let therapist = PeerClient::connect(
        base,
        Credentials::Therapist {
            cookie: cookie.to_owned(),
            consultation: id.parse().unwrap(),
        },
        ClientOptions {
            admit: true,
            ..local
        },
    )
    .await
    .unwrap();
    (patient, therapist)
}

fn video_in(report: &CallReport) -> u64 {
    report
        .media
        .as_ref()
        .map_or(0, |m| m.received.video.packets)
}

/// Runs both clients in short slices until both are back on the server
/// (`resumes` resumes, or a fresh start where the server could not resume);
/// returns when that happened.
async fn until_resumed(p: &mut PeerClient, t: &mut PeerClient, resumes: u32) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (pr, tr) = tokio::join!(
            p.run_for(Duration::from_millis(50)),
            t.run_for(Duration::from_millis(50))
        );
        let (pr, tr) = (pr.unwrap(), tr.unwrap());
        let back = |r: &CallReport| r.resumes + r.fresh_starts >= resumes;
        if back(&pr) && back(&tr) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no resume: {pr:?} {tr:?}");
    }
}

async fn consultation(client: &Client, id: &str) -> serde_json::Value {
    client.get_ok(&format!("/api/consultations/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_keeps_its_media_across_a_kill_9_and_resumes_without_admission() {
    direct_call_across_a_restart(Stop::Kill9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_keeps_its_media_across_a_graceful_restart_and_resumes_without_admission() {
    direct_call_across_a_restart(Stop::Sigterm).await;
}

/// How the server goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `kill -9`: nothing is told, nothing drained.
    Kill9,
    /// `SIGTERM`: a graceful shutdown (what systemd does on a restart).
    Sigterm,
}

async fn direct_call_across_a_restart(stop: Stop) {
    let mut server = Server::new(&[]);
    let (printed, _) = tokio::task::block_in_place(|| server.start(true));
    let base = server.base();
    let (client, cookie) = login(&base, "terapeut@demo.konsult", &demo_password(&printed)).await;
    let (id, token) = eligible_consultation(&client, 1, false).await;
    let (mut p, mut t) = connect(&base, &cookie, &id, &token).await;
    let (pr, tr) = tokio::join!(
        p.run_until_established(Duration::from_secs(60)),
        t.run_until_established(Duration::from_secs(60))
    );
    let (pr, tr) = (pr.unwrap(), tr.unwrap());
    assert!(pr.media_flowed_both_ways && tr.media_flowed_both_ways);
    let started_at = consultation(&client, &id).await["started_at"].clone();

    // The server goes; the direct media path does not need it.
    match stop {
        Stop::Kill9 => tokio::task::block_in_place(|| server.kill()),
        Stop::Sigterm => {
            server.signal_term();
            // The clients keep running while it shuts down.
            let exited = tokio::task::spawn_blocking(move || {
                server.wait();
                server
            });
            let (_, _) = tokio::join!(
                p.run_for(Duration::from_millis(500)),
                t.run_for(Duration::from_millis(500))
            );
            server = exited.await.unwrap();
        }
    }
    let (pd, td) = tokio::join!(
        p.run_for(Duration::from_secs(2)),
        t.run_for(Duration::from_secs(2))
    );
    let (pd, td) = (pd.unwrap(), td.unwrap());
    assert!(
        video_in(&pd) > video_in(&pr),
        "patient: media while the server was down"
    );
    assert!(
        video_in(&td) > video_in(&tr),
        "therapist: media while the server was down"
    );

    let (_, ready) = tokio::task::block_in_place(|| server.start(false));
    let resumed = until_resumed(&mut p, &mut t, 1).await;
    let resume_time = resumed.saturating_duration_since(ready);
    println!(
        "restart ({stop:?}): both sides resumed {} ms after the server answered again",
        resume_time.as_millis()
    );
    let (pa, ta) = tokio::join!(
        p.run_for(Duration::from_secs(2)),
        t.run_for(Duration::from_secs(2))
    );
    let (pa, ta) = (pa.unwrap(), ta.unwrap());
    // The same call: no new peer connection (its counters go on), no ICE
    // restart, no new admission.
    assert!(video_in(&pa) > video_in(&pd), "{pa:?}");
    assert!(video_in(&ta) > video_in(&td), "{ta:?}");
    assert_eq!(
        (pa.ice_restarts, ta.ice_restarts),
        (0, 0),
        "no renegotiation"
    );
    let c = consultation(&client, &id).await;
    assert_eq!(c["state"], "in_call");
    assert_eq!(c["started_at"], started_at, "admitted once");
    assert!(
        resume_time < Duration::from_secs(2),
        "resumed after {resume_time:?}"
    );

    t.leave().await.unwrap();
    let done = complete(&client, &id).await;
    assert_eq!(done["billable"], true, "{done}");
    drop(p);
    tokio::task::block_in_place(|| server.kill());
}

/// Where a soak round kills the server.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The patient waits; the admit may be in flight.
    Admission,
    /// Media is starting; two-way not yet established.
    MediaStarting,
    /// Two-way media established.
    Established,
    /// Right after the therapist's `leave`.
    AfterEnd,
}

/// A small deterministic generator, so a failing round can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_of_calls_loses_and_doubles_nothing() {
    let calls: usize = std::env::var("KONSULT_SOAK_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("KONSULT_SOAK_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20261130);
    let mut rng = Lcg(seed);
    // Rooms nobody comes back to settle 10 s after a restart.
    let mut server = Server::new(&[("KONSULT_SIGNALING__RESTORE_GRACE_SECONDS", "10")]);
    let (printed, _) = tokio::task::block_in_place(|| server.start(true));
    let base = server.base();
    let password = demo_password(&printed);
    let (_, cookie) = login(&base, "terapeut@demo.konsult", &password).await;
    let mut recoveries = Vec::new();
    let mut ids = Vec::new();
    let mut not_back = 0usize;
    for n in 0..calls {
        let relay_only = n % 2 == 1;
        let phase = [
            Phase::Admission,
            Phase::MediaStarting,
            Phase::Established,
            Phase::AfterEnd,
        ][(rng.next() % 4) as usize];
        let jitter = Duration::from_millis(rng.next() % 300);
        // A fresh login each round: the previous one lived in the killed
        // server's memory only as a row in the database, which survives.
        let (client, _) = login(&base, "terapeut@demo.konsult", &password).await;
        let (id, token) = eligible_consultation(&client, n, relay_only).await;
        ids.push(id.clone());
        let (mut p, mut t) = connect(&base, &cookie, &id, &token).await;
        match phase {
            Phase::Admission => tokio::time::sleep(jitter).await,
            Phase::MediaStarting => {
                let _ = tokio::join!(
                    p.run_until_media(Duration::from_secs(60)),
                    t.run_until_media(Duration::from_secs(60))
                );
                tokio::time::sleep(jitter).await;
            }
            Phase::Established | Phase::AfterEnd => {
                let (a, b) = tokio::join!(
                    p.run_until_established(Duration::from_secs(60)),
                    t.run_until_established(Duration::from_secs(60))
                );
                a.unwrap();
                b.unwrap();
            }
        }
        let therapist = if matches!(phase, Phase::AfterEnd) {
            // The leave goes out; the server dies shortly after.
            let leave = tokio::spawn(t.leave());
            tokio::time::sleep(jitter / 3).await;
            tokio::task::block_in_place(|| server.kill());
            let _ = leave.await;
            None
        } else {
            tokio::task::block_in_place(|| server.kill());
            Some(t)
        };
        let (_, ready) = tokio::task::block_in_place(|| server.start(false));
        let client = Client::new(&base);
        client.login("terapeut@demo.konsult", &password).await;

        if let Some(mut t) = therapist {
            // The call goes on: media, two-way, then the therapist ends it.
            let resumed = until_resumed(&mut p, &mut t, 1).await;
            recoveries.push(resumed.saturating_duration_since(ready));
            let (a, b) = tokio::join!(
                p.run_until_established(Duration::from_secs(90)),
                t.run_until_established(Duration::from_secs(90))
            );
            if let Err(e) = a.as_ref().and(b.as_ref()) {
                // Not stuck (the consultation is completed below), but the
                // call did not come back: counted and shown.
                println!(
                    "soak round {n} ({phase:?}, relay_only {relay_only}): the call did not come back: {e}\nserver log:\n{}",
                    server.log_tail(6000)
                );
                not_back += 1;
            }
            let _ = t.leave().await;
        }
        drop(p);
        // Whatever the crash interrupted, the consultation can be completed.
        let done = complete(&client, &id).await;
        let c = consultation(&client, &id).await;
        println!(
            "soak round {n}: {phase:?}, relay_only {relay_only}, jitter {} ms → {}, evidence {}, billable {}",
            jitter.as_millis(),
            c["state"],
            c["two_way_evidence"],
            done["billable"]
        );
        assert_eq!(c["state"], "completed");
        // Billable exactly when two-way evidence was recorded.
        assert_eq!(
            done["billable"].as_bool(),
            Some(!c["two_way_evidence"].is_null()),
            "round {n}: {done} {c}"
        );
    }
    // The whole day: one line per billable consultation, none doubled,
    // every line on a consultation with evidence.
    let client = Client::new(&base);
    client.login("terapeut@demo.konsult", &password).await;
    let day = konsult_domain::danish_day(chrono::Utc::now());
    let page = client
        .get_ok(&format!(
            "/api/billing?from={}&to={}",
            day.pred_opt().unwrap(),
            day.succ_opt().unwrap()
        ))
        .await;
    let lines = page["lines"].as_array().unwrap();
    let mut billed = std::collections::BTreeSet::new();
    for line in lines {
        let line_of = line["consultation_id"].as_str().unwrap().to_owned();
        assert!(billed.insert(line_of.clone()), "two lines for {line_of}");
        if ids.contains(&line_of) {
            let c = consultation(&client, &line_of).await;
            assert!(
                !c["two_way_evidence"].is_null(),
                "a line without evidence: {line}"
            );
            assert_eq!(line["evidence"], c["two_way_evidence"]);
        }
    }
    let mut billable = 0;
    for id in &ids {
        let c = consultation(&client, id).await;
        assert_eq!(c["state"], "completed", "stuck: {c}");
        if !c["two_way_evidence"].is_null() {
            billable += 1;
            assert!(
                billed.contains(id),
                "a billable consultation without its line: {id}"
            );
        }
    }
    recoveries.sort();
    let median = recoveries
        .get(recoveries.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = recoveries.last().copied().unwrap_or_default();
    println!(
        "soak: {calls} calls, {billable} billable lines, 0 stuck, 0 lines lost or doubled; {not_back} calls did not come back; signaling resumed after a restart in median {} ms, max {} ms ({} resumed rounds)",
        median.as_millis(),
        max.as_millis(),
        recoveries.len()
    );
    assert_eq!(not_back, 0, "calls that did not come back after a restart");
    tokio::task::block_in_place(|| server.kill());
}

/// Many patients leave the waiting room just before a graceful shutdown
/// (`SIGTERM`): the server commits every write still queued before it
/// exits, so after a restart not one consultation is left `waiting`.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_commits_every_queued_write() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    const PATIENTS: usize = 40;
    let mut server = Server::new(&[]);
    let (printed, _) = tokio::task::block_in_place(|| server.start(true));
    let base = server.base();
    let password = demo_password(&printed);
    let (client, _) = login(&base, "terapeut@demo.konsult", &password).await;
    let mut sockets = Vec::new();
    let mut ids = Vec::new();
    for n in 0..PATIENTS {
        let (id, token) = eligible_consultation(&client, n, true).await;
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", server.port))
                .await
                .unwrap();
        ws.send(Message::text(format!(
            r#"{{"type":"hello","version":1,"auth":{{"link_token":"{token}"}}}}"#
        )))
        .await
        .unwrap();
        // welcome, waiting
        for _ in 0..2 {
            ws.next().await.unwrap().unwrap();
        }
        sockets.push(ws);
        ids.push(id);
    }
    // Every patient is waiting (committed: the day view says so).
    for id in &ids {
        let c = client.get_ok(&format!("/api/consultations/{id}")).await;
        assert_eq!(c["state"], "waiting", "{c}");
    }
    // All leave at once and the server is told to stop at the same time.
    // A patient that got `bye` had its leave handled: its write was queued
    // before the shutdown and must be committed by it.
    for ws in &mut sockets {
        ws.send(Message::text(r#"{"type":"leave"}"#)).await.unwrap();
    }
    server.signal_term();
    let mut handled = Vec::new();
    for (ws, id) in sockets.iter_mut().zip(&ids) {
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(20), ws.next()).await
        {
            if let Message::Text(text) = message {
                if text.contains(r#""type":"bye""#) {
                    handled.push(id.clone());
                }
            }
        }
    }
    tokio::task::block_in_place(|| server.wait());
    tokio::task::block_in_place(|| server.start(false));
    let client = Client::new(&base);
    client.login("terapeut@demo.konsult", &password).await;
    let mut open = 0;
    for id in &ids {
        let c = client.get_ok(&format!("/api/consultations/{id}")).await;
        if handled.contains(id) {
            assert_eq!(
                c["state"], "open",
                "a handled leave was lost in the shutdown: {c}"
            );
        }
        open += usize::from(c["state"] == "open");
    }
    println!(
        "shutdown: {} of {PATIENTS} leaves handled before the SIGTERM took effect; {open} consultations open again, none of the handled ones lost",
        handled.len()
    );
    tokio::task::block_in_place(|| server.kill());
}

/// The harness's own guard: when another process takes the port chosen for
/// a server before the server binds it, the server is started on another
/// port instead of leaving the test to time out.
#[test]
fn a_server_whose_port_was_taken_is_started_on_another() {
    let mut server = Server::new(&[]);
    let taken = server.port;
    let _holder = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    server.start(false);
    assert_ne!(server.port, taken);
    assert!(server.log_tail(100_000).contains("in use"));
}
