//! A client that stops reading is dropped for real: once the kernel's
//! buffers are full and the server's writer has waited its bounded time,
//! the server closes the socket (it leaves ESTABLISHED and its send queue
//! stops growing), while the other participant stays connected.

use crate::common;

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_server::signaling::connection::WRITE_TIMEOUT;

/// The server-side TCP sockets of `port` in this process's network
/// namespace: (state, send-queue bytes) per socket, from /proc/net/tcp{,6}.
fn server_sockets(port: u16) -> Vec<(u8, u64)> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(queues)) =
                (fields.get(1), fields.get(3), fields.get(4))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port != Some(port) {
                continue;
            }
            let state = u8::from_str_radix(state, 16).unwrap_or(0);
            let tx_queue = queues
                .split(':')
                .next()
                .and_then(|q| u64::from_str_radix(q, 16).ok())
                .unwrap_or(0);
            found.push((state, tx_queue));
        }
    }
    found
}

const ESTABLISHED: u8 = 1;

fn established(port: u16) -> usize {
    server_sockets(port)
        .iter()
        .filter(|(state, _)| *state == ESTABLISHED)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_within_a_bounded_time() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let port = app.addr.port();
    let fx = clinic(&app, "Nord").await;
    let b = book(&app, &fx, Duration::minutes(5), true).await;
    let (mut patient, _, mut therapist, _) = into_call(&app, &fx, &b).await;
    assert_eq!(established(port), 2, "{:?}", server_sockets(port));

    // The patient stops reading but keeps sending pings (so no heartbeat
    // timeout ends it); the therapist keeps sending 60 KB offers at the rate
    // the server allows (20 a second).
    let offer = serde_json::json!({
        "type": "offer",
        "sdp": format!("v=0\r\na=x-padding:{}\r\n", "x".repeat(60_000)),
    })
    .to_string();
    let started = Instant::now();
    let bound = StdDuration::from_secs(30) + WRITE_TIMEOUT;
    let mut last_ping = Instant::now();
    let mut peak_queue = 0;
    let mut closed_after = None;
    while started.elapsed() < bound {
        send(&mut therapist, offer.clone()).await;
        if last_ping.elapsed() > StdDuration::from_secs(2) {
            // Best effort: once the server has closed it, this fails.
            let _ = tokio::time::timeout(
                StdDuration::from_millis(200),
                futures_util::SinkExt::send(
                    &mut patient,
                    tokio_tungstenite::tungstenite::Message::text(r#"{"type":"ping"}"#),
                ),
            )
            .await;
            last_ping = Instant::now();
        }
        tokio::time::sleep(StdDuration::from_millis(60)).await;
        let sockets = server_sockets(port);
        peak_queue = peak_queue.max(sockets.iter().map(|(_, q)| *q).max().unwrap_or(0));
        if established(port) == 1 {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!(
            "the non-reading patient's socket is still ESTABLISHED after {bound:?}: {:?}",
            server_sockets(port)
        )
    });
    println!(
        "non-reading client closed {:.1} s after the flood began (peak send queue {} KiB, write timeout {:?})",
        closed_after.as_secs_f64(),
        peak_queue / 1024,
        WRITE_TIMEOUT
    );
    // The therapist is still connected and told the patient dropped out
    // (or is within the grace period to come back).
    send(&mut therapist, r#"{"type":"ping"}"#).await;
    let mut saw_pong = false;
    for _ in 0..50 {
        let message = recv_json(&mut therapist).await;
        if message["type"] == "pong" {
            saw_pong = true;
            break;
        }
    }
    assert!(saw_pong, "the therapist's connection still works");
    drop(patient);
    app.stop().await;
}
