//! `GET /metrics`: Prometheus text (exposition format 0.0.4) for the
//! operator's monitoring, behind a bearer token (`metrics.token`). Only
//! counts: no consultation, clinic, person or address appears.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use crate::error::ApiError;
use crate::state::AppState;

/// The metrics, for a scraper holding the configured token; 404 when no
/// token is configured, 401 without the right one.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.settings.metrics.token else {
        return ApiError::NotFound("route").into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::auth::constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    let text = render(state.signaling.turn().stats().await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The exposition text of the relay's counters (absent without an embedded
/// relay: `konsult_turn_up 0`).
pub fn render(relay: Option<konsult_relay::RelayStats>) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    metric(
        "konsult_turn_up",
        "gauge",
        "Whether the embedded TURN relay runs.",
        &[("", u64::from(relay.is_some()))],
    );
    let Some(r) = relay else {
        return out;
    };
    metric(
        "konsult_turn_allocations",
        "gauge",
        "Live allocations on the embedded relay.",
        &[("", r.allocations as u64)],
    );
    metric(
        "konsult_turn_media_packets_total",
        "counter",
        "RTP/RTCP datagrams relayed, by direction.",
        &[
            ("direction=\"client_to_peer\"", r.sent.packets),
            ("direction=\"peer_to_client\"", r.received.packets),
        ],
    );
    metric(
        "konsult_turn_media_bytes_total",
        "counter",
        "RTP/RTCP payload bytes relayed, by direction.",
        &[
            ("direction=\"client_to_peer\"", r.sent.bytes),
            ("direction=\"peer_to_client\"", r.received.bytes),
        ],
    );
    metric(
        "konsult_turn_refusals_total",
        "counter",
        "TURN requests refused, by reason.",
        &[
            ("reason=\"unauthorized\"", r.refused_unauthorized),
            ("reason=\"quota\"", r.refused_quota),
            ("reason=\"forbidden_peer\"", r.refused_forbidden_peer),
            ("reason=\"invalid\"", r.refused_invalid),
        ],
    );
    if let Some(drops) = r.receive_buffer_drops {
        metric(
            "konsult_turn_receive_buffer_drops_total",
            "counter",
            "Datagrams the kernel dropped on the relay's listening socket (receive buffer full).",
            &[("", drops)],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsult_relay::{RelayStats, Totals};

    #[test]
    fn the_text_is_prometheus_exposition_format() {
        assert_eq!(
            render(None),
            "# HELP konsult_turn_up Whether the embedded TURN relay runs.\n# TYPE konsult_turn_up gauge\nkonsult_turn_up 0\n"
        );
        let text = render(Some(RelayStats {
            allocations: 4,
            sent: Totals {
                packets: 10,
                bytes: 1000,
            },
            received: Totals {
                packets: 9,
                bytes: 900,
            },
            refused_unauthorized: 2,
            refused_quota: 1,
            refused_forbidden_peer: 0,
            refused_invalid: 0,
            receive_buffer_drops: Some(0),
        }));
        for line in [
            "konsult_turn_up 1",
            "konsult_turn_allocations 4",
            "konsult_turn_media_packets_total{direction=\"client_to_peer\"} 10",
            "konsult_turn_media_bytes_total{direction=\"peer_to_client\"} 900",
            "konsult_turn_refusals_total{reason=\"quota\"} 1",
            "konsult_turn_receive_buffer_drops_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        // Every sample follows its HELP and TYPE lines.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
