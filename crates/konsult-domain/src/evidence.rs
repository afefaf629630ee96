//! When does Konsult hold that media flowed both ways? The rules behind
//! [`crate::lifecycle::Evidence`].
//!
//! Billing needs two-way communication (the agreement's third prerequisite: the IT solution
//! "allows two-way communication", and a consultation is billable only when both sides' media
//! flowed). Konsult accepts two kinds of evidence, strongest first:
//!
//! 1. **Relay-observed** ([`relay_two_way`]): Konsult's own TURN relay counted media packets
//!    (RTP/RTCP by their first byte, RFC 7983) flowing from the patient to the therapist and
//!    from the therapist to the patient, at least [`EvidenceRules::min_packets`] each way,
//!    spread over at least [`EvidenceRules::min_span`]. Clients cannot produce this by sending
//!    messages to the signaling server.
//! 2. **Client-reported** ([`client_two_way`]): each side's `stats` reports say it is receiving
//!    media, its received byte counter grows across reports at least
//!    [`EvidenceRules::min_span`] apart, and what it received is consistent with what the other
//!    side says it sent (a receiver cannot receive more than was sent).
//!
//! # Why 30 seconds
//!
//! [`EvidenceRules::min_span`] defaults to 30 s: the consent-freshness timeout of RFC 7675
//! §5.1 (an ICE agent stops sending when it has had no answer to its consent checks for 30 s).
//! Media that flowed both ways for longer than that was consented to by the receiving agent
//! after the call was set up, so it is a conversation, not a connection attempt that flickered.
//! A videokonsultation takes minutes (status, instruction and correction of exercises, journal;
//! the service description's "Indhold i ydelser"), so a real consultation always passes; a call
//! of a few seconds does not. The span is a setting, so a clinic or a test can choose another.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The thresholds of both kinds of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EvidenceRules {
    /// How long media must have flowed each way (first to last observation).
    pub min_span: Duration,
    /// How many media packets the relay must have seen each way. At 50 packets per second of
    /// audio alone (20 ms Opus frames), 100 packets are two seconds of sound.
    pub min_packets: u64,
}

impl EvidenceRules {
    /// The defaults: 30 s (see the module docs) and 100 packets.
    pub const DEFAULT: EvidenceRules = EvidenceRules {
        min_span: Duration::from_secs(30),
        min_packets: 100,
    };
}

impl Default for EvidenceRules {
    fn default() -> Self {
        EvidenceRules::DEFAULT
    }
}

/// Media the relay saw going one way between the two participants of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObservedFlow {
    /// Media packets counted.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// From the first to the last counted packet.
    pub span: Duration,
}

impl ObservedFlow {
    /// Whether this one direction satisfies the rules.
    pub fn suffices(&self, rules: &EvidenceRules) -> bool {
        self.packets >= rules.min_packets && self.span >= rules.min_span
    }
}

/// Relay-observed two-way media: both directions suffice.
pub fn relay_two_way(
    rules: &EvidenceRules,
    patient_to_therapist: &ObservedFlow,
    therapist_to_patient: &ObservedFlow,
) -> bool {
    patient_to_therapist.suffices(rules) && therapist_to_patient.suffices(rules)
}

/// One `stats` report of one side, as far as evidence is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientReport {
    /// When it arrived, as time since any fixed origin (the same for both sides).
    pub at: Duration,
    /// The protocol's "receiving media" test passed (connected, bytes and frames or audio
    /// packets received).
    pub receiving: bool,
    /// Total bytes received on this peer connection.
    pub bytes_received: u64,
    /// Total bytes sent on this peer connection, if the client reports it.
    pub bytes_sent: Option<u64>,
}

/// The reports of one side in the current call: the first report that was receiving media, and
/// the latest. A received counter that goes back means a new peer connection: the series
/// starts again there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientReports {
    first: Option<ClientReport>,
    latest: Option<ClientReport>,
}

impl ClientReports {
    /// Adds a report (in arrival order).
    pub fn add(&mut self, report: ClientReport) {
        let restarted = self
            .latest
            .is_some_and(|l| report.bytes_received < l.bytes_received);
        if restarted || !report.receiving {
            self.first = None;
        }
        if report.receiving && self.first.is_none() {
            self.first = Some(report);
        }
        self.latest = Some(report);
    }

    /// The latest report, if any.
    pub fn latest(&self) -> Option<ClientReport> {
        self.latest
    }

    /// Whether this side alone has reported receiving media, with growing counters, for at
    /// least `min_span`.
    fn receiving_for(&self, min_span: Duration) -> bool {
        match (self.first, self.latest) {
            (Some(first), Some(latest)) => {
                latest.receiving
                    && latest.bytes_received > first.bytes_received
                    && latest.at.saturating_sub(first.at) >= min_span
            }
            _ => false,
        }
    }

    /// The sender's rate in bytes per second over the series, if it reports what it sent.
    fn send_rate(&self) -> Option<f64> {
        let (first, latest) = (self.first?, self.latest?);
        let (a, b) = (first.bytes_sent?, latest.bytes_sent?);
        let dt = latest.at.saturating_sub(first.at).as_secs_f64();
        (dt > 0.0 && b >= a).then(|| (b - a) as f64 / dt)
    }
}

/// Whether what `receiver` says it received fits what `sender` says it sent: no more than
/// the sender's latest total, extrapolated at its own rate to the receiver's report time, plus
/// 10 % and 64 KiB for the reports' timing. A sender that reports nothing sent is not checked.
fn consistent(sender: &ClientReports, receiver: &ClientReports) -> bool {
    let (Some(s), Some(r)) = (sender.latest, receiver.latest) else {
        return false;
    };
    let Some(sent) = s.bytes_sent else {
        return true;
    };
    let ahead = r.at.saturating_sub(s.at).as_secs_f64();
    let extrapolated = sent as f64 + sender.send_rate().unwrap_or(0.0) * ahead;
    (r.bytes_received as f64) <= extrapolated * 1.1 + 65_536.0
}

/// Client-reported two-way media: each side received media for at least the minimum span,
/// and each side's received counter is consistent with the other's sent counter.
pub fn client_two_way(
    rules: &EvidenceRules,
    patient: &ClientReports,
    therapist: &ClientReports,
) -> bool {
    patient.receiving_for(rules.min_span)
        && therapist.receiving_for(rules.min_span)
        && consistent(patient, therapist)
        && consistent(therapist, patient)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: EvidenceRules = EvidenceRules {
        min_span: Duration::from_secs(10),
        min_packets: 50,
    };

    fn report(at_s: u64, received: u64, sent: Option<u64>) -> ClientReport {
        ClientReport {
            at: Duration::from_secs(at_s),
            receiving: received > 0,
            bytes_received: received,
            bytes_sent: sent,
        }
    }

    fn series(reports: &[ClientReport]) -> ClientReports {
        let mut s = ClientReports::default();
        for r in reports {
            s.add(*r);
        }
        s
    }

    #[test]
    fn relay_needs_both_directions_for_long_enough() {
        let good = ObservedFlow {
            packets: 500,
            bytes: 500_000,
            span: Duration::from_secs(12),
        };
        let short = ObservedFlow {
            span: Duration::from_secs(3),
            ..good
        };
        let few = ObservedFlow {
            packets: 10,
            ..good
        };
        assert!(relay_two_way(&RULES, &good, &good));
        assert!(!relay_two_way(&RULES, &good, &short));
        assert!(!relay_two_way(&RULES, &few, &good));
        assert!(!relay_two_way(&RULES, &good, &ObservedFlow::default()));
    }

    #[test]
    fn clients_must_report_growing_counters_over_the_span() {
        let p = series(&[
            report(0, 1_000, Some(2_000)),
            report(12, 90_000, Some(95_000)),
        ]);
        let t = series(&[
            report(1, 1_500, Some(1_000)),
            report(13, 94_000, Some(91_000)),
        ]);
        assert!(client_two_way(&RULES, &p, &t));
        // Too short.
        let t_short = series(&[report(1, 1_500, None), report(5, 94_000, None)]);
        assert!(!client_two_way(&RULES, &p, &t_short));
        // Counters that do not grow.
        let t_flat = series(&[report(1, 94_000, None), report(13, 94_000, None)]);
        assert!(!client_two_way(&RULES, &p, &t_flat));
        // A single report, however large.
        let t_once = series(&[report(13, 10_000_000, None)]);
        assert!(!client_two_way(&RULES, &p, &t_once));
    }

    #[test]
    fn a_receiver_cannot_receive_more_than_was_sent() {
        let p = series(&[
            report(0, 1_000, Some(1_000)),
            report(12, 90_000, Some(10_000)),
        ]);
        let t = series(&[
            report(1, 1_500, Some(1_000)),
            report(13, 5_000_000, Some(91_000)),
        ]);
        assert!(!client_two_way(&RULES, &p, &t), "t received 5 MB of 10 kB");
    }

    #[test]
    fn a_new_peer_connection_restarts_the_series() {
        let p = series(&[
            report(0, 1_000, None),
            report(20, 900_000, None),
            report(21, 2_000, None),
            report(25, 50_000, None),
        ]);
        let t = series(&[report(0, 1_000, None), report(25, 900_000, None)]);
        assert!(!client_two_way(&RULES, &p, &t), "p's new call is 4 s old");
    }
}
