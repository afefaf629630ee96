//! The tracing output of a full call, at the most verbose level and with the
//! WebRTC stack's own `log` records forwarded (minus the crates that
//! [`konsult_peer::SILENCE_WEBRTC_LOGS`] silences), carries no address, SDP
//! or candidate line.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use konsult_peer::{direct_link, Call, Negotiation, NetworkScope, PeerConfig};
use konsult_protocol::Role;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

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

// A current-thread runtime, so every task of both peers runs on the thread
// whose default subscriber captures the output.
#[tokio::test(flavor = "current_thread")]
async fn a_full_call_logs_no_address_sdp_or_candidate() {
    // Forward `log` records to tracing, as a server using `init()` would.
    tracing_log::LogTracer::init().unwrap();
    let captured = Captured::default();
    let filter = format!("trace,{}", konsult_peer::SILENCE_WEBRTC_LOGS);
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).unwrap())
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = PeerConfig {
        network: NetworkScope::Loopback,
        ..PeerConfig::default()
    };
    let (mut a_link, mut b_link) = direct_link(Role::Therapist, Role::Patient);
    let now = Instant::now();
    let mut a = Call::new(config.clone(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut b = Call::new(config, Negotiation::Answerer, now).await.unwrap();
    let timeout = Duration::from_secs(60);
    let (ra, rb) = tokio::join!(
        a.run_until_media(&mut a_link, timeout),
        b.run_until_media(&mut b_link, timeout),
    );
    ra.unwrap();
    rb.unwrap();
    // An ICE restart logs too.
    let _ = a.restart_ice().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("ICE restart"),
        "the capture works and saw the call: {log}"
    );
    for needle in [
        "127.0.0.1",
        "candidate:",
        "v=0",
        "a=ice-ufrag",
        "a=fingerprint",
    ] {
        assert!(!log.contains(needle), "log contains {needle:?}:\n{log}");
    }
}
