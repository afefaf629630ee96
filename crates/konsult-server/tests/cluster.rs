//! Several nodes of one installation (issue 16): they share a PostgreSQL
//! database and tell each other over NATS what ended. What ends on one node
//! (a logout, a cancelled consultation) ends the WebSockets and the relay
//! allocations that rest on it on every node; a node that missed the NATS
//! message finds it in the database by its sweep.
//!
//! Needs `KONSULT_TEST_POSTGRES_URL` and `KONSULT_TEST_NATS_URL` (the test
//! command sets both); each test uses a database and a subject prefix of
//! its own.

use std::path::Path;
use std::time::Duration as StdDuration;

use chrono::Duration;
use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use crate::common::signal::*;
use crate::common::{fresh_postgres, t0, Client, PgDatabase, TestApp, ADMIN_PASSWORD};

/// A shared database and NATS for the nodes of one test; dropped, it
/// removes the lease buckets its nodes made in NATS (the database goes
/// with its guard).
struct Cluster {
    database_url: String,
    nats_url: String,
    prefixes: std::sync::Mutex<Vec<String>>,
    _database: PgDatabase,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let prefixes = std::mem::take(&mut *self.prefixes.lock().unwrap());
        let url = self.nats_url.clone();
        // Drop may run inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                for prefix in prefixes {
                    drop_bucket_at(&url, &prefix).await;
                }
            });
        })
        .join();
    }
}

impl Cluster {
    /// `None` (the test is skipped) without PostgreSQL or NATS.
    async fn new() -> Option<Self> {
        let Ok(nats_url) = std::env::var("KONSULT_TEST_NATS_URL") else {
            eprintln!("KONSULT_TEST_NATS_URL is not set: skipping");
            return None;
        };
        if std::env::var("KONSULT_TEST_POSTGRES_URL").is_err() {
            eprintln!("KONSULT_TEST_POSTGRES_URL is not set: skipping");
            return None;
        }
        let (database, database_url) = fresh_postgres().await;
        Some(Self {
            database_url,
            nats_url,
            prefixes: std::sync::Mutex::default(),
            _database: database,
        })
    }

    /// A node on the shared database, on NATS under `prefix`, sweeping
    /// every `sweep_seconds`. A node after the first takes the first's data
    /// key and relay secret (`keys_from`), as a deployment's nodes share
    /// them.
    async fn node(&self, prefix: &str, sweep_seconds: u32, keys_from: Option<&Path>) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        if let Some(first) = keys_from {
            for entry in std::fs::read_dir(first).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("data.key") || name == "turn.secret" {
                    std::fs::copy(&path, dir.path().join(&name)).unwrap();
                }
            }
        }
        {
            let mut prefixes = self.prefixes.lock().unwrap();
            if !prefixes.iter().any(|p| p == prefix) {
                prefixes.push(prefix.to_owned());
            }
        }
        let mut settings = TestApp::settings(dir.path());
        settings.database_url = Some(self.database_url.clone());
        settings.cluster.nats_url = Some(self.nats_url.clone());
        settings.cluster.subject_prefix = prefix.to_owned();
        settings.cluster.sweep_seconds = sweep_seconds;
        TestApp::spawn_with(settings, dir, t0()).await
    }
}

fn prefix() -> String {
    format!("konsult_test_{}", uuid::Uuid::new_v4().simple())
}

/// Reads the socket until the server closes it; returns the close code
/// and the message types it sent before.
async fn until_closed(ws: &mut Ws) -> (Option<u16>, Vec<String>) {
    let mut seen = Vec::new();
    loop {
        match next(ws).await {
            Next::Closed(code) => return (code, seen),
            Next::Message(m) => {
                let json = serde_json::to_value(&m).unwrap();
                seen.push(json["type"].as_str().unwrap_or("?").to_owned());
            }
        }
    }
}

/// A patient waiting on `node`: the socket, the node's relay and the
/// patient's credential for it, which the relay grants.
async fn waiting_on(
    node: &TestApp,
    booking: &Booking,
) -> (Ws, std::net::SocketAddr, konsult_protocol::IceServer) {
    let mut patient = connect(node, None).await;
    let welcome = join(&mut patient, patient_hello(&booking.token)).await;
    expect(&mut patient, "waiting").await;
    let relay = node.state.signaling.turn().relay_addr().await.unwrap();
    let credential = welcome.ice_servers[0].clone();
    assert!(allocates(relay, &credential).await, "before the cancel");
    (patient, relay, credential)
}

/// The clinic cancels the consultation through `node`'s API.
async fn cancel_on(node: &TestApp, fx: &ClinicFixture, booking: &Booking) {
    let (status, body) = api(
        node,
        fx,
        Method::POST,
        &format!("/api/consultations/{}/cancel", booking.id()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The relay at `relay` refuses `credential` within 10 s.
async fn relay_refuses(relay: std::net::SocketAddr, credential: &konsult_protocol::IceServer) {
    assert!(
        within(StdDuration::from_secs(10), || async {
            !allocates(relay, credential).await
        })
        .await,
        "the relay still grants the cancelled consultation's credential"
    );
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
async fn within<F, Fut>(limit: StdDuration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_ends_the_dashboard_socket_on_another() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let prefix = prefix();
    let a = cluster.node(&prefix, 60, None).await;
    let b = cluster.node(&prefix, 60, Some(a.dir.path())).await;
    let fx = clinic(&a, "Nord").await;
    let booking = book(&a, &fx, Duration::minutes(5), false).await;
    // The dashboard's socket is on B; the logout goes to A.
    let mut therapist = connect(&b, Some(&fx.cookie)).await;
    join(&mut therapist, therapist_hello(booking.id())).await;
    let started = Instant::now();
    let (status, body) = api(&a, &fx, Method::POST, "/api/logout", None).await;
    assert!(status.is_success(), "{status} {body}");
    let (code, seen) = until_closed(&mut therapist).await;
    assert_eq!(code, Some(1008), "close code; saw {seen:?}");
    assert!(seen.iter().any(|t| t == "error"), "told why: {seen:?}");
    // NATS, not the sweep (a minute away), ended it.
    assert!(started.elapsed() < StdDuration::from_secs(10));
    // The session is gone on B too: a new hello is refused.
    let mut again = connect(&b, Some(&fx.cookie)).await;
    join_refused(&mut again, therapist_hello(booking.id()), "unauthorized").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultation_cancelled_on_one_node_ends_its_sockets_and_relay_on_another() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let prefix = prefix();
    let a = cluster.node(&prefix, 60, None).await;
    let b = cluster.node(&prefix, 60, Some(a.dir.path())).await;
    let fx = clinic(&a, "Syd").await;
    let booking = book(&a, &fx, Duration::minutes(5), true).await;
    // The patient waits on B, with B's relay credentials.
    let (mut patient, relay, credential) = waiting_on(&b, &booking).await;

    cancel_on(&a, &fx, &booking).await;
    let (code, seen) = until_closed(&mut patient).await;
    assert!(code.is_some(), "closed by the server; saw {seen:?}");
    relay_refuses(relay, &credential).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_the_notices_finds_the_endings_in_the_database() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    // B listens under another prefix: it hears nothing A tells, as if every
    // NATS message were lost. Its sweep runs every second.
    let a = cluster.node(&prefix(), 60, None).await;
    let b = cluster.node(&prefix(), 1, Some(a.dir.path())).await;
    let fx = clinic(&a, "Vest").await;
    let booking = book(&a, &fx, Duration::minutes(5), true).await;
    let mut therapist = connect(&b, Some(&fx.cookie)).await;
    join(&mut therapist, therapist_hello(booking.id())).await;
    let (mut patient, relay, credential) = waiting_on(&b, &booking).await;

    cancel_on(&a, &fx, &booking).await;
    let (code, _) = until_closed(&mut patient).await;
    assert!(
        code.is_some(),
        "the patient's socket was closed by the server"
    );
    relay_refuses(relay, &credential).await;

    // Another consultation keeps the dashboard busy; the logout on A
    // reaches B's socket through the database.
    let other = book(&a, &fx, Duration::minutes(10), false).await;
    let mut dashboard = connect(&b, Some(&fx.cookie)).await;
    join(&mut dashboard, therapist_hello(other.id())).await;
    let (status, body) = api(&a, &fx, Method::POST, "/api/logout", None).await;
    assert!(status.is_success(), "{status} {body}");
    let (code, seen) = until_closed(&mut dashboard).await;
    assert_eq!(code, Some(1008), "close code; saw {seen:?}");
    let scrape = b.state.signaling.metrics().render(None, &[], None);
    assert!(
        scrape.contains("konsult_cluster_sweeps_total{outcome=\"done\"}"),
        "{scrape}"
    );
    assert!(
        !scrape.contains("direction=\"received\""),
        "B heard nothing over NATS: {scrape}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_measures_its_round_trip_through_nats() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let a = cluster.node(&prefix(), 60, None).await;
    assert!(a.state.signaling.cluster_node().is_some());
    let metrics = a.state.signaling.metrics();
    assert!(
        within(StdDuration::from_secs(8), || async {
            metrics
                .render(None, &[], None)
                .contains("konsult_nats_up 1")
        })
        .await,
        "no ping came back: {}",
        metrics.render(None, &[], None)
    );
    // At least one round trip observed, and under the histogram's top
    // bucket on loopback.
    let scrape = metrics.render(None, &[], None);
    let count: u64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("konsult_nats_rtt_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(count >= 1, "{scrape}");
    assert!(
        !scrape.contains("konsult_nats_rtt_seconds_bucket{le=\"0.5\"} 0"),
        "{scrape}"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_hold_for_the_cluster_not_per_node() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let prefix = prefix();
    let a = cluster.node(&prefix, 60, None).await;
    let b = cluster.node(&prefix, 60, Some(a.dir.path())).await;
    let email = "admin@oest.dk";
    a.setup_clinic("Øst", "654321", email).await;
    // A client spends its whole budget of failures on A (one unknown
    // account each, so no account delay slows the test down)…
    let guesser = Client::new(&a.base);
    let budget = konsult_server::login_limits::LoginLimits::CLIENT_BUDGET as usize;
    for i in 0..budget {
        let (status, body) = guesser
            .post(
                "/api/login",
                serde_json::json!({"email": format!("nobody{i}@oest.dk"), "password": "guess"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // …B hears of every failure (and of the admin's login in
    // `setup_clinic`, one account more)…
    assert!(
        within(StdDuration::from_secs(10), || async {
            b.state.login_limiter.len() == (budget + 1, 1)
        })
        .await,
        "B's limiter holds {:?}",
        b.state.login_limiter.len()
    );
    // …and refuses the same client, even with the right password.
    let (status, body) = Client::new(&b.base)
        .post(
            "/api/login",
            serde_json::json!({"email": email, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    a.stop().await;
    b.stop().await;
}

/// Two nodes' leases on one bucket, with a time to live of `ttl`, and the
/// bucket's prefix (for [`drop_bucket`]).
async fn leases(
    ttl: StdDuration,
) -> Option<(
    konsult_server::lease::Leases,
    konsult_server::lease::Leases,
    String,
)> {
    let Ok(url) = std::env::var("KONSULT_TEST_NATS_URL") else {
        eprintln!("KONSULT_TEST_NATS_URL is not set: skipping");
        return None;
    };
    let prefix = prefix();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let client = async_nats::connect(url.as_str()).await.unwrap();
        nodes.push(
            konsult_server::lease::Leases::open(client, &prefix, uuid::Uuid::new_v4(), ttl)
                .await
                .unwrap(),
        );
    }
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    Some((a, b, prefix))
}

/// Removes the test's lease bucket from NATS.
async fn drop_bucket(prefix: &str) {
    let url = std::env::var("KONSULT_TEST_NATS_URL").unwrap();
    assert!(drop_bucket_at(&url, prefix).await, "the bucket was there");
}

/// Removes the lease bucket of `prefix` from the NATS at `url`; whether
/// there was one.
async fn drop_bucket_at(url: &str, prefix: &str) -> bool {
    let Ok(client) = async_nats::connect(url).await else {
        return false;
    };
    let Ok(answer) = client
        .request(
            format!("$JS.API.STREAM.DELETE.KV_{prefix}_rooms"),
            Vec::new().into(),
        )
        .await
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&answer.payload)
        .is_ok_and(|answer| answer["success"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_has_one_owner_while_it_renews_its_lease() {
    use konsult_server::lease::Claim;
    let ttl = StdDuration::from_secs(2);
    let Some((a, b, bucket)) = leases(ttl).await else {
        return;
    };
    let room = uuid::Uuid::new_v4();
    let Claim::Owned(mut lease) = a.claim(room).await.unwrap() else {
        panic!("the first claim owns the room");
    };
    let first = lease.revision;
    // A renews every half time to live, for three times to live: B never
    // gets the room.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        assert_eq!(b.claim(room).await.unwrap(), Claim::OwnedBy(a.node()));
        tokio::time::sleep(ttl / 2).await;
        a.renew(&mut lease).await.unwrap();
        assert!(a.valid(&lease, std::time::Instant::now()));
    }
    assert!(lease.revision > first, "renewals move the revision on");
    // Given up, the room is B's at once.
    a.release(lease).await;
    assert!(matches!(b.claim(room).await.unwrap(), Claim::Owned(_)));
    drop_bucket(&bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_owner_loses_its_room_and_cannot_take_it_back() {
    use konsult_server::lease::Claim;
    let ttl = StdDuration::from_secs(2);
    let Some((a, b, bucket)) = leases(ttl).await else {
        return;
    };
    let room = uuid::Uuid::new_v4();
    let Claim::Owned(mut stale) = a.claim(room).await.unwrap() else {
        panic!("the first claim owns the room");
    };
    // A stalls (renews nothing). B keeps trying and takes the room once
    // the lease runs out: within the time to live and the server's expiry
    // sweep.
    let stalled = Instant::now();
    let taken = loop {
        match b.claim(room).await.unwrap() {
            Claim::Owned(lease) => break lease,
            Claim::OwnedBy(owner) => assert_eq!(owner, a.node()),
        }
        assert!(
            stalled.elapsed() < StdDuration::from_secs(5),
            "the room was not free 5 s after its owner stalled"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    };
    let took = stalled.elapsed();
    assert!(
        took >= ttl.mul_f64(0.9),
        "taken after {took:?}, before the lease ran out"
    );
    eprintln!("a stalled owner's room was taken over after {took:?} (ttl {ttl:?})");
    assert!(
        taken.revision > stale.revision,
        "a new owner's fencing token is higher"
    );
    // A wakes up: by its own clock its lease is out of date, so it does not
    // act, and renewing is refused; B keeps the room.
    assert!(!a.valid(&stale, std::time::Instant::now()));
    assert!(a.renew(&mut stale).await.is_err());
    assert_eq!(a.claim(room).await.unwrap(), Claim::OwnedBy(b.node()));
    // Even a renewal A sent while its lease was still trusted cannot
    // overwrite B's: it names a revision that is gone.
    let mut forged = stale.clone();
    forged.revision = taken.revision - 1;
    assert!(a.renew(&mut forged).await.is_err());
    assert_eq!(b.owner(room).await.unwrap(), Some(b.node()));
    drop_bucket(&bucket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_therapist_and_a_patient_on_different_nodes_call_each_other() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let prefix = prefix();
    let a = cluster.node(&prefix, 60, None).await;
    let b = cluster.node(&prefix, 60, Some(a.dir.path())).await;
    let fx = clinic(&a, "Midt").await;
    let booking = book(&a, &fx, Duration::minutes(5), false).await;
    // The patient reaches B first (B owns the room); the therapist reaches
    // A, whose connection joins the room on B over NATS.
    let mut call = start_call_on(&a, &b, &fx, &booking).await;
    let (t, p) = call.until_media().await;
    assert_two_way("therapist on A", &t);
    assert_two_way("patient on B", &p);
    // One room, on B: A holds none.
    let census_b = b
        .state
        .signaling
        .census(StdDuration::from_secs(2))
        .await
        .unwrap();
    let census_a = a
        .state
        .signaling
        .census(StdDuration::from_secs(2))
        .await
        .unwrap();
    assert_eq!((census_b.rooms, census_a.rooms), (1, 0));
    assert_eq!((census_b.therapists, census_b.patients_admitted), (1, 1));
    call.end().await;
    wait_for_events(&a, &fx, &booking, &WHOLE_CALL).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_media_goes_on_while_the_room_moves_to_another_node() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let prefix = prefix();
    let a = cluster.node(&prefix, 60, None).await;
    let b = cluster.node(&prefix, 60, Some(a.dir.path())).await;
    let fx = clinic(&a, "Syd").await;
    let booking = book(&a, &fx, Duration::minutes(5), false).await;
    // The patient on B, which runs the room; the therapist on A.
    let mut call = start_call_on(&a, &b, &fx, &booking).await;
    let (_, before) = call.until_media().await;
    let offers = (call.p.received_sdp.len(), call.t.received_sdp.len());

    // B goes away and both sockets with it.
    call.p.cut();
    call.t.cut();
    b.stop().await;
    // With no signaling at all, the browsers' media goes on.
    let (_, meanwhile) = call.run_for(StdDuration::from_secs(2)).await;
    assert!(
        meanwhile.received.video.frames > before.received.video.frames + 10,
        "video kept coming while no node ran the room: {before:#?} then {meanwhile:#?}"
    );

    // Both come back to A, which adopts the room: resumed, not admitted
    // again, and nothing renegotiated.
    let welcome = call
        .p
        .resume(&a, &patient_hello(&booking.token), &call.pw.resume_token)
        .await;
    assert!(welcome.resumed, "the patient resumed on A");
    let welcome = call
        .t
        .resume_with(
            &a,
            Some(&fx.cookie),
            &therapist_hello(booking.id()),
            &call.tw.resume_token,
        )
        .await;
    assert!(welcome.resumed, "the therapist resumed on A");
    let (_, after) = call.run_for(StdDuration::from_secs(2)).await;
    assert!(after.received.video.frames > meanwhile.received.video.frames + 10);
    assert_eq!(
        (call.p.received_sdp.len(), call.t.received_sdp.len()),
        offers,
        "no offer or answer after the move"
    );
    for peer in [call.patient.peer(), call.therapist.peer()] {
        assert_eq!(
            peer.connection_state(),
            konsult_peer::ConnectionState::Connected
        );
    }
    assert!(!call
        .t
        .received
        .iter()
        .any(|m| matches!(m.body, konsult_protocol::ServerBody::PeerLeft { .. })));
    call.end().await;
    wait_for_events(&a, &fx, &booking, &WHOLE_CALL).await;
    a.stop().await;
}

/// Opens `/ws` on the node at `port`, with a session cookie if given.
async fn connect_port(port: u16, cookie: Option<&str>) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// Waits for a message of `kind`; returns it and the highest `seq` seen.
async fn until_kind(ws: &mut Ws, kind: &str, last_seq: &mut u64) -> serde_json::Value {
    loop {
        let m = recv_json(ws).await;
        if let Some(seq) = m["seq"].as_u64() {
            *last_seq = (*last_seq).max(seq);
        }
        if m["type"] == kind {
            return m;
        }
    }
}

fn resume_hello(auth: serde_json::Value, token: &str, last_seq: u64) -> String {
    serde_json::json!({"type": "hello", "version": 1, "auth": auth,
        "resume": {"token": token, "last_seq": last_seq}})
    .to_string()
}

/// Two `konsult` processes of one cluster (2 s leases), the demo clinic's
/// therapist logged in on the first, and a consultation of an eligible
/// patient in which the patient (on `b`) was admitted by the therapist (on
/// `a`): the room runs on `b`.
struct AdmittedAcross {
    a: crate::common::binary::Server,
    b: crate::common::binary::Server,
    client: crate::common::Client,
    cookie: String,
    id: String,
    consultation: uuid::Uuid,
    token: String,
    patient: (Ws, String, u64),
    therapist: (Ws, String, u64),
}

async fn admitted_across(cluster: &Cluster) -> AdmittedAcross {
    admitted_across_with(cluster, &[]).await
}

/// [`admitted_across`] with more settings for both nodes.
async fn admitted_across_with(cluster: &Cluster, more: &[(&str, &str)]) -> AdmittedAcross {
    use crate::common::binary;
    let prefix = prefix();
    cluster.prefixes.lock().unwrap().push(prefix.clone());
    let mut env = vec![
        ("KONSULT_DATABASE_URL", cluster.database_url.as_str()),
        ("KONSULT_CLUSTER__NATS_URL", cluster.nats_url.as_str()),
        ("KONSULT_CLUSTER__SUBJECT_PREFIX", prefix.as_str()),
        ("KONSULT_CLUSTER__LEASE_SECONDS", "2"),
    ];
    env.extend_from_slice(more);
    let mut a = binary::Server::new(&env);
    let (printed, _) = a.start(true);
    let password = binary::demo_password(&printed);
    let mut b = binary::Server::new(&env);
    for name in ["data.key", "data.key.audit-keyed", "turn.secret"] {
        let from = a.dir().join(name);
        if from.exists() {
            std::fs::copy(&from, b.dir().join(name)).unwrap();
        }
    }
    b.start(false);
    let (client, cookie) = binary::login(&a.base(), "terapeut@demo.konsult", &password).await;
    let (id, token) = binary::eligible_consultation(&client, 1, false).await;
    let consultation: uuid::Uuid = id.parse().unwrap();

    // The patient reaches B (B owns the room), the therapist A; admitted.
    let (mut p_seq, mut t_seq) = (0, 0);
    let mut patient = connect_port(b.port, None).await;
    send(&mut patient, patient_hello(&token)).await;
    let pw = until_kind(&mut patient, "welcome", &mut p_seq).await;
    until_kind(&mut patient, "waiting", &mut p_seq).await;
    let mut therapist = connect_port(a.port, Some(&cookie)).await;
    send(&mut therapist, therapist_hello(consultation)).await;
    let tw = until_kind(&mut therapist, "welcome", &mut t_seq).await;
    until_kind(&mut therapist, "patient_waiting", &mut t_seq).await;
    send(&mut therapist, r#"{"type":"admit"}"#).await;
    until_kind(&mut patient, "admitted", &mut p_seq).await;
    until_kind(&mut patient, "peer_joined", &mut p_seq).await;
    until_kind(&mut therapist, "peer_joined", &mut t_seq).await;
    let p_token = pw["resume_token"].as_str().unwrap().to_owned();
    let t_token = tw["resume_token"].as_str().unwrap().to_owned();
    AdmittedAcross {
        a,
        b,
        client,
        cookie,
        id,
        consultation,
        token,
        patient: (patient, p_token, p_seq),
        therapist: (therapist, t_token, t_seq),
    }
}

/// Both participants reconnect to `port` with `resume`; returns how long
/// after `since` the patient was welcomed back, after asserting both
/// resumed.
async fn both_resume_on(
    x: AdmittedAcross,
    port: u16,
    since: Instant,
) -> (StdDuration, AdmittedAcross) {
    let AdmittedAcross {
        patient: (old_p, p_token, mut p_seq),
        therapist: (old_t, t_token, mut t_seq),
        ..
    } = x;
    drop(old_p);
    drop(old_t);
    // Both hellos at once: the first to claim the room adopts it, and the
    // other's join must not reach the room before the adoption.
    let mut patient = connect_port(port, None).await;
    let mut therapist = connect_port(port, Some(&x.cookie)).await;
    send(
        &mut patient,
        resume_hello(serde_json::json!({"link_token": x.token}), &p_token, p_seq),
    )
    .await;
    send(
        &mut therapist,
        resume_hello(
            serde_json::json!({"session": {"consultation": x.consultation}}),
            &t_token,
            t_seq,
        ),
    )
    .await;
    let back = until_kind(&mut patient, "welcome", &mut p_seq).await;
    let patient_back = since.elapsed();
    assert_eq!(back["resumed"], true, "the patient resumed: {back}");
    let back = until_kind(&mut therapist, "welcome", &mut t_seq).await;
    assert_eq!(back["resumed"], true, "the therapist resumed: {back}");
    let x = AdmittedAcross {
        patient: (patient, p_token, p_seq),
        therapist: (therapist, t_token, t_seq),
        ..x
    };
    (patient_back, x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_rooms_node_is_killed_another_adopts_the_room_and_both_resume_without_admission() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let mut x = admitted_across(&cluster).await;
    // B dies. A, the therapist's node, finds B gone and closes the
    // therapist's socket with 1013 at once (not after the 30 s heartbeat
    // timeout), so that it resumes.
    x.b.kill();
    let killed = Instant::now();
    tokio::time::timeout(
        StdDuration::from_secs(5),
        expect_close(&mut x.therapist.0, 1013),
    )
    .await
    .expect("the edge closes a dead owner's connections within 5 s");
    eprintln!(
        "owner killed: the therapist's node closed its socket with 1013 after {} ms",
        killed.elapsed().as_millis()
    );
    // Both clients reconnect through the load balancer, here to A.
    let port = x.a.port;
    let (patient_back, mut x) = both_resume_on(x, port, killed).await;
    eprintln!(
        "owner killed: the patient was back in the adopted room {} ms later (lease 2 s)",
        patient_back.as_millis()
    );
    assert!(patient_back < StdDuration::from_secs(5), "{patient_back:?}");
    // Still in the call, not admitted again: the consultation never left it.
    let state = x
        .client
        .get_ok(&format!("/api/consultations/{}", x.id))
        .await;
    assert_eq!(state["state"], "in_call", "{state}");
    x.a.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_whose_node_died_and_whose_participants_never_came_back_is_settled_by_another_node()
{
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let mut x = admitted_across_with(
        &cluster,
        &[
            ("KONSULT_CLUSTER__SWEEP_SECONDS", "1"),
            ("KONSULT_SIGNALING__RESTORE_GRACE_SECONDS", "2"),
        ],
    )
    .await;
    // B, the room's node, dies, and both participants are gone for good
    // (the browsers were closed).
    x.b.kill();
    drop(x.patient);
    drop(x.therapist);
    let killed = Instant::now();
    // A's sweep finds the saved room nobody runs once B's lease ran out,
    // adopts it, waits the restore grace for the participants, and ends
    // the call as abandoned.
    let path = format!("/api/consultations/{}", x.id);
    loop {
        let state = x.client.get_ok(&path).await;
        if state["state"] == "ended" {
            break;
        }
        assert!(
            killed.elapsed() < StdDuration::from_secs(20),
            "still {state} 20 s after its node died; A's log: {}",
            x.a.log_tail(4000)
        );
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    eprintln!(
        "the orphaned room was settled {} ms after its node died",
        killed.elapsed().as_millis()
    );
    assert!(
        x.a.log_tail(40_000).contains("adopted a room no node ran"),
        "{}",
        x.a.log_tail(4000)
    );
    x.a.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_that_wakes_up_gives_its_room_up_and_changes_nothing() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let mut x = admitted_across(&cluster).await;
    // B stalls (SIGSTOP): A finds it unanswering and closes the
    // therapist's socket with 1013; B's lease runs out and A adopts the
    // room.
    x.b.signal("STOP");
    let paused = Instant::now();
    tokio::time::timeout(
        StdDuration::from_secs(5),
        expect_close(&mut x.therapist.0, 1013),
    )
    .await
    .expect("the edge closes a stalled owner's connections within 5 s");
    let port = x.a.port;
    let (back, mut x) = both_resume_on(x, port, paused).await;
    assert!(back < StdDuration::from_secs(5), "{back:?}");
    // B wakes up: it finds its lease lost and gives the room up without a
    // write (it must not end the call it no longer owns).
    x.b.signal("CONT");
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    assert!(
        x.b.log_tail(20_000).contains("giving it up"),
        "B did not give the room up: {}",
        x.b.log_tail(4000)
    );
    let state = x
        .client
        .get_ok(&format!("/api/consultations/{}", x.id))
        .await;
    assert_eq!(state["state"], "in_call", "{state}");
    // The call goes on at A: the therapist's message reaches the patient.
    send(&mut x.therapist.0, r#"{"type":"chat","text":"Hej igen"}"#).await;
    let mut seq = x.patient.2;
    let chat = until_kind(&mut x.patient.0, "chat", &mut seq).await;
    assert_eq!(chat["text"], "Hej igen");
    x.a.kill();
    x.b.kill();
}
