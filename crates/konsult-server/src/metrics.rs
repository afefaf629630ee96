//! `GET /metrics`: the node's figures for the operator's Prometheus, in the
//! OpenMetrics text format (`prometheus-client`), behind a bearer token
//! (`metrics.token`). Only counts: no consultation, clinic, person or
//! address appears, and no label takes a value from a request.
//!
//! Counters that rest on the lifecycle (call events, set-up time, billing)
//! count what was committed, never what a client claimed or what was only
//! attempted: the recorder counts a call event once its write is durable.
//! Rooms and participants are a census of the hub tasks taken at each
//! scrape; the relay's and the database pools' figures are read then too.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use konsult_signal::Census;
use konsult_store::PoolStats;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use secrecy::ExposeSecret;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a scrape waits for the hub tasks' census.
const CENSUS_WAIT: Duration = Duration::from_secs(1);

/// Upper bounds of the call set-up histogram, in seconds: from the
/// admission to two-way media, both committed.
const SETUP_BUCKETS: [f64; 11] = [0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0];

/// Upper bounds of the NATS round-trip histogram, in seconds.
const NATS_RTT_BUCKETS: [f64; 10] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

/// A call event, by its stable codes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `CallEvent::code`.
    pub event: &'static str,
    /// `CallEvent::detail`, or empty.
    pub detail: &'static str,
}

/// One label of a fixed set of values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    direction: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The node's counters since it started; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Metrics {
    joins: Family<RoleLabel, Counter>,
    resumes: Counter,
    admission_checks: Family<OutcomeLabel, Counter>,
    call_events: Family<EventLabels, Counter>,
    call_setup: Histogram,
    billing_decisions: Family<DecisionLabel, Counter>,
    billing_lines: Counter,
    nats_rtt: Histogram,
    nats_up: Gauge,
    cluster_notices: Family<NoticeLabels, Counter>,
    cluster_sweeps: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            joins: Family::default(),
            resumes: Counter::default(),
            admission_checks: Family::default(),
            call_events: Family::default(),
            call_setup: Histogram::new(SETUP_BUCKETS),
            billing_decisions: Family::default(),
            billing_lines: Counter::default(),
            nats_rtt: Histogram::new(NATS_RTT_BUCKETS),
            nats_up: Gauge::default(),
            cluster_notices: Family::default(),
            cluster_sweeps: Family::default(),
        }
    }
}

impl Metrics {
    /// A connection joined a room (its hello passed), as `therapist` or
    /// `patient`.
    pub fn joined(&self, role: konsult_protocol::Role) {
        let role = match role {
            konsult_protocol::Role::Therapist => "therapist",
            konsult_protocol::Role::Patient => "patient",
        };
        self.joins.get_or_create(&RoleLabel { role }).inc();
    }

    /// A participant was welcomed back by resume.
    pub fn resumed(&self) {
        self.resumes.inc();
    }

    /// An admission check answered.
    pub fn admission_checked(&self, passed: bool) {
        let outcome = if passed { "passed" } else { "refused" };
        self.admission_checks
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A call event was committed.
    pub fn call_event(&self, event: &konsult_signal::CallEvent) {
        self.call_events
            .get_or_create(&EventLabels {
                event: event.code(),
                detail: event.detail().unwrap_or(""),
            })
            .inc();
    }

    /// From a committed admission to committed two-way media.
    pub fn call_set_up(&self, took: Duration) {
        self.call_setup.observe(took.as_secs_f64());
    }

    /// A billing decision was made; `line_written` when it wrote a line.
    pub fn billing_decided(&self, billable: bool, line_written: bool) {
        let decision = if billable { "billable" } else { "not_billable" };
        self.billing_decisions
            .get_or_create(&DecisionLabel { decision })
            .inc();
        if line_written {
            self.billing_lines.inc();
        }
    }

    /// A ping through NATS came back after `took`.
    pub fn nats_answered(&self, took: Duration) {
        self.nats_rtt.observe(took.as_secs_f64());
        self.nats_up.set(1);
    }

    /// A ping through NATS did not come back in time.
    pub fn nats_unreachable(&self) {
        self.nats_up.set(0);
    }

    /// A cluster notice was `sent` or `received`.
    pub fn cluster_notice(&self, direction: &'static str, kind: &'static str) {
        self.cluster_notices
            .get_or_create(&NoticeLabels { direction, kind })
            .inc();
    }

    /// A sweep of the database for what NATS may have missed ran (`ok`)
    /// or could not read the database.
    pub fn cluster_swept(&self, ok: bool) {
        let outcome = if ok { "done" } else { "failed" };
        self.cluster_sweeps
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The exposition text: these counters with what was read at the
    /// scrape. `census` is `None` when a hub task did not answer in time.
    pub fn render(
        &self,
        census: Option<Census>,
        pools: &[PoolStats],
        relay: Option<konsult_relay::RelayStats>,
    ) -> String {
        let mut registry = Registry::with_prefix("konsult");
        registry.register(
            "signaling_joins",
            "Connections that joined a room (hello accepted), by role.",
            self.joins.clone(),
        );
        registry.register(
            "signaling_resumes",
            "Participants welcomed back by resume (no new admission).",
            self.resumes.clone(),
        );
        registry.register(
            "admission_checks",
            "Admission checks (eligibility and link again at admit), by outcome.",
            self.admission_checks.clone(),
        );
        registry.register(
            "call_events",
            "Call events committed, by event and detail (evidence, end reason).",
            self.call_events.clone(),
        );
        registry.register(
            "call_setup_seconds",
            "From a committed admission to committed two-way media.",
            self.call_setup.clone(),
        );
        registry.register(
            "billing_decisions",
            "Billing decisions made (completion or decided again), by decision.",
            self.billing_decisions.clone(),
        );
        registry.register(
            "billing_lines_written",
            "Billing lines written by this node.",
            self.billing_lines.clone(),
        );
        registry.register(
            "nats_rtt_seconds",
            "Round trips of this node's pings through NATS (cluster mode).",
            self.nats_rtt.clone(),
        );
        registry.register(
            "nats_up",
            "Whether this node's last ping through NATS came back (0 when it runs alone).",
            self.nats_up.clone(),
        );
        registry.register(
            "cluster_notices",
            "What nodes told each other over NATS, by direction and kind.",
            self.cluster_notices.clone(),
        );
        registry.register(
            "cluster_sweeps",
            "Sweeps of the database for endings NATS may have missed, by outcome.",
            self.cluster_sweeps.clone(),
        );
        registry.register(
            "signaling_census_complete",
            "Whether every hub task answered this scrape's census (1) or not (0).",
            gauge(i64::from(census.is_some())),
        );
        if let Some(c) = census {
            registry.register(
                "signaling_rooms",
                "Rooms on this node: before the first admission, or in their call.",
                by_state([
                    ("waiting", c.rooms - c.rooms_in_call),
                    ("in_call", c.rooms_in_call),
                ]),
            );
            registry.register(
                "signaling_participants",
                "Participants on this node, by state (away: dropped, within the grace period).",
                by_state([
                    ("therapist", c.therapists),
                    ("patient_waiting", c.patients_waiting),
                    ("patient_admitted", c.patients_admitted),
                    ("away", c.participants_away),
                ]),
            );
        }
        let connections = Family::<PoolLabels, Gauge>::default();
        for p in pools {
            connections
                .get_or_create(&PoolLabels {
                    pool: p.pool,
                    state: "idle",
                })
                .set(count(p.idle));
            connections
                .get_or_create(&PoolLabels {
                    pool: p.pool,
                    state: "busy",
                })
                .set(count(p.size.saturating_sub(p.idle)));
        }
        registry.register(
            "db_connections",
            "Database connections open, by pool and state.",
            connections,
        );
        register_relay(&mut registry, relay);
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A gauge read at the scrape.
fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

/// Counts read at the scrape, one gauge per state.
fn by_state<const N: usize>(counts: [(&'static str, usize); N]) -> Family<StateLabel, Gauge> {
    let family = Family::<StateLabel, Gauge>::default();
    for (state, n) in counts {
        family.get_or_create(&StateLabel { state }).set(count(n));
    }
    family
}

/// The embedded relay's counters (without one: `konsult_turn_up 0`).
fn register_relay(registry: &mut Registry, relay: Option<konsult_relay::RelayStats>) {
    registry.register(
        "turn_up",
        "Whether the embedded TURN relay runs.",
        gauge(i64::from(relay.is_some())),
    );
    let Some(r) = relay else {
        return;
    };
    registry.register(
        "turn_allocations",
        "Live allocations on the embedded relay.",
        gauge(count(r.allocations)),
    );
    let directed = |sent: u64, received: u64| {
        let family = Family::<DirectionLabel, Counter>::default();
        for (direction, n) in [("client_to_peer", sent), ("peer_to_client", received)] {
            family
                .get_or_create(&DirectionLabel { direction })
                .inc_by(n);
        }
        family
    };
    registry.register(
        "turn_media_packets",
        "RTP/RTCP datagrams relayed, by direction.",
        directed(r.sent.packets, r.received.packets),
    );
    registry.register(
        "turn_media_bytes",
        "RTP/RTCP payload bytes relayed, by direction.",
        directed(r.sent.bytes, r.received.bytes),
    );
    let refusals = Family::<ReasonLabel, Counter>::default();
    for (reason, n) in [
        ("unauthorized", r.refused_unauthorized),
        ("quota", r.refused_quota),
        ("forbidden_peer", r.refused_forbidden_peer),
        ("invalid", r.refused_invalid),
    ] {
        refusals.get_or_create(&ReasonLabel { reason }).inc_by(n);
    }
    registry.register(
        "turn_refusals",
        "TURN requests refused, by reason.",
        refusals,
    );
    if let Some(drops) = r.receive_buffer_drops {
        let counter: Counter = Counter::default();
        counter.inc_by(drops);
        registry.register(
            "turn_receive_buffer_drops",
            "Datagrams the kernel dropped on the relay's listening socket (receive buffer full).",
            counter,
        );
    }
}

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
    let census = state.signaling.census(CENSUS_WAIT).await;
    let relay = state.signaling.turn().stats().await;
    let text = state
        .signaling
        .metrics()
        .render(census, &state.store.pool_stats(), relay);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsult_domain::{CallEvent, EndReason, Evidence};
    use konsult_relay::{RelayStats, Totals};

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn without_a_relay_or_census_the_text_says_so() {
        let text = Metrics::default().render(None, &[], None);
        let lines = lines(&text);
        for line in [
            "konsult_turn_up 0",
            "konsult_signaling_census_complete 0",
            "# EOF",
        ] {
            assert!(lines.contains(&line), "{line:?} in\n{text}");
        }
        assert!(!text.contains("konsult_signaling_rooms"), "{text}");
        assert!(!text.contains("konsult_turn_allocations"), "{text}");
    }

    #[test]
    fn the_figures_appear_as_counted() {
        let m = Metrics::default();
        m.joined(konsult_protocol::Role::Therapist);
        m.joined(konsult_protocol::Role::Patient);
        m.joined(konsult_protocol::Role::Patient);
        m.resumed();
        m.admission_checked(true);
        m.admission_checked(false);
        m.call_event(&CallEvent::Admitted);
        m.call_event(&CallEvent::TwoWayEstablished {
            evidence: Evidence::RelayObserved,
        });
        m.call_event(&CallEvent::Ended {
            reason: EndReason::TherapistEnded,
        });
        m.call_set_up(Duration::from_millis(1500));
        m.billing_decided(true, true);
        m.billing_decided(false, false);
        let census = Census {
            rooms: 3,
            rooms_in_call: 1,
            therapists: 2,
            patients_waiting: 1,
            patients_admitted: 1,
            participants_away: 1,
        };
        let pools = [PoolStats {
            pool: "main",
            size: 3,
            idle: 2,
        }];
        let relay = RelayStats {
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
        };
        let text = m.render(Some(census), &pools, Some(relay));
        let lines = lines(&text);
        for line in [
            "konsult_signaling_joins_total{role=\"patient\"} 2",
            "konsult_signaling_joins_total{role=\"therapist\"} 1",
            "konsult_signaling_resumes_total 1",
            "konsult_admission_checks_total{outcome=\"refused\"} 1",
            "konsult_call_events_total{event=\"admitted\",detail=\"\"} 1",
            "konsult_call_events_total{event=\"two_way_established\",detail=\"relay_observed\"} 1",
            "konsult_call_events_total{event=\"ended\",detail=\"therapist_ended\"} 1",
            "konsult_call_setup_seconds_count 1",
            "konsult_call_setup_seconds_bucket{le=\"1.0\"} 0",
            "konsult_call_setup_seconds_bucket{le=\"2.0\"} 1",
            "konsult_billing_decisions_total{decision=\"billable\"} 1",
            "konsult_billing_decisions_total{decision=\"not_billable\"} 1",
            "konsult_billing_lines_written_total 1",
            "konsult_signaling_census_complete 1",
            "konsult_signaling_rooms{state=\"waiting\"} 2",
            "konsult_signaling_rooms{state=\"in_call\"} 1",
            "konsult_signaling_participants{state=\"patient_admitted\"} 1",
            "konsult_signaling_participants{state=\"away\"} 1",
            "konsult_db_connections{pool=\"main\",state=\"busy\"} 1",
            "konsult_turn_up 1",
            "konsult_turn_allocations 4",
            "konsult_turn_media_packets_total{direction=\"client_to_peer\"} 10",
            "konsult_turn_media_bytes_total{direction=\"peer_to_client\"} 900",
            "konsult_turn_refusals_total{reason=\"quota\"} 1",
            "konsult_turn_receive_buffer_drops_total 0",
        ] {
            assert!(lines.contains(&line), "{line:?} in\n{text}");
        }
        // Every sample follows its TYPE line, and the text ends as
        // OpenMetrics requires.
        for line in lines.iter().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(text.contains(&format!("# TYPE {family} ")), "{name}");
        }
        assert_eq!(lines.last(), Some(&"# EOF"));
    }
}
