//! Which peer addresses the relay refuses to talk to.
//!
//! A TURN relay sends datagrams wherever its authenticated clients ask. Left
//! open, anyone holding a credential could use it to reach the relay host's
//! own services (loopback), the clinic's or the hosting provider's internal
//! network (private ranges, link-local cloud metadata at 169.254.169.254),
//! or to spray multicast and broadcast. A WebRTC peer of a consultation is
//! never on such an address *as seen from the relay*: both sides reach the
//! relay over the public internet. So these ranges are denied by default,
//! and the only escape hatch is [`PeerPolicy::allow_loopback`], for tests
//! that run every peer on one machine.
//!
//! The check is a pure function, [`is_denied_peer`], with the reasons in
//! [`DeniedRange`]; the relay applies it to every CreatePermission,
//! ChannelBind and Send (see the crate docs for where).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// What the relay allows beyond public unicast addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Allow peers on loopback (127.0.0.0/8, ::1 and their IPv4-mapped
    /// forms). Off by default; tests that run the relay and both peers on
    /// 127.0.0.1 turn it on. Never turn it on in production: it opens the
    /// relay host's own services to every credential holder.
    pub allow_loopback: bool,
}

impl PeerPolicy {
    /// The production policy: only public unicast peers.
    pub const STRICT: Self = Self {
        allow_loopback: false,
    };
}

/// Why a peer address is refused: the special-purpose range it falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeniedRange {
    /// 0.0.0.0 or `::`.
    Unspecified,
    /// 0.0.0.0/8, "this network" (RFC 791, RFC 1122).
    ThisNetwork,
    /// 10/8, 172.16/12, 192.168/16 (RFC 1918).
    Private,
    /// 100.64/10, carrier-grade NAT shared space (RFC 6598).
    SharedAddressSpace,
    /// 127/8 or `::1`, unless [`PeerPolicy::allow_loopback`].
    Loopback,
    /// 169.254/16 or fe80::/10 (includes cloud metadata endpoints).
    LinkLocal,
    /// 192.0.0.0/24 or 2001::/23, IETF protocol assignments (RFC 6890).
    /// The IPv6 block also holds Teredo and ORCHID, which a WebRTC peer
    /// does not use.
    IetfProtocolAssignments,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18/15 or 2001:2::/48 (RFC 2544, RFC 5180).
    Benchmarking,
    /// 224/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255, limited broadcast.
    Broadcast,
    /// 240/4, 192.88.99/24 (6to4 relay anycast), 64:ff9b:1::/48 (local-use
    /// NAT64), 5f00::/16 (SRv6 SIDs): reserved or not globally routable.
    Reserved,
    /// 2002::/16, 6to4 (deprecated by RFC 7526): it would tunnel to an
    /// arbitrary embedded IPv4 address.
    SixToFour,
    /// fc00::/7, unique local (RFC 4193).
    UniqueLocal,
    /// fec0::/10, site-local (deprecated by RFC 3879).
    SiteLocal,
    /// Any IPv6 address outside 2000::/3, the only block IANA hands out as
    /// global unicast (covers ::/96 IPv4-compatible and 100::/64 discard).
    NotGlobalUnicast,
}

use DeniedRange as D;

/// IPv4 special-purpose ranges, most specific first where they overlap.
const V4_DENIED: &[(Ipv4Net, DeniedRange)] = &[
    (v4(0, 0, 0, 0, 32), D::Unspecified),
    (v4(0, 0, 0, 0, 8), D::ThisNetwork),
    (v4(10, 0, 0, 0, 8), D::Private),
    (v4(100, 64, 0, 0, 10), D::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), D::Loopback),
    (v4(169, 254, 0, 0, 16), D::LinkLocal),
    (v4(172, 16, 0, 0, 12), D::Private),
    (v4(192, 0, 0, 0, 24), D::IetfProtocolAssignments),
    (v4(192, 0, 2, 0, 24), D::Documentation),
    (v4(192, 88, 99, 0, 24), D::Reserved),
    (v4(192, 168, 0, 0, 16), D::Private),
    (v4(198, 18, 0, 0, 15), D::Benchmarking),
    (v4(198, 51, 100, 0, 24), D::Documentation),
    (v4(203, 0, 113, 0, 24), D::Documentation),
    (v4(224, 0, 0, 0, 4), D::Multicast),
    (v4(255, 255, 255, 255, 32), D::Broadcast),
    (v4(240, 0, 0, 0, 4), D::Reserved),
];

/// IPv6 special-purpose ranges inside or outside 2000::/3, checked after
/// `::`, `::1`, IPv4-mapped and NAT64 addresses; most specific first.
const V6_DENIED: &[(Ipv6Net, DeniedRange)] = &[
    (v6([0x0064, 0xff9b, 1, 0, 0, 0, 0, 0], 48), D::Reserved),
    (v6([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48), D::Benchmarking),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        D::IetfProtocolAssignments,
    ),
    (v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32), D::Documentation),
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), D::SixToFour),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), D::Documentation),
    (v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), D::Reserved),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), D::UniqueLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), D::LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), D::SiteLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), D::Multicast),
];

const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
/// RFC 6052 well-known NAT64 prefix: the low 32 bits are an IPv4 address.
const NAT64_WELL_KNOWN: Ipv6Net = v6([0x0064, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// Whether the relay must refuse `ip` as a peer under `policy`.
pub fn is_denied_peer(ip: IpAddr, policy: &PeerPolicy) -> bool {
    denied_range(ip, policy).is_some()
}

/// The special-purpose range `ip` falls in, if the relay must refuse it as a
/// peer under `policy`; `None` for a peer it may relay to.
///
/// IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses
/// are judged by the IPv4 address they carry, so they cannot smuggle a
/// private or loopback destination past the IPv4 rules.
pub fn denied_range(ip: IpAddr, policy: &PeerPolicy) -> Option<DeniedRange> {
    match ip {
        IpAddr::V4(v4) => denied_v4(v4, policy),
        IpAddr::V6(v6) => denied_v6(v6, policy),
    }
}

fn denied_v4(ip: Ipv4Addr, policy: &PeerPolicy) -> Option<DeniedRange> {
    let range = V4_DENIED
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, range)| *range)?;
    if range == D::Loopback && policy.allow_loopback {
        None
    } else {
        Some(range)
    }
}

fn denied_v6(ip: Ipv6Addr, policy: &PeerPolicy) -> Option<DeniedRange> {
    if ip.is_unspecified() {
        return Some(D::Unspecified);
    }
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some(D::Loopback);
    }
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return denied_v4(mapped, policy);
    }
    if NAT64_WELL_KNOWN.contains(&ip) {
        let [.., a, b, c, d] = ip.octets();
        return denied_v4(Ipv4Addr::new(a, b, c, d), policy);
    }
    if let Some((_, range)) = V6_DENIED.iter().find(|(net, _)| net.contains(&ip)) {
        return Some(*range);
    }
    if GLOBAL_UNICAST.contains(&ip) {
        None
    } else {
        Some(D::NotGlobalUnicast)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const STRICT: PeerPolicy = PeerPolicy::STRICT;
    const LAX: PeerPolicy = PeerPolicy {
        allow_loopback: true,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn check(addr: &str, expected: Option<DeniedRange>) {
        assert_eq!(denied_range(ip(addr), &STRICT), expected, "{addr}");
        assert_eq!(
            is_denied_peer(ip(addr), &STRICT),
            expected.is_some(),
            "{addr}"
        );
    }

    /// Every IPv4 range: its first and last address are denied for the named
    /// reason.
    #[test]
    fn every_v4_range_is_denied_at_both_ends() {
        for (net, range) in V4_DENIED {
            for addr in [net.network(), net.broadcast()] {
                let expected = match (addr, *range) {
                    // 0.0.0.0 is the more specific "unspecified" entry.
                    (a, D::ThisNetwork) if a.is_unspecified() => D::Unspecified,
                    // 255.255.255.255 is the more specific broadcast entry.
                    (a, D::Reserved) if a.is_broadcast() => D::Broadcast,
                    _ => *range,
                };
                assert_eq!(
                    denied_range(IpAddr::V4(addr), &STRICT),
                    Some(expected),
                    "{addr}"
                );
            }
        }
    }

    #[test]
    fn every_v6_range_is_denied_at_both_ends() {
        for (net, range) in V6_DENIED {
            for addr in [net.network(), net.broadcast()] {
                assert_eq!(
                    denied_range(IpAddr::V6(addr), &STRICT),
                    Some(*range),
                    "{addr}"
                );
            }
        }
    }

    /// The addresses just outside each denied IPv4 block, and well-known
    /// public resolvers, are allowed.
    #[test]
    fn v4_neighbours_and_public_addresses_are_allowed() {
        for addr in [
            "1.0.0.0",
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
        ] {
            check(addr, None);
        }
    }

    #[test]
    fn v4_named_examples() {
        check("0.0.0.0", Some(D::Unspecified));
        check("0.1.2.3", Some(D::ThisNetwork));
        check("10.1.2.3", Some(D::Private));
        check("172.20.0.1", Some(D::Private));
        check("192.168.1.1", Some(D::Private));
        check("100.100.100.100", Some(D::SharedAddressSpace));
        check("127.0.0.1", Some(D::Loopback));
        check("127.255.255.254", Some(D::Loopback));
        check("169.254.169.254", Some(D::LinkLocal));
        check("192.0.0.8", Some(D::IetfProtocolAssignments));
        check("192.0.2.1", Some(D::Documentation));
        check("198.51.100.7", Some(D::Documentation));
        check("203.0.113.9", Some(D::Documentation));
        check("198.19.0.1", Some(D::Benchmarking));
        check("224.0.0.1", Some(D::Multicast));
        check("239.255.255.250", Some(D::Multicast));
        check("240.0.0.1", Some(D::Reserved));
        check("255.255.255.254", Some(D::Reserved));
        check("255.255.255.255", Some(D::Broadcast));
    }

    #[test]
    fn v6_named_examples_and_neighbours() {
        check("::", Some(D::Unspecified));
        check("::1", Some(D::Loopback));
        check("::2", Some(D::NotGlobalUnicast));
        check("::8.8.8.8", Some(D::NotGlobalUnicast)); // IPv4-compatible, deprecated
        check("100::1", Some(D::NotGlobalUnicast)); // discard-only
        check(
            "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(D::NotGlobalUnicast),
        );
        check("4000::1", Some(D::NotGlobalUnicast));
        check("2000::", None);
        check("3ffe:ffff::1", None);
        check("3fff::1", Some(D::Documentation));
        check("3fff:1000::", None);
        check("2001::1", Some(D::IetfProtocolAssignments)); // Teredo
        check("2001:1::2", Some(D::IetfProtocolAssignments));
        check("2001:2::1", Some(D::Benchmarking));
        check("2001:1ff:ffff::", Some(D::IetfProtocolAssignments));
        check("2001:200::1", None);
        check("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None);
        check("2001:db8::1", Some(D::Documentation));
        check("2001:db9::", None);
        check("2002:c0a8:101::1", Some(D::SixToFour));
        check("2003::1", None);
        check("2a00:1450:4001:81c::200e", None);
        check("2606:4700:4700::1111", None);
        check("5f00::1", Some(D::Reserved));
        check("64:ff9b:1::1", Some(D::Reserved));
        check("fc00::1", Some(D::UniqueLocal));
        check("fdff:ffff::1", Some(D::UniqueLocal));
        check("fe80::1", Some(D::LinkLocal));
        check("febf:ffff::1", Some(D::LinkLocal));
        check("fec0::1", Some(D::SiteLocal));
        check("ff02::1", Some(D::Multicast));
        check("ff0e::1", Some(D::Multicast));
    }

    #[test]
    fn embedded_ipv4_is_judged_by_ipv4_rules() {
        check("::ffff:8.8.8.8", None);
        check("::ffff:10.0.0.1", Some(D::Private));
        check("::ffff:127.0.0.1", Some(D::Loopback));
        check("::ffff:169.254.169.254", Some(D::LinkLocal));
        check("64:ff9b::8.8.8.8", None);
        check("64:ff9b::192.168.0.1", Some(D::Private));
        check("64:ff9b::127.0.0.1", Some(D::Loopback));
    }

    #[test]
    fn allow_loopback_opens_loopback_only() {
        for addr in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_denied_peer(ip(addr), &STRICT), "{addr}");
            assert!(!is_denied_peer(ip(addr), &LAX), "{addr}");
        }
        for addr in [
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "fe80::1",
            "169.254.1.1",
            "224.0.0.1",
        ] {
            assert!(is_denied_peer(ip(addr), &LAX), "{addr}");
        }
        assert_eq!(PeerPolicy::default(), STRICT);
    }

    fn in_v4_net(net: Ipv4Net) -> impl Strategy<Value = Ipv4Addr> {
        let base = u32::from(net.network());
        let size = 1u64 << (32 - net.prefix_len());
        (0..size).prop_map(move |off| Ipv4Addr::from(base + off as u32))
    }

    fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
        any::<u128>().prop_map(Ipv6Addr::from)
    }

    proptest! {
        /// Everything in the RFC 1918, CGNAT, link-local and loopback blocks is
        /// denied, whatever the host part.
        #[test]
        fn private_blocks_are_denied_throughout(
            addr in prop_oneof![
                in_v4_net(v4(10, 0, 0, 0, 8)),
                in_v4_net(v4(172, 16, 0, 0, 12)),
                in_v4_net(v4(192, 168, 0, 0, 16)),
                in_v4_net(v4(100, 64, 0, 0, 10)),
                in_v4_net(v4(169, 254, 0, 0, 16)),
                in_v4_net(v4(127, 0, 0, 0, 8)),
                in_v4_net(v4(224, 0, 0, 0, 3)),
            ]
        ) {
            prop_assert!(is_denied_peer(IpAddr::V4(addr), &STRICT));
            prop_assert!(is_denied_peer(IpAddr::V6(addr.to_ipv6_mapped()), &STRICT));
        }

        /// Every address the standard library classifies as special is denied.
        #[test]
        fn agrees_with_std_classification_v4(bits in any::<u32>()) {
            let a = Ipv4Addr::from(bits);
            if a.is_private() || a.is_loopback() || a.is_link_local() || a.is_multicast()
                || a.is_broadcast() || a.is_unspecified() || a.is_documentation()
            {
                prop_assert!(is_denied_peer(IpAddr::V4(a), &STRICT), "{}", a);
            }
        }

        #[test]
        fn agrees_with_std_classification_v6(a in any_v6()) {
            if a.is_unspecified() || a.is_loopback() || a.is_multicast()
                || a.is_unique_local() || a.is_unicast_link_local()
            {
                prop_assert!(is_denied_peer(IpAddr::V6(a), &STRICT), "{}", a);
            }
            // Outside 2000::/3 only mapped/NAT64 forms can be allowed.
            let top = a.segments()[0];
            if !(0x2000..0x4000).contains(&top)
                && a.to_ipv4_mapped().is_none()
                && !NAT64_WELL_KNOWN.contains(&a)
            {
                prop_assert!(is_denied_peer(IpAddr::V6(a), &STRICT), "{}", a);
            }
        }

        /// An IPv4 address and its mapped and NAT64 forms get one verdict.
        #[test]
        fn mapped_forms_share_the_ipv4_verdict(bits in any::<u32>(), lax in any::<bool>()) {
            let policy = PeerPolicy { allow_loopback: lax };
            let a = Ipv4Addr::from(bits);
            let [p, q, r, s] = a.octets();
            let nat64 = Ipv6Addr::new(
                0x64, 0xff9b, 0, 0, 0, 0,
                u16::from_be_bytes([p, q]), u16::from_be_bytes([r, s]),
            );
            let direct = is_denied_peer(IpAddr::V4(a), &policy);
            prop_assert_eq!(is_denied_peer(IpAddr::V6(a.to_ipv6_mapped()), &policy), direct);
            prop_assert_eq!(is_denied_peer(IpAddr::V6(nat64), &policy), direct);
        }

        /// `allow_loopback` changes the verdict for loopback addresses and
        /// for nothing else.
        #[test]
        fn allow_loopback_changes_nothing_but_loopback(
            addr in prop_oneof![any::<u32>().prop_map(|b| IpAddr::V4(b.into())),
                                any_v6().prop_map(IpAddr::V6)]
        ) {
            let strict = denied_range(addr, &STRICT);
            let lax = denied_range(addr, &LAX);
            if strict == Some(D::Loopback) {
                prop_assert_eq!(lax, None);
            } else {
                prop_assert_eq!(lax, strict);
            }
        }
    }
}
