//! What the relay did since it started, for monitoring: monotonic counters
//! of relayed media and refusals, kept with relaxed atomics on the packet
//! path, and the kernel's count of datagrams dropped on the listening
//! socket for want of receive-buffer room (read from `/proc/net/udp`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::gate::Refusal;
use crate::media::Direction;

/// Media relayed in one direction, over every allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Datagrams whose payload looked like RTP/RTCP.
    pub packets: u64,
    /// Their payload bytes, without TURN framing.
    pub bytes: u64,
}

/// A snapshot of the relay's counters ([`crate::Relay::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Live allocations.
    pub allocations: usize,
    /// Media from clients to peers.
    pub sent: Totals,
    /// Media from peers to clients.
    pub received: Totals,
    /// Requests refused for unknown, expired, forged or closed credentials.
    pub refused_unauthorized: u64,
    /// Allocations refused because the consultation held its quota.
    pub refused_quota: u64,
    /// Permissions and channel bindings refused for a denied peer.
    pub refused_forbidden_peer: u64,
    /// Requests refused as invalid by RFC 8656 (channel number, family).
    pub refused_invalid: u64,
    /// Datagrams the kernel dropped on the listening socket (a full receive
    /// buffer); `None` where `/proc/net/udp` cannot tell.
    pub receive_buffer_drops: Option<u64>,
}

/// The live counters, shared by the relay's sockets.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent_packets: AtomicU64,
    sent_bytes: AtomicU64,
    received_packets: AtomicU64,
    received_bytes: AtomicU64,
    unauthorized: AtomicU64,
    quota: AtomicU64,
    forbidden_peer: AtomicU64,
    invalid: AtomicU64,
}

impl Counters {
    /// One media payload of `bytes` bytes relayed in `direction`.
    pub(crate) fn media(&self, direction: Direction, bytes: usize) {
        let (packets, total) = match direction {
            Direction::Sent => (&self.sent_packets, &self.sent_bytes),
            Direction::Received => (&self.received_packets, &self.received_bytes),
        };
        packets.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One request refused.
    pub(crate) fn refused(&self, why: &Refusal) {
        let counter = match why {
            Refusal::Unauthorized(_) => &self.unauthorized,
            Refusal::QuotaReached => &self.quota,
            Refusal::ForbiddenPeer(_) => &self.forbidden_peer,
            Refusal::Invalid(_) => &self.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, with `allocations` and `receive_buffer_drops`.
    pub(crate) fn snapshot(
        &self,
        allocations: usize,
        receive_buffer_drops: Option<u64>,
    ) -> RelayStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayStats {
            allocations,
            sent: Totals {
                packets: get(&self.sent_packets),
                bytes: get(&self.sent_bytes),
            },
            received: Totals {
                packets: get(&self.received_packets),
                bytes: get(&self.received_bytes),
            },
            refused_unauthorized: get(&self.unauthorized),
            refused_quota: get(&self.quota),
            refused_forbidden_peer: get(&self.forbidden_peer),
            refused_invalid: get(&self.invalid),
            receive_buffer_drops,
        }
    }
}

/// The `drops` of the UDP sockets bound to local `port`, summed (the relay
/// listens on several sockets of one port), from the text of
/// `/proc/net/udp` or `/proc/net/udp6` (hexadecimal `address:port` in the
/// second column, `drops` in the last); `None` if no socket is on the port.
pub(crate) fn udp_drops(table: &str, port: u16) -> Option<u64> {
    let wanted = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            if !local.ends_with(&wanted) {
                return None;
            }
            fields.last()?.parse::<u64>().ok()
        })
        .reduce(|a, b| a + b)
}

/// The kernel's receive-buffer drops of the UDP sockets on `port` (IPv4 and
/// IPv6 tables), where the system tells.
pub(crate) fn kernel_drops(port: u16) -> Option<u64> {
    let tables: Vec<u64> = ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|table| udp_drops(&table, port))
        .collect();
    (!tables.is_empty()).then(|| tables.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  112: 0100007F:0D96 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 0
  113: 00000000:0D96 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41235 2 0000000000000000 1932
";

    #[test]
    fn drops_are_read_for_the_listening_port() {
        // 0x0D96 = 3478: the relay's listening sockets share the port, and
        // their drops add up.
        assert_eq!(udp_drops(TABLE, 3478), Some(1932));
        assert_eq!(udp_drops(&TABLE.replace(" 0\n", " 7\n"), 3478), Some(1939));
        assert_eq!(udp_drops(TABLE, 3479), None);
        assert_eq!(udp_drops("", 3478), None);
    }

    #[test]
    fn refusals_are_counted_by_kind() {
        let c = Counters::default();
        c.refused(&Refusal::QuotaReached);
        c.refused(&Refusal::Unauthorized("x"));
        c.refused(&Refusal::Unauthorized("y"));
        c.media(Direction::Sent, 100);
        c.media(Direction::Received, 40);
        let s = c.snapshot(3, Some(5));
        assert_eq!(
            (
                s.refused_quota,
                s.refused_unauthorized,
                s.refused_forbidden_peer
            ),
            (1, 2, 0)
        );
        assert_eq!(
            s.sent,
            Totals {
                packets: 1,
                bytes: 100
            }
        );
        assert_eq!(
            s.received,
            Totals {
                packets: 1,
                bytes: 40
            }
        );
        assert_eq!((s.allocations, s.receive_buffer_drops), (3, Some(5)));
    }
}
