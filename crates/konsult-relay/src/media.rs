//! Media the relay itself observed, counted per reference: the evidence for
//! "media flowed both ways" that does not rest on what clients claim.
//!
//! The public part is [`MediaCounters`] and [`Flow`], returned by
//! [`Relay::media_counters`](crate::Relay::media_counters). The rest is the
//! sans-I/O [`Ledger`] that the engine feeds: it reads no clock (every
//! instant comes in as an argument), does no I/O and stores no address or
//! payload.
//!
//! # What counts
//!
//! Only payloads that look like media: first byte 128..=191, which RFC 7983
//! reserves for RTP and RTCP (SRTP and SRTCP once encrypted). ICE's STUN
//! checks (0..=3), DTLS (20..=63) and anything else the relay carries are not
//! media and are not counted. A flow counts payload bytes as relayed, without
//! the ChannelData header or the STUN framing of a Send or Data indication.
//!
//! * **sent**: client → peer, counted when the allocation's relay socket has
//!   sent the payload of a ChannelData or Send indication to the peer;
//! * **received**: peer → client, counted when the relay has sent a
//!   ChannelData or Data indication carrying it to the client.
//!
//! So a datagram counts only once the relay has forwarded it: a client
//! cannot inflate its own counters with ChannelData for a channel it never
//! bound, nor with traffic to a peer it has no permission for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::credentials::Reference;

/// Media relayed in one direction for one reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    /// Datagrams whose payload looked like RTP/RTCP (first byte 128..=191).
    pub packets: u64,
    /// Their payload bytes, without TURN framing.
    pub bytes: u64,
    /// When the relay forwarded the first of them; `None` if none.
    pub first: Option<Instant>,
    /// When the relay forwarded the last of them; `None` if none.
    pub last: Option<Instant>,
}

impl Flow {
    /// Adds one datagram of `bytes` payload bytes forwarded at `at`.
    ///
    /// Instants from different tasks can reach the ledger slightly out of
    /// order, so `first` only ever moves back and `last` only forward.
    #[cfg(test)]
    fn record(&mut self, at: Instant, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
        self.first = Some(self.first.map_or(at, |first| first.min(at)));
        self.last = Some(self.last.map_or(at, |last| last.max(at)));
    }
}

impl Flow {
    /// Adds the datagrams of `other`.
    fn merge(&mut self, other: &Flow) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, other.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One direction of one live allocation's media, counted with relaxed
/// atomics on the data path (no lock shared by allocations), and moved into
/// the [`Ledger`] when counters are read or the allocation goes. Instants
/// are nanoseconds after an epoch (plus one, so 0 means none).
#[derive(Debug)]
pub(crate) struct LiveFlow {
    packets: AtomicU64,
    bytes: AtomicU64,
    first: AtomicU64,
    last: AtomicU64,
}

impl Default for LiveFlow {
    fn default() -> Self {
        Self {
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
        }
    }
}

impl LiveFlow {
    /// One datagram of `bytes` payload bytes forwarded at `at`.
    pub(crate) fn record(&self, epoch: Instant, at: Instant, bytes: usize) {
        let at = at.saturating_duration_since(epoch).as_nanos() as u64 + 1;
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.first.fetch_min(at, Ordering::Relaxed);
        self.last.fetch_max(at, Ordering::Relaxed);
    }

    /// What was counted since the last take, reset. A datagram counted at
    /// the same moment lands in this take or the next, never in neither.
    fn take(&self, epoch: Instant) -> Flow {
        let instant = |ns: u64| epoch + Duration::from_nanos(ns - 1);
        let first = self.first.swap(u64::MAX, Ordering::Relaxed);
        let last = self.last.swap(0, Ordering::Relaxed);
        Flow {
            packets: self.packets.swap(0, Ordering::Relaxed),
            bytes: self.bytes.swap(0, Ordering::Relaxed),
            first: (first != u64::MAX).then(|| instant(first)),
            last: (last != 0).then(|| instant(last)),
        }
    }
}

/// Both directions of one live allocation's media; see [`LiveFlow`].
#[derive(Debug, Default)]
pub(crate) struct LiveCounters {
    /// Client → peer.
    pub sent: LiveFlow,
    /// Peer → client.
    pub received: LiveFlow,
}

impl LiveCounters {
    /// What was counted since the last take, reset.
    pub(crate) fn take(&self, epoch: Instant) -> MediaCounters {
        MediaCounters {
            sent: self.sent.take(epoch),
            received: self.received.take(epoch),
        }
    }
}

/// The media the relay observed for one reference (one participant, with
/// `"<consultation>.<participant>"` references), in both directions.
///
/// "Sent" and "received" are seen from the client holding the reference's
/// credentials: `sent` went from that client through the relay to a peer,
/// `received` from a peer through the relay to that client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaCounters {
    /// Client → peer.
    pub sent: Flow,
    /// Peer → client.
    pub received: Flow,
}

/// Which way a payload went, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client → peer.
    Sent,
    /// Peer → client.
    Received,
}

/// Whether a relayed payload looks like media: RTP or RTCP by RFC 7983's
/// demultiplexing rule (first byte 128..=191).
pub(crate) fn is_media(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(128..=191))
}

/// Lets an allocation relay until its reference is closed, and tells the
/// closer when the last datagram that was already passing has gone out.
///
/// Both relay directions go through [`Valve::pass`] right before they
/// write; [`Valve::shut`] stops new ones, and [`Valve::is_drained`] says
/// when none is left half-way. A counter, not a lock: nobody waits for it
/// but the closer.
#[derive(Debug, Default)]
pub(crate) struct Valve {
    shut: AtomicBool,
    passing: AtomicUsize,
}

impl Valve {
    /// Lets one datagram through, unless shut: it counts as passing until
    /// the returned guard is dropped (after the write).
    pub(crate) fn pass(&self) -> Option<Passing<'_>> {
        // Counted before the check: a closer that shuts the valve and then
        // reads `passing` sees every datagram that saw it open (SeqCst
        // orders the four operations).
        self.passing.fetch_add(1, Ordering::SeqCst);
        if self.shut.load(Ordering::SeqCst) {
            self.passing.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Passing(self))
    }

    /// Whether the valve is shut.
    pub(crate) fn is_shut(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }

    /// Shuts the valve; returns whether it was open.
    pub(crate) fn shut(&self) -> bool {
        !self.shut.swap(true, Ordering::SeqCst)
    }

    /// Shut, and no datagram is passing any more.
    pub(crate) fn is_drained(&self) -> bool {
        self.is_shut() && self.passing.load(Ordering::SeqCst) == 0
    }
}

/// One datagram passing a [`Valve`]; see [`Valve::pass`].
#[derive(Debug)]
pub(crate) struct Passing<'a>(&'a Valve);

impl Drop for Passing<'_> {
    fn drop(&mut self) {
        self.0.passing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Identifies one allocation's relay socket in the [`Ledger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AllocationId(u64);

/// A live allocation whose owner the gate accepted.
#[derive(Debug)]
struct Owned {
    reference: Reference,
}

/// A reference's counters and how recently the relay had to do with it.
#[derive(Debug)]
struct Tally {
    counters: MediaCounters,
    /// Live allocations of the reference.
    live: usize,
    /// Last allocation made or gone, or media counted.
    seen: Instant,
}

/// Fewest tallies kept before the ledger starts pruning.
const MIN_PRUNE_AT: usize = 64;

/// Who owns which allocation, and what media each reference relayed.
///
/// Calls, in the order the relay makes them: [`Ledger::allocation_made`]
/// when the server creates an allocation for a gate-accepted Allocate;
/// [`Ledger::client_allocation`] and [`Ledger::record`] for each relayed
/// media payload; [`Ledger::revoke`] when references are closed;
/// [`Ledger::allocation_gone`] when the allocation's relay socket is
/// dropped; [`Ledger::counters`] whenever the server asks.
///
/// # Memory bound
///
/// `allocations` and `clients` hold one entry per live relay socket, and an
/// entry goes with its socket. `tallies` holds one entry per reference that
/// has a live allocation or was seen within `max_idle` (the relay's
/// `max_credential_ttl`), and at most twice that many between prunes
/// (never fewer than [`MIN_PRUNE_AT`]): a prune runs whenever a new
/// reference would pass that mark. A reference only gets an entry through
/// an allocation made with a credential whose HMAC the gate checked, so
/// only the server, which holds the secret, can add references; a client
/// cannot grow the map by inventing them. Past `max_idle`, no credential
/// issued before the reference was last seen is still valid either.
#[derive(Debug)]
pub(crate) struct Ledger {
    max_idle: Duration,
    allocations: HashMap<AllocationId, Owned>,
    tallies: HashMap<Reference, Tally>,
    next_id: u64,
    prune_at: usize,
}

impl Ledger {
    /// A ledger that forgets a reference `max_idle` after it was last seen
    /// with no live allocation.
    pub(crate) fn new(max_idle: Duration) -> Self {
        Self {
            max_idle,
            allocations: HashMap::new(),
            tallies: HashMap::new(),
            next_id: 0,
            prune_at: MIN_PRUNE_AT,
        }
    }

    /// Records that the relay made an allocation with a credential of
    /// `reference`. Returns its id and the valve that is shut when it goes.
    pub(crate) fn allocation_made(
        &mut self,
        now: Instant,
        reference: Reference,
    ) -> (AllocationId, Arc<Valve>) {
        if !self.tallies.contains_key(&reference) && self.tallies.len() >= self.prune_at {
            self.prune(now);
        }
        self.next_id += 1;
        let id = AllocationId(self.next_id);
        let tally = self
            .tallies
            .entry(reference.clone())
            .or_insert_with(|| Tally {
                counters: MediaCounters::default(),
                live: 0,
                seen: now,
            });
        tally.live += 1;
        tally.seen = now;
        self.allocations.insert(id, Owned { reference });
        (id, Arc::new(Valve::default()))
    }

    /// Forgets a relay socket that is gone; its reference's counters stay.
    pub(crate) fn allocation_gone(&mut self, now: Instant, id: AllocationId) {
        let Some(owned) = self.allocations.remove(&id) else {
            return;
        };
        if let Some(tally) = self.tallies.get_mut(&owned.reference) {
            tally.live -= 1;
            tally.seen = now;
        }
    }

    /// Adds media that live allocation `id` relayed (taken from its
    /// [`LiveCounters`]); nothing for an allocation that is gone.
    pub(crate) fn add(&mut self, id: AllocationId, counters: &MediaCounters) {
        if counters.sent.packets == 0 && counters.received.packets == 0 {
            return;
        }
        let Some(owned) = self.allocations.get(&id) else {
            return;
        };
        if let Some(tally) = self.tallies.get_mut(&owned.reference) {
            tally.counters.sent.merge(&counters.sent);
            tally.counters.received.merge(&counters.received);
            let last = [counters.sent.last, counters.received.last]
                .into_iter()
                .flatten()
                .max();
            if let Some(last) = last {
                tally.seen = tally.seen.max(last);
            }
        }
    }

    /// The counters of every reference that `reference`
    /// [covers](Reference::covers).
    pub(crate) fn counters(&self, reference: &Reference) -> HashMap<Reference, MediaCounters> {
        self.tallies
            .iter()
            .filter(|(r, _)| reference.covers(r))
            .map(|(r, tally)| (r.clone(), tally.counters))
            .collect()
    }

    /// Drops the tallies of references with no live allocation that were
    /// last seen more than `max_idle` before `now`.
    fn prune(&mut self, now: Instant) {
        let max_idle = self.max_idle;
        self.tallies
            .retain(|_, t| t.live > 0 || now.saturating_duration_since(t.seen) <= max_idle);
        self.prune_at = (2 * self.tallies.len()).max(MIN_PRUNE_AT);
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    /// One datagram of `bytes` bytes at `at`, in `direction`.
    fn one(direction: Direction, at: Instant, bytes: usize) -> MediaCounters {
        let mut flow = Flow::default();
        flow.record(at, bytes);
        match direction {
            Direction::Sent => MediaCounters {
                sent: flow,
                ..Default::default()
            },
            Direction::Received => MediaCounters {
                received: flow,
                ..Default::default()
            },
        }
    }

    #[test]
    fn live_flows_count_without_locks_and_move_into_the_ledger_once() {
        let epoch = Instant::now();
        let live = LiveCounters::default();
        live.sent
            .record(epoch, epoch + Duration::from_millis(20), 100);
        live.sent
            .record(epoch, epoch + Duration::from_millis(10), 50);
        live.received.record(epoch, epoch, 7);
        let taken = live.take(epoch);
        assert_eq!(taken.sent.packets, 2);
        assert_eq!(taken.sent.bytes, 150);
        assert_eq!(taken.sent.first, Some(epoch + Duration::from_millis(10)));
        assert_eq!(taken.sent.last, Some(epoch + Duration::from_millis(20)));
        assert_eq!(taken.received.first, Some(epoch));
        assert_eq!(live.take(epoch), MediaCounters::default(), "taken once");

        let mut ledger = Ledger::new(Duration::from_secs(3600));
        let (id, _) = ledger.allocation_made(epoch, r("c.p1"));
        ledger.add(id, &taken);
        live.sent.record(epoch, epoch + Duration::from_millis(5), 1);
        ledger.add(id, &live.take(epoch));
        let seen = ledger.counters(&r("c"))[&r("c.p1")];
        assert_eq!((seen.sent.packets, seen.sent.bytes), (3, 151));
        assert_eq!(seen.sent.first, Some(epoch + Duration::from_millis(5)));
        assert_eq!(seen.sent.last, Some(epoch + Duration::from_millis(20)));
    }

    #[test]
    fn only_rtp_and_rtcp_first_bytes_are_media() {
        for b in [128u8, 0x80, 0x90, 191] {
            assert!(is_media(&[b, 0, 0]), "{b}");
        }
        // STUN, DTLS, TURN channels, ZRTP and the reserved rest.
        for b in [0u8, 3, 4, 19, 20, 22, 63, 64, 79, 127, 192, 255] {
            assert!(!is_media(&[b, 0, 0]), "{b}");
        }
        assert!(!is_media(&[]));
    }

    #[test]
    fn flows_count_packets_bytes_and_the_first_and_last_instant() {
        let t0 = Instant::now();
        let mut flow = Flow::default();
        flow.record(t0 + Duration::from_millis(20), 100);
        flow.record(t0 + Duration::from_millis(10), 50);
        flow.record(t0 + Duration::from_millis(30), 10);
        assert_eq!(
            flow,
            Flow {
                packets: 3,
                bytes: 160,
                first: Some(t0 + Duration::from_millis(10)),
                last: Some(t0 + Duration::from_millis(30)),
            }
        );
    }

    #[test]
    fn media_is_counted_per_reference_and_direction_and_outlives_the_allocation() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(Duration::from_secs(3600));
        let (p1, _) = ledger.allocation_made(t0, r("c.p1"));
        let (p2, _) = ledger.allocation_made(t0, r("c.p2"));
        let (other, _) = ledger.allocation_made(t0, r("d.p1"));
        ledger.add(p1, &one(Direction::Sent, t0, 100));
        ledger.add(p1, &one(Direction::Sent, t0, 100));
        ledger.add(p2, &one(Direction::Received, t0, 100));
        ledger.add(other, &one(Direction::Sent, t0, 7));
        ledger.allocation_gone(t0, p1);
        let counters = ledger.counters(&r("c"));
        assert_eq!(counters.len(), 2);
        assert_eq!(counters[&r("c.p1")].sent.packets, 2);
        assert_eq!(counters[&r("c.p1")].sent.bytes, 200);
        assert_eq!(counters[&r("c.p1")].received, Flow::default());
        assert_eq!(counters[&r("c.p2")].received.packets, 1);
        assert_eq!(ledger.counters(&r("c.p2")).len(), 1);
        // Nothing is counted for an allocation that is gone.
        ledger.add(p1, &one(Direction::Sent, t0, 100));
        assert_eq!(ledger.counters(&r("c.p1"))[&r("c.p1")].sent.packets, 2);
    }

    #[test]
    fn a_valve_drains_once_the_datagrams_passing_when_it_shut_are_through() {
        let valve = Valve::default();
        let passing = valve.pass().expect("open");
        assert!(valve.shut());
        assert!(!valve.shut(), "already shut");
        assert!(valve.pass().is_none(), "nothing new passes");
        assert!(!valve.is_drained(), "one datagram is still on its way");
        drop(passing);
        assert!(valve.is_drained());
    }

    #[test]
    fn idle_references_are_forgotten_and_the_map_stays_bounded() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let mut ledger = Ledger::new(idle);
        let (live, _) = ledger.allocation_made(t0, r("live"));
        let (gone, _) = ledger.allocation_made(t0, r("gone"));
        ledger.add(live, &one(Direction::Sent, t0, 1));
        ledger.allocation_gone(t0, gone);

        // Later, a reference comes and goes every tenth of `idle`: about ten
        // are recent at any time. "gone" is pruned, "live" (still
        // allocated) is kept, and the map never holds more than the
        // pruning mark.
        for i in 0..1000u16 {
            let now = t0 + 2 * idle + idle / 10 * u32::from(i);
            let (id, _) = ledger.allocation_made(now, r(&format!("r{i}")));
            ledger.allocation_gone(now, id);
            assert!(
                ledger.tallies.len() <= MIN_PRUNE_AT,
                "{}",
                ledger.tallies.len()
            );
        }
        assert!(ledger.counters(&r("gone")).is_empty());
        assert_eq!(ledger.counters(&r("live"))[&r("live")].sent.packets, 1);
        assert!(ledger.allocations.len() == 1);
    }
}
