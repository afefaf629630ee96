//! The one place that builds the tracing subscriber.
//!
//! Log lines carry pseudonymous ids only: never names, CPR numbers, contact
//! data, journal text, SDP, ICE candidates or IP addresses. Konsult's own
//! code keeps to that; dependencies that do not are silenced by the
//! directives below, which are appended to any filter (also to `RUST_LOG`).

use tracing::Subscriber;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt::MakeWriter, EnvFilter};

/// How log lines are written: `KONSULT_LOG_FORMAT`, read at start-up like
/// `RUST_LOG` (before the settings, so that reading them is logged too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event (the default).
    #[default]
    Text,
    /// One JSON object per line, with the event's fields at the top level
    /// and the current span's (`request_id`, `method`, `route` of an HTTP
    /// request) under `span`: for a log collector.
    Json,
}

impl LogFormat {
    /// `json` (any case) is [`LogFormat::Json`]; anything else is text.
    pub fn from_env_value(value: &str) -> Self {
        if value.trim().eq_ignore_ascii_case("json") {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }
}

/// Directives for dependencies of the server whose log lines can carry
/// addresses or message bodies: `axum::serve` logs every accepted
/// connection's peer address (trace), `tungstenite` logs every WebSocket
/// frame and message with its content, i.e. SDP and candidates (trace), and
/// the address it connects to (debug).
pub const SILENCE_SERVER_DEPENDENCY_LOGS: &str =
    "axum::serve=off,tungstenite=off,tokio_tungstenite=off";

/// Directives for the webrtc-rs media stack, for processes that run
/// server-side peers (the connection check, tests, load tools): its ICE,
/// DTLS and SDP layers log candidates, addresses and descriptions. The
/// relay's own `turn`/`stun`/`webrtc_util` are in
/// [`konsult_relay::SILENCE_DEPENDENCY_LOGS`]. A target directive matches
/// every target it is a prefix of, so `webrtc` covers `webrtc_ice`,
/// `webrtc_srtp` and the rest; the DTLS layer of webrtc 0.17 is the crate
/// `dtls`, which needs its own.
pub const SILENCE_WEBRTC_LOGS: &str =
    "webrtc=off,dtls=off,interceptor=off,rtp=off,rtcp=off,sdp=off";

/// The filter in force: `base` (from `RUST_LOG`, default `info`) with every
/// silencing directive appended.
pub fn filter(base: &str) -> EnvFilter {
    let base = if base.trim().is_empty() { "info" } else { base };
    EnvFilter::new(format!(
        "{base},{},{SILENCE_SERVER_DEPENDENCY_LOGS},{SILENCE_WEBRTC_LOGS}",
        konsult_relay::SILENCE_DEPENDENCY_LOGS
    ))
}

/// Installs a subscriber that writes to `sink`, filtered by `RUST_LOG`
/// (default `info`) plus the silencing directives. Tests pass an in-memory
/// sink to grep the logs.
pub fn init<W>(sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    init_with_filter(&std::env::var("RUST_LOG").unwrap_or_default(), sink);
}

/// The subscriber [`init`] installs: `base` filter (plus the silencing
/// directives) and `format`, writing to `sink`.
pub fn subscriber<W>(base: &str, format: LogFormat, sink: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(base))
        .with_writer(sink)
        .with_ansi(false);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// [`init`] with `base` in place of `RUST_LOG` (tests capture at `trace`).
/// Does nothing if a global subscriber is already installed.
pub fn init_with_filter<W>(base: &str, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let format =
        LogFormat::from_env_value(&std::env::var("KONSULT_LOG_FORMAT").unwrap_or_default());
    // `try_init` also forwards the `log` records of dependencies.
    let _ = subscriber(base, format, sink).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_request_span() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = subscriber("info", LogFormat::Json, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request_id = "9f1c6f1e-1111-4a4a-8b8b-123456789abc",
                method = "POST",
                route = "/api/consultations/{id}/complete"
            );
            let _entered = span.enter();
            tracing::info!(consultation = "c-1", "consultation completed");
            tracing::info!(target: "turn::server", "relaying for 192.0.2.9");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 1, "the relay's line stays silenced: {text}");
        let line = &lines[0];
        assert_eq!(line["message"], "consultation completed");
        assert_eq!(line["consultation"], "c-1");
        assert_eq!(line["level"], "INFO");
        assert_eq!(
            line["span"]["request_id"],
            "9f1c6f1e-1111-4a4a-8b8b-123456789abc"
        );
        assert_eq!(line["span"]["route"], "/api/consultations/{id}/complete");
        assert_eq!(LogFormat::from_env_value(" JSON "), LogFormat::Json);
        assert_eq!(LogFormat::from_env_value(""), LogFormat::Text);
    }

    #[test]
    fn silenced_targets_stay_silent_even_at_trace() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "konsult_server::signaling", "own line");
            tracing::trace!(target: "axum::serve", "connection 192.0.2.1:4000 accepted");
            tracing::trace!(target: "tungstenite::protocol", "Received message v=0");
            tracing::info!(target: "turn::server", "no permission for 192.0.2.2");
            tracing::debug!(target: "webrtc_ice::agent", "candidate:1 1 udp 1 192.0.2.3 9 typ host");
            tracing::trace!(target: "dtls::conn", "flight to 192.0.2.5:4000");
            tracing::error!(target: "stun::message", "from 192.0.2.4");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("own line"), "{text}");
        for needle in ["192.0.2.", "v=0", "candidate:"] {
            assert!(!text.contains(needle), "{text}");
        }
        // Asking for a silenced target explicitly does not bring it back.
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter("info,turn=trace,tungstenite=trace"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "turn::server", "relaying for 192.0.2.9");
            tracing::trace!(target: "tungstenite::protocol", "Received message v=0");
        });
        assert!(sink.0.lock().unwrap().is_empty());
        assert_eq!(
            filter("  ").max_level_hint(),
            Some(tracing::level_filters::LevelFilter::INFO),
            "an empty RUST_LOG means info"
        );
    }
}
