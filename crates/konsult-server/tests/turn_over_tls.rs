//! TURN over TLS on the HTTPS port (issue 13): a TLS connection naming the
//! relay's host (`turn.tls_host`, SNI), or offering only the ALPN protocol
//! `stun.turn`, reaches the embedded relay and gets an allocation with a
//! participant's credentials from `welcome`; every other connection on the
//! same port is HTTPS as before, and one that sends no handshake is still
//! closed after the header timeout. `konsult relay-check` allocates over
//! UDP, TCP and TLS and says what a patient gets.

use crate::common;

use std::time::{Duration, SystemTime};

use common::TestApp;
use konsult_protocol::CandidatePolicy;
use konsult_server::relay::check::{tls_connect, ExpectCertificate, StreamClient};
use konsult_server::relay::{Participant, Transport};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RELAY_HOST: &str = "turn.localhost";
const HEADER_TIMEOUT_SECONDS: u32 = 2;

/// A server on 127.0.0.1 serving TLS with a certificate for the dashboard
/// (127.0.0.1, localhost) and the relay's host, TURN over TLS on, and a
/// short header timeout. Returns the certificate too.
async fn tls_app() -> (TestApp, CertificateDer<'static>) {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec![
        "127.0.0.1".into(),
        "localhost".into(),
        RELAY_HOST.into(),
    ])
    .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
    let mut settings = TestApp::settings(dir.path());
    settings.tls.cert = Some(cert);
    settings.tls.key = Some(key);
    settings.turn.tls_host = Some(RELAY_HOST.into());
    settings.http.header_timeout_seconds = HEADER_TIMEOUT_SECONDS;
    let app = TestApp::spawn_with(settings, dir, common::t0()).await;
    (app, generated.cert.der().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_over_tls_shares_the_https_port_with_the_dashboard() {
    let (app, cert) = tls_app().await;
    let turn = app.state.signaling.turn();
    let relay = turn.relay_addr().await.unwrap();
    let consultation = uuid::Uuid::new_v4();
    let servers = turn.ice_servers(
        consultation,
        Participant::Therapist,
        CandidatePolicy::RelayOnly,
        SystemTime::now(),
        Duration::from_secs(600),
    );
    // UDP, TCP, then TLS on the HTTPS port under the relay's name.
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(
        servers[0].urls,
        [
            format!("turn:127.0.0.1:{}?transport=udp", relay.port()),
            format!("turn:127.0.0.1:{}?transport=tcp", relay.port()),
            format!("turns:{RELAY_HOST}:{}?transport=tcp", app.addr.port()),
        ]
    );
    let username = servers[0].username.clone().unwrap();
    let password = servers[0].credential.clone().unwrap();

    // A TLS client naming the relay (as a browser given the turns: URL
    // does) allocates through the HTTPS port.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let tls = tls_connect(
        tcp,
        RELAY_HOST,
        ExpectCertificate::new(Some(cert.clone())),
        None,
    )
    .await
    .unwrap();
    let mut client = StreamClient::new(tls, &username, &password);
    let relayed = client.allocate().await.expect("an allocation over TLS");
    assert_eq!(relayed.ip(), relay.ip(), "relayed at the relay's address");
    assert_eq!(turn.allocations_for(consultation).await, Some(1));
    // The HTTPS listener's first-request deadline does not cut a TURN
    // connection: it sends no HTTP request, and lives on.
    tokio::time::sleep(Duration::from_secs(u64::from(HEADER_TIMEOUT_SECONDS) + 1)).await;
    let granted = client
        .refresh(Duration::from_secs(600))
        .await
        .expect("the connection outlives the header timeout");
    assert!(granted > Duration::ZERO);
    client.refresh(Duration::ZERO).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while turn.allocations_for(consultation).await != Some(0) {
        assert!(tokio::time::Instant::now() < deadline, "not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A client that names no relay but offers only `stun.turn` (RFC 7443)
    // gets the relay too, and the protocol agreed.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let tls = tls_connect(
        tcp,
        "localhost",
        ExpectCertificate::new(Some(cert.clone())),
        Some(b"stun.turn"),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"stun.turn"[..]));
    let mut client = StreamClient::new(tls, &username, &password);
    assert_eq!(client.allocate().await.unwrap().ip(), relay.ip());
    client.refresh(Duration::ZERO).await.unwrap();

    // Everything else on the port is HTTPS: a browser...
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(&cert).unwrap())
        .use_rustls_tls()
        .build()
        .unwrap();
    let res = https
        .get(format!("https://localhost:{}/healthz", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = https
        .get(format!("https://127.0.0.1:{}/healthz", app.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // ... and a bare TLS client naming the dashboard.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let mut tls = tls_connect(tcp, "localhost", ExpectCertificate::new(Some(cert)), None)
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A connection that never sends its ClientHello is closed after the
    // header timeout, as before.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed, not left open: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    app.stop().await;
}

/// `konsult relay-check` on a server with TURN over TLS: an allocation
/// over each of UDP, TCP and TLS, the certificate checked against
/// `tls.cert` for the relay's name, one line each saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_check_allocates_over_udp_tcp_and_tls() {
    let (app, _) = tls_app().await;
    let relay = app.state.signaling.turn().relay_addr().await.unwrap();
    let mut settings = (*app.state.settings).clone();
    settings.turn.listen = relay;
    settings.listen = app.addr;
    let checks = konsult_server::relay::check_relays(&settings)
        .await
        .unwrap();
    let found: Vec<(&str, Option<Transport>)> = checks
        .iter()
        .map(|c| (c.url.as_str(), c.transport))
        .collect();
    assert_eq!(
        found,
        [
            (
                format!("turn:127.0.0.1:{}?transport=udp", relay.port()).as_str(),
                Some(Transport::Udp)
            ),
            (
                format!("turn:127.0.0.1:{}?transport=tcp", relay.port()).as_str(),
                Some(Transport::Tcp)
            ),
            (
                format!("turns:{RELAY_HOST}:{}?transport=tcp", app.addr.port()).as_str(),
                Some(Transport::Tls)
            ),
        ]
    );
    for check in &checks {
        let relayed = check
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("{check}: {e}"));
        assert_eq!(relayed.ip(), relay.ip(), "{check}");
    }
    assert_eq!(
        checks[2].note.as_deref(),
        Some("certificate checked: the configured tls.cert, valid for turn.localhost")
    );

    // The command prints one line per URL and exits 0 when all work.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_konsult"))
        .arg("relay-check")
        .env("KONSULT_DATA_DIR", app.dir.path())
        .env("KONSULT_LISTEN", app.addr.to_string())
        .env("KONSULT_TLS__CERT", settings.tls.cert.as_ref().unwrap())
        .env("KONSULT_TLS__KEY", settings.tls.key.as_ref().unwrap())
        .env("KONSULT_TURN__LISTEN", relay.to_string())
        .env("KONSULT_TURN__TLS_HOST", RELAY_HOST)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for transport in ["UDP", "TCP", "TLS"] {
        assert!(
            stdout.contains(&format!(
                ": allocated over {transport}, relayed address 127.0.0.1:"
            )),
            "{transport}: {stdout}"
        );
    }
    assert!(
        stdout.contains("(certificate checked: the configured tls.cert, valid for turn.localhost)"),
        "{stdout}"
    );
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}
