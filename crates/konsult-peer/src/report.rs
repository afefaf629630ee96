//! What flowed through a [`Peer`](crate::Peer): packet, byte and frame
//! counters for each direction and media kind, the candidate types of the
//! selected ICE pair and the time to first media.
//!
//! Only counters and candidate *types* are reported, never an address:
//! a report may be printed, logged or sent to the signaling server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// The Opus track.
    Audio,
    /// The VP8 track.
    Video,
}

/// Counts of one media kind in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FlowStats {
    /// RTP packets.
    pub packets: u64,
    /// RTP payload bytes (headers not counted, as in `getStats`).
    pub bytes: u64,
    /// Media frames: for video, RTP packets with the marker bit (the last
    /// packet of a frame); for audio, packets (one Opus frame each).
    pub frames: u64,
}

impl FlowStats {
    /// Whether any media frame went through.
    pub fn flowed(&self) -> bool {
        self.packets > 0 && self.frames > 0
    }
}

/// Counts of both media kinds in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DirectionStats {
    /// The Opus track.
    pub audio: FlowStats,
    /// The VP8 track.
    pub video: FlowStats,
}

impl DirectionStats {
    /// Whether both audio and video frames went through.
    pub fn flowed(&self) -> bool {
        self.audio.flowed() && self.video.flowed()
    }
}

/// ICE candidate type (RFC 8445, section 5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateType {
    /// A local interface address.
    Host,
    /// An address seen by a STUN server.
    Srflx,
    /// An address learnt from a connectivity check.
    Prflx,
    /// An address on a TURN relay.
    Relay,
}

/// The candidate types of the selected ICE candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SelectedPair {
    /// This peer's candidate.
    pub local: CandidateType,
    /// The other peer's candidate.
    pub remote: CandidateType,
}

impl SelectedPair {
    /// Whether media goes through a relay on either side.
    pub fn relayed(&self) -> bool {
        self.local == CandidateType::Relay || self.remote == CandidateType::Relay
    }
}

/// A snapshot of what flowed through one peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaReport {
    /// What this peer sent: packets (and their payload bytes) handed to a
    /// connected transport, and the frames they belong to. Packets written
    /// before the transport is up are dropped by the stack and not counted.
    pub sent: DirectionStats,
    /// Packets of this peer's media that the other side says it received,
    /// per kind: computed from the extended highest sequence number and
    /// the cumulative loss in its RTCP reception reports.
    pub sent_acknowledged: AcknowledgedStats,
    /// What this peer received, counted as the packets were read.
    pub received: DirectionStats,
    /// Candidate types of the selected pair, once ICE has selected one.
    pub selected_pair: Option<SelectedPair>,
    /// Time from the reference instant (see
    /// [`Peer::report_since`](crate::Peer::report_since)) to the first
    /// received media packet, in milliseconds.
    pub time_to_first_media_ms: Option<u64>,
}

/// Packets the other side acknowledged in RTCP receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AcknowledgedStats {
    /// Audio packets.
    pub audio_packets: u64,
    /// Video packets.
    pub video_packets: u64,
}

impl AcknowledgedStats {
    /// Whether the other side acknowledged packets of both kinds.
    pub fn both_kinds(&self) -> bool {
        self.audio_packets > 0 && self.video_packets > 0
    }
}

impl MediaReport {
    /// Whether audio and video flowed both ways, as far as one peer can
    /// tell: it received frames of both kinds, sent frames of both kinds,
    /// and the other side's receiver reports acknowledge packets of both.
    pub fn media_flowed_both_ways(&self) -> bool {
        self.sent.flowed() && self.received.flowed() && self.sent_acknowledged.both_kinds()
    }
}

/// Lock-free counters updated by the media tasks.
#[derive(Debug, Default)]
pub(crate) struct FlowCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    frames: AtomicU64,
}

impl FlowCounters {
    pub(crate) fn add(&self, packets: u64, bytes: u64, frames: u64) {
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.frames.fetch_add(frames, Ordering::Relaxed);
    }

    fn snapshot(&self) -> FlowStats {
        FlowStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
        }
    }
}

/// What one outgoing stream has sent and the other side acknowledged.
#[derive(Debug, Default)]
pub(crate) struct SendCounters {
    /// Packets, payload bytes and frames that reached a connected
    /// transport.
    flow: FlowCounters,
    /// Sequence number of the first packet that reached the transport.
    first_seq: Mutex<Option<u16>>,
    /// Packets the other side received, from its receiver reports.
    acknowledged: AtomicU64,
}

impl SendCounters {
    /// Counts a packet that reached the transport, remembering the sequence
    /// number of the first one.
    pub(crate) fn packet_sent(&self, seq: u16, payload_bytes: usize) {
        self.flow.add(1, payload_bytes as u64, 0);
        let mut first = self.first_seq.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(seq);
    }

    /// Counts a frame some of whose packets reached the transport.
    pub(crate) fn frame_sent(&self) {
        self.flow.add(0, 0, 1);
    }

    /// Takes in a reception report (RFC 3550, section 6.4.1) of the other
    /// side about this stream: its extended highest sequence number and its
    /// cumulative loss give the packets it received.
    pub(crate) fn reception_report(&self, extended_highest_seq: u32, total_lost: u32) {
        let Some(first) = *self.first_seq.lock().unwrap_or_else(|e| e.into_inner()) else {
            return;
        };
        let received =
            (i64::from(extended_highest_seq) - i64::from(first) + 1 - i64::from(total_lost)).max(0);
        self.acknowledged
            .fetch_max(received.unsigned_abs(), Ordering::Relaxed);
    }

    pub(crate) fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }
}

/// Counters of one peer, shared between its media tasks and its owner.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent_audio: SendCounters,
    sent_video: SendCounters,
    received_audio: FlowCounters,
    received_video: FlowCounters,
    first_media: Mutex<Option<Instant>>,
}

impl Counters {
    pub(crate) fn sent(&self, kind: MediaKind) -> &SendCounters {
        match kind {
            MediaKind::Audio => &self.sent_audio,
            MediaKind::Video => &self.sent_video,
        }
    }

    pub(crate) fn sent_snapshot(&self) -> DirectionStats {
        DirectionStats {
            audio: self.sent_audio.flow.snapshot(),
            video: self.sent_video.flow.snapshot(),
        }
    }

    pub(crate) fn acknowledged_snapshot(&self) -> AcknowledgedStats {
        AcknowledgedStats {
            audio_packets: self.sent_audio.acknowledged(),
            video_packets: self.sent_video.acknowledged(),
        }
    }

    pub(crate) fn received(&self, kind: MediaKind) -> &FlowCounters {
        match kind {
            MediaKind::Audio => &self.received_audio,
            MediaKind::Video => &self.received_video,
        }
    }

    /// Records `at` as the first media arrival unless one is known.
    pub(crate) fn media_arrived(&self, at: Instant) {
        let mut first = self.first_media.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(at);
    }

    pub(crate) fn first_media(&self) -> Option<Instant> {
        *self.first_media.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn received_snapshot(&self) -> DirectionStats {
        DirectionStats {
            audio: self.received_audio.snapshot(),
            video: self.received_video.snapshot(),
        }
    }
}

/// Milliseconds from `since` to `at`, zero if `at` came first.
pub(crate) fn millis_between(since: Instant, at: Instant) -> u64 {
    let elapsed = at.saturating_duration_since(since);
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn flow(packets: u64, frames: u64) -> FlowStats {
        FlowStats {
            packets,
            bytes: packets * 100,
            frames,
        }
    }

    fn report(sent: DirectionStats, received: DirectionStats) -> MediaReport {
        MediaReport {
            sent,
            sent_acknowledged: AcknowledgedStats {
                audio_packets: 4,
                video_packets: 7,
            },
            received,
            selected_pair: None,
            time_to_first_media_ms: None,
        }
    }

    #[test]
    fn media_flowed_both_ways_needs_both_kinds_in_both_directions() {
        let both = DirectionStats {
            audio: flow(5, 5),
            video: flow(9, 3),
        };
        let no_video = DirectionStats {
            audio: flow(5, 5),
            video: FlowStats::default(),
        };
        assert!(report(both, both).media_flowed_both_ways());
        assert!(!report(both, no_video).media_flowed_both_ways());
        assert!(!report(no_video, both).media_flowed_both_ways());
        assert!(!report(DirectionStats::default(), both).media_flowed_both_ways());
    }

    #[test]
    fn media_sent_but_never_acknowledged_has_not_flowed_both_ways() {
        let both = DirectionStats {
            audio: flow(5, 5),
            video: flow(9, 3),
        };
        let mut r = report(both, both);
        r.sent_acknowledged.video_packets = 0;
        assert!(!r.media_flowed_both_ways());
    }

    #[test]
    fn video_packets_without_a_complete_frame_do_not_count_as_flowing() {
        assert!(!flow(3, 0).flowed());
        assert!(flow(3, 1).flowed());
    }

    #[test]
    fn reception_reports_count_received_packets_from_the_first_one_sent() {
        let sent = SendCounters::default();
        // A report before anything was sent cannot be related to our stream.
        sent.reception_report(10, 0);
        assert_eq!(sent.acknowledged(), 0);
        sent.packet_sent(65_530, 100);
        sent.packet_sent(65_531, 100);
        // Twelve packets later, across a sequence number wrap, two lost.
        sent.reception_report(65_536 + 5, 2);
        assert_eq!(sent.acknowledged(), 10);
        // An older report never lowers the count.
        sent.reception_report(65_535, 0);
        assert_eq!(sent.acknowledged(), 10);
    }

    #[test]
    fn the_first_media_arrival_is_kept() {
        let counters = Counters::default();
        let t0 = Instant::now();
        counters.media_arrived(t0 + Duration::from_millis(40));
        counters.media_arrived(t0 + Duration::from_millis(90));
        let first = counters.first_media().unwrap();
        assert_eq!(millis_between(t0, first), 40);
        assert_eq!(millis_between(first, t0), 0);
    }

    #[test]
    fn report_serializes_with_snake_case_candidate_types() {
        let mut r = report(DirectionStats::default(), DirectionStats::default());
        r.selected_pair = Some(SelectedPair {
            local: CandidateType::Relay,
            remote: CandidateType::Prflx,
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["selected_pair"]["local"], "relay");
        assert_eq!(json["selected_pair"]["remote"], "prflx");
        assert_eq!(json["received"]["video"]["frames"], 0);
    }
}
