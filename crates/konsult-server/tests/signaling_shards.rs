//! Rooms are served by several hub tasks, a shard each (issue 14): calls in
//! rooms of different shards go on side by side, and what concerns a
//! therapist's every connection (the login session ending) reaches each
//! shard.

use crate::common;

use std::time::Duration as StdDuration;

use axum::http::Method;
use chrono::Duration;
use common::signal::{self, *};
use common::*;
use konsult_server::signaling::shard_of;

const SHARDS: usize = 4;
const ROOMS: usize = 12;

/// SQLite only: what is under test is the pump, not the store.
#[tokio::test]
async fn rooms_on_every_shard_and_a_logout_reaches_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.signaling.hub_shards = SHARDS;
    let app = TestApp::spawn_with(settings, dir, t0()).await;
    let fx = signal::clinic(&app, "Nord").await;
    let mut bookings = Vec::new();
    while bookings.len() < ROOMS {
        bookings.push(book(&app, &fx, Duration::minutes(5), false).await);
    }
    let shards: std::collections::BTreeSet<usize> =
        bookings.iter().map(|b| shard_of(b.id(), SHARDS)).collect();
    assert!(
        shards.len() >= 2,
        "{ROOMS} rooms fell on one shard: {shards:?}"
    );

    let mut therapists = Vec::new();
    let mut patients = Vec::new();
    for b in &bookings {
        let mut t = connect(&app, Some(&fx.cookie)).await;
        join(&mut t, therapist_hello(b.id())).await;
        let mut p = connect(&app, None).await;
        join(&mut p, patient_hello(&b.token)).await;
        expect(&mut p, "waiting").await;
        expect(&mut t, "patient_waiting").await;
        therapists.push(t);
        patients.push(p);
    }
    // Every room admits its patient and relays a chat, whichever shard
    // holds it.
    for (t, p) in therapists.iter_mut().zip(patients.iter_mut()) {
        send(t, r#"{"type":"admit"}"#).await;
        expect(p, "admitted").await;
        expect(p, "peer_joined").await;
        expect(t, "peer_joined").await;
        send(p, r#"{"type":"chat","text":"hej"}"#).await;
        let chat = expect(t, "chat").await;
        assert_eq!(chat["text"], "hej");
    }

    let (status, _) = signal::api(&app, &fx, Method::POST, "/api/logout", None).await;
    assert_eq!(status, axum::http::StatusCode::NO_CONTENT);
    for t in &mut therapists {
        let ended = tokio::time::timeout(StdDuration::from_secs(5), async {
            loop {
                if let Next::Closed(code) = next(t).await {
                    return code;
                }
            }
        })
        .await
        .expect("the therapist's socket ends with the session");
        assert_eq!(ended, Some(1008));
    }
    for p in &mut patients {
        send(p, r#"{"type":"ping"}"#).await;
        expect(p, "pong").await;
    }
    app.stop().await;
}
