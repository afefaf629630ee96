//! What one allocation lets through, sans I/O: its permissions and channel
//! bindings with their expiry (RFC 8656 §9, §12), and the lifetimes the
//! relay grants (§7). Every instant comes in as an argument.
//!
//! The relay consults [`Grants`] for every relayed datagram, in both
//! directions, so that an expired permission stops ChannelData as well as
//! Send indications and peer data (the `turn` crate let ChannelData through
//! on a live channel whose permission had expired).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A permission lasts this long unless refreshed (RFC 8656 §9).
pub(crate) const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// An allocation lasts this long when the client asks for less (§7.2).
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The longest allocation lifetime the relay grants (§7.2: one hour).
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// A channel number, once its binding expired, is not given to another
/// peer for this long (§12).
const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);
/// Peers one allocation may hold permissions for, and channels it may
/// bind: far above what a browser uses (one per remote candidate address),
/// and a bound on what one client can make the relay keep.
pub(crate) const MAX_PERMISSIONS: usize = 256;
pub(crate) const MAX_CHANNELS: usize = 256;

/// Maps keyed by what a client sends, with a fast hasher seeded per process.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The lifetime granted for a requested one (Allocate and a non-zero
/// Refresh, RFC 8656 §7.2 and §7.3): the request capped to
/// [`MAX_LIFETIME`], and never below [`DEFAULT_LIFETIME`] (so a client
/// cannot make the relay sweep every few seconds); no LIFETIME asks for the
/// default.
pub(crate) fn granted_lifetime(requested: Option<Duration>) -> Duration {
    requested
        .unwrap_or(DEFAULT_LIFETIME)
        .min(MAX_LIFETIME)
        .max(DEFAULT_LIFETIME)
}

/// Why a ChannelBind cannot be granted (400, §11.2; 508 when full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindConflict {
    /// The channel number is bound, or cooling down, to another peer.
    NumberTaken,
    /// The peer is bound to another channel number.
    PeerBound,
    /// The allocation holds [`MAX_CHANNELS`] or [`MAX_PERMISSIONS`].
    Full,
}

/// The allocation holds [`MAX_PERMISSIONS`] live permissions (508).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

#[derive(Debug, Clone, Copy)]
struct Binding {
    peer: SocketAddr,
    expires: Instant,
}

/// Permissions and channel bindings of one allocation.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    /// Peer IP → when its permission expires.
    permissions: Map<IpAddr, Instant>,
    /// Channel number → binding (also expired ones, while cooling down).
    channels: Map<u16, Binding>,
    /// Peer transport address → its channel number.
    by_peer: Map<SocketAddr, u16>,
}

impl Grants {
    /// Whether `count` new permissions fit (expired ones are forgotten
    /// first).
    pub(crate) fn room_for(&mut self, now: Instant, ips: &[IpAddr]) -> Result<(), Full> {
        let new = ips
            .iter()
            .filter(|ip| !self.permissions.contains_key(ip))
            .count();
        if self.permissions.len() + new > MAX_PERMISSIONS {
            self.prune(now);
        }
        let new = ips
            .iter()
            .filter(|ip| !self.permissions.contains_key(ip))
            .count();
        if self.permissions.len() + new > MAX_PERMISSIONS {
            return Err(Full);
        }
        Ok(())
    }

    /// Installs or refreshes the permission for `ip` (CreatePermission;
    /// check [`Grants::room_for`] first).
    pub(crate) fn permit(&mut self, now: Instant, ip: IpAddr) {
        self.permissions.insert(ip, now + PERMISSION_LIFETIME);
    }

    /// Whether datagrams to and from `ip` may be relayed at `now`.
    pub(crate) fn permitted(&self, now: Instant, ip: IpAddr) -> bool {
        self.permissions
            .get(&ip)
            .is_some_and(|expires| now < *expires)
    }

    /// Binds channel `number` to `peer` or refreshes the binding for
    /// `lifetime`, and installs or refreshes the permission for its IP
    /// (ChannelBind, §11.2).
    pub(crate) fn bind(
        &mut self,
        now: Instant,
        number: u16,
        peer: SocketAddr,
        lifetime: Duration,
    ) -> Result<(), BindConflict> {
        if let Some(binding) = self.channels.get(&number) {
            let cooled = binding.expires + CHANNEL_COOLDOWN <= now;
            if binding.peer != peer && !cooled {
                return Err(BindConflict::NumberTaken);
            }
        }
        let new_number = !self.channels.contains_key(&number);
        if new_number && self.channels.len() >= MAX_CHANNELS {
            self.prune(now);
            if self.channels.len() >= MAX_CHANNELS {
                return Err(BindConflict::Full);
            }
        }
        if self.room_for(now, &[peer.ip()]).is_err() {
            return Err(BindConflict::Full);
        }
        if let Some(bound) = self.by_peer.get(&peer) {
            let live = self
                .channels
                .get(bound)
                .is_some_and(|b| b.peer == peer && now < b.expires + CHANNEL_COOLDOWN);
            if *bound != number && live {
                return Err(BindConflict::PeerBound);
            }
        }
        if let Some(old) = self.channels.insert(
            number,
            Binding {
                peer,
                expires: now + lifetime,
            },
        ) {
            if old.peer != peer {
                self.by_peer.remove(&old.peer);
            }
        }
        self.by_peer.insert(peer, number);
        self.permit(now, peer.ip());
        Ok(())
    }

    /// The peer of channel `number`, if both the binding and the peer's
    /// permission are live at `now`: ChannelData from the client goes there
    /// (with no further check).
    pub(crate) fn channel_peer(&self, now: Instant, number: u16) -> Option<SocketAddr> {
        let binding = self.channels.get(&number)?;
        (now < binding.expires && self.permitted(now, binding.peer.ip())).then_some(binding.peer)
    }

    /// The live channel bound to `peer` at `now`: data from it goes to the
    /// client as ChannelData on that channel, else as a Data indication.
    pub(crate) fn peer_channel(&self, now: Instant, peer: SocketAddr) -> Option<u16> {
        let number = *self.by_peer.get(&peer)?;
        let binding = self.channels.get(&number)?;
        (binding.peer == peer && now < binding.expires).then_some(number)
    }

    /// Forgets expired permissions and bindings past their cool-down.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.permissions.retain(|_, expires| now < *expires);
        let by_peer = &mut self.by_peer;
        self.channels.retain(|_, binding| {
            let keep = now < binding.expires + CHANNEL_COOLDOWN;
            if !keep {
                by_peer.remove(&binding.peer);
            }
            keep
        });
    }

    /// Live permissions, for tests and bounds.
    #[cfg(test)]
    fn permission_count(&self) -> usize {
        self.permissions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const BIND: Duration = Duration::from_secs(600);

    #[test]
    fn lifetimes_are_capped_and_floored() {
        assert_eq!(granted_lifetime(None), DEFAULT_LIFETIME);
        assert_eq!(
            granted_lifetime(Some(Duration::from_secs(5))),
            DEFAULT_LIFETIME
        );
        assert_eq!(
            granted_lifetime(Some(Duration::from_secs(1200))),
            Duration::from_secs(1200)
        );
        assert_eq!(
            granted_lifetime(Some(Duration::from_secs(86_400))),
            MAX_LIFETIME
        );
    }

    #[test]
    fn permissions_expire_after_five_minutes_unless_refreshed() {
        let t0 = Instant::now();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let mut g = Grants::default();
        assert!(!g.permitted(t0, ip));
        g.permit(t0, ip);
        assert!(g.permitted(t0 + Duration::from_secs(299), ip));
        assert!(!g.permitted(t0 + PERMISSION_LIFETIME, ip));
        g.permit(t0 + Duration::from_secs(200), ip);
        assert!(g.permitted(t0 + Duration::from_secs(400), ip));
        g.prune(t0 + Duration::from_secs(600));
        assert_eq!(g.permission_count(), 0);
    }

    #[test]
    fn channel_data_stops_when_the_permission_expires_though_the_binding_lives() {
        let t0 = Instant::now();
        let p = peer("198.51.100.7:4000");
        let mut g = Grants::default();
        g.bind(t0, 0x4000, p, BIND).unwrap();
        assert_eq!(g.channel_peer(t0, 0x4000), Some(p));
        assert_eq!(g.peer_channel(t0, p), Some(0x4000));
        // Permission (5 min) lapses before the binding (10 min).
        let later = t0 + Duration::from_secs(301);
        assert_eq!(g.channel_peer(later, 0x4000), None);
        assert!(!g.permitted(later, p.ip()));
        // A CreatePermission revives it.
        g.permit(later, p.ip());
        assert_eq!(g.channel_peer(later, 0x4000), Some(p));
        // The binding itself expires after ten minutes.
        assert_eq!(g.channel_peer(t0 + BIND, 0x4000), None);
        assert_eq!(g.peer_channel(t0 + BIND, p), None);
    }

    #[test]
    fn one_allocation_holds_a_bounded_number_of_permissions_and_channels() {
        let t0 = Instant::now();
        let mut g = Grants::default();
        let ips: Vec<IpAddr> = (0..MAX_PERMISSIONS as u32)
            .map(|i| IpAddr::from((0xC633_6400u32 + i).to_be_bytes()))
            .collect();
        assert_eq!(g.room_for(t0, &ips), Ok(()));
        for ip in &ips {
            g.permit(t0, *ip);
        }
        let one_more: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(g.room_for(t0, &[one_more]), Err(Full));
        // Refreshing held ones still fits; once they expire there is room.
        assert_eq!(g.room_for(t0, &ips[..10]), Ok(()));
        assert_eq!(g.room_for(t0 + PERMISSION_LIFETIME, &[one_more]), Ok(()));

        let mut g = Grants::default();
        for n in 0..MAX_CHANNELS as u16 {
            let peer = SocketAddr::new(one_more, 1000 + n);
            g.bind(t0, 0x4000 + n, peer, BIND).unwrap();
        }
        let peer = SocketAddr::new(one_more, 9);
        assert_eq!(g.bind(t0, 0x5000, peer, BIND), Err(BindConflict::Full));
    }

    #[test]
    fn a_channel_and_a_peer_are_bound_once_and_numbers_cool_down() {
        let t0 = Instant::now();
        let (a, b) = (peer("198.51.100.7:4000"), peer("198.51.100.8:4000"));
        let mut g = Grants::default();
        g.bind(t0, 0x4000, a, BIND).unwrap();
        // Refreshing the same binding is fine.
        g.bind(t0 + Duration::from_secs(60), 0x4000, a, BIND)
            .unwrap();
        assert_eq!(g.bind(t0, 0x4000, b, BIND), Err(BindConflict::NumberTaken));
        assert_eq!(g.bind(t0, 0x4001, a, BIND), Err(BindConflict::PeerBound));
        // Expired but cooling down: still not another peer's.
        let expired = t0 + Duration::from_secs(60) + BIND;
        assert_eq!(
            g.bind(expired, 0x4000, b, BIND),
            Err(BindConflict::NumberTaken)
        );
        let cooled = expired + CHANNEL_COOLDOWN;
        g.bind(cooled, 0x4000, b, BIND).unwrap();
        assert_eq!(g.channel_peer(cooled, 0x4000), Some(b));
        assert_eq!(g.peer_channel(cooled, a), None);
        // And `a` may take another number now.
        g.bind(cooled, 0x4001, a, BIND).unwrap();
        g.prune(cooled + BIND + CHANNEL_COOLDOWN);
        assert_eq!(g.channel_peer(cooled, 0x4000), None);
    }
}
