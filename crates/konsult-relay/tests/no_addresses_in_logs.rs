//! A relay's logs carry no client or peer address, at any level: its own
//! events never name one, and the codecs it uses (`stun`, `turn`) log
//! nothing on its paths. The run exercises every path that could: an
//! allocation, a permission, a stray datagram from a peer without
//! permission, and a relayed round trip.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use secrecy::ExposeSecret;
use tokio::net::UdpSocket;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
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

/// Runs a relay through an allocation, a permission, a stray datagram from
/// a peer without permission and a relayed round trip, with logs captured
/// under `filter` (the test runtime is single-threaded, so the thread's
/// default subscriber sees every task). Returns the logs and the stray
/// peer's port.
async fn relay_logs(filter: &str) -> (String, u16) {
    let captured = Captured::default();
    let _guard = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish()
        .set_default();

    let relay = start_relay(true).await;
    let echo = EchoPeer::start().await;
    let creds = issue("consult-logs", 600);
    let raw = RawTurn::new(relay.local_addr()).await;
    let session = raw
        .allocate(
            &creds.username().to_string(),
            creds.password().expose_secret(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        raw.create_permission(&session, echo.addr).await.unwrap(),
        Ok(())
    );

    // Permissions are per IP (RFC 8656 §9), so the stray peer needs another
    // loopback IP than the permitted echo peer on 127.0.0.1.
    let stray = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let stray_port = stray.local_addr().unwrap().port();
    stray
        .send_to(b"no permission", session.relayed)
        .await
        .unwrap();
    // Handled after the stray datagram, which arrived first.
    raw.send_indication(echo.addr, b"ping").await.unwrap();
    assert_eq!(raw.recv_data(PATIENCE).await.as_deref(), Some(&b"ping"[..]));

    relay.shutdown().await.unwrap();
    (captured.text(), stray_port)
}

#[tokio::test]
async fn relay_logs_carry_no_addresses_even_at_trace() {
    let (logs, stray_port) = relay_logs("trace").await;
    assert!(
        logs.contains("TURN relay listening"),
        "the relay's own events are still logged:\n{logs}"
    );
    let stray = format!("127.0.0.2:{stray_port}");
    for address in ["127.0.0.1", "127.0.0.2", stray.as_str()] {
        assert!(
            !logs.contains(address),
            "{address} leaked into the logs:\n{logs}"
        );
    }
}
