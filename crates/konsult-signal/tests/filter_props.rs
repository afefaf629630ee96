//! Property tests for the relay-only filter: for arbitrary SDP with mixed
//! candidates, no non-relay candidate and no client address survives, and
//! every relay candidate of a known relay does (a `typ relay` candidate at
//! any other address is a client's own socket in disguise and is dropped).

use konsult_protocol::CandidatePolicy;
use konsult_signal::filter::{
    filter_candidate, filter_sdp, parse_candidate, Address, CandidateKind, Relays,
};
use proptest::prelude::*;

/// Address fragments that only ever appear in non-relay candidates, related
/// addresses and address lines of the generated input.
const PRIVATE_MARKERS: [&str; 5] = ["10.77.", "192.168.77.", "198.51.100.", "fd77:", ".local"];

fn private_addr() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("10.77.{a}.{b}")),
        (0u8..=255).prop_map(|a| format!("192.168.77.{a}")),
        (0u8..=255).prop_map(|a| format!("198.51.100.{a}")),
        (1u16..0xffff).prop_map(|a| format!("fd77::{a:x}")),
        "[0-9a-f]{8}-[0-9a-f]{4}".prop_map(|u| format!("{u}.local")),
    ]
}

fn relay_addr() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u8..=8).prop_map(|a| format!("203.0.113.{a}")),
        (1u16..=8).prop_map(|a| format!("2001:db8:77::{a:x}")),
    ]
}

/// The relays the server handed out: every address [`relay_addr`] makes.
fn relays() -> Relays {
    Relays::new((1u8..=8).flat_map(|a| {
        [
            format!("203.0.113.{a}").parse().unwrap(),
            format!("2001:db8:77::{a:x}").parse().unwrap(),
        ]
    }))
}

fn extensions() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            (0u8..10).prop_map(|g| format!(" generation {g}")),
            "[a-zA-Z0-9+/]{4,8}".prop_map(|u| format!(" ufrag {u}")),
            (1u8..5).prop_map(|n| format!(" network-id {n}")),
            private_addr().prop_map(|a| format!(" x-addr {a}")),
            private_addr().prop_map(|a| format!(" raddr {a}")),
        ],
        0..4,
    )
    .prop_map(|v| v.concat())
}

fn transport() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("udp"), Just("UDP"), Just("tcp")]
}

/// A candidate attribute (without `a=`), and whether it is a relay one.
fn candidate() -> impl Strategy<Value = (String, bool)> {
    let relay = (
        "[a-zA-Z0-9+/]{1,32}",
        1u16..3,
        transport(),
        1u32..u32::MAX,
        relay_addr(),
        1u16..,
        prop::option::of((private_addr(), 1u16..)),
        extensions(),
    )
        .prop_map(|(f, c, t, pri, addr, port, rel, ext)| {
            let rel = rel
                .map(|(a, p)| format!(" raddr {a} rport {p}"))
                .unwrap_or_default();
            (
                format!("candidate:{f} {c} {t} {pri} {addr} {port} typ relay{rel}{ext}"),
                true,
            )
        });
    let other = (
        "[a-zA-Z0-9+/]{1,32}",
        1u16..3,
        transport(),
        1u32..u32::MAX,
        private_addr(),
        1u16..,
        prop_oneof![
            Just("host"),
            Just("srflx"),
            Just("prflx"),
            Just("HOST"),
            Just("foo"),
            Just("relay")
        ],
        prop::option::of((private_addr(), 1u16..)),
        extensions(),
    )
        .prop_map(|(f, c, t, pri, addr, port, typ, rel, ext)| {
            let rel = rel
                .map(|(a, p)| format!(" raddr {a} rport {p}"))
                .unwrap_or_default();
            (
                format!("candidate:{f} {c} {t} {pri} {addr} {port} typ {typ}{rel}{ext}"),
                false,
            )
        });
    prop_oneof![relay, other]
}

/// One SDP line without its ending, and whether it is a relay candidate
/// that must survive.
fn line() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        4 => (candidate(), prop_oneof![Just("a="), Just("A="), Just(" a=")]).prop_map(|((c, relay), prefix)| {
            let c = if prefix == "A=" { c.replacen("candidate:", "CANDIDATE:", 1) } else { c };
            (format!("{prefix}{c}"), relay)
        }),
        // A non-relay candidate hidden behind a lone CR or other control character.
        1 => (candidate(), prop_oneof![Just("\r"), Just("\u{b}"), Just("\u{0}")])
            .prop_map(|((c, _), sep)| (format!("a=x-y:1{sep}a={c}"), false)),
        1 => private_addr().prop_map(|a| (format!("c=IN IP4 {a}"), false)),
        1 => private_addr().prop_map(|a| (format!("c=IN IP6 {a}"), false)),
        1 => (1u16.., private_addr()).prop_map(|(p, a)| (format!("a=rtcp:{p} IN IP4 {a}"), false)),
        1 => private_addr().prop_map(|a| (format!("o=- 123 2 IN IP4 {a}"), false)),
        1 => private_addr().prop_map(|a| (format!("a=remote-candidates:1 {a} 5000"), false)),
        1 => Just(("a=end-of-candidates".to_string(), false)),
        1 => Just(("a=mid:0".to_string(), false)),
        1 => "[a-z=: -]{0,30}".prop_map(|s| (s, false)),
    ]
}

fn sdp() -> impl Strategy<Value = (String, usize)> {
    prop::collection::vec((line(), prop_oneof![Just("\r\n"), Just("\n")]), 0..30).prop_map(
        |lines| {
            let relays = lines.iter().filter(|((_, relay), _)| *relay).count();
            let mut text = String::from("v=0\r\n");
            for ((l, _), eol) in lines {
                text.push_str(&l);
                text.push_str(eol);
            }
            (text, relays)
        },
    )
}

/// Every fragment of the output that mentions a candidate is a relay
/// candidate whose related address is the null address.
fn assert_only_relay(out: &str) -> Result<usize, TestCaseError> {
    let mut count = 0;
    for piece in out.split(['\r', '\n']) {
        let lower = piece.to_ascii_lowercase();
        if !lower.contains("candidate:") {
            continue;
        }
        let c = parse_candidate(piece.trim_start())
            .map_err(|e| TestCaseError::fail(format!("unparseable survivor ({e}): {piece}")))?;
        prop_assert_eq!(c.kind, CandidateKind::Relay, "{}", piece);
        prop_assert!(
            matches!(c.address, Address::Ip(ip) if relays().contains(ip)),
            "a survivor carries a relay the server handed out: {}",
            piece
        );
        prop_assert!(
            matches!(c.related_address, None | Some("0.0.0.0") | Some("::")),
            "{}",
            piece
        );
        count += 1;
    }
    Ok(count)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn relay_only_sdp_keeps_exactly_the_relay_candidates((input, kept) in sdp()) {
        let out = filter_sdp(&input, CandidatePolicy::RelayOnly, &relays());
        let survivors = assert_only_relay(&out)?;
        prop_assert_eq!(survivors, kept, "every relay candidate survives");
        for marker in PRIVATE_MARKERS {
            prop_assert!(!out.contains(marker), "{} leaked:\n{}", marker, out);
        }
        // Filtering is idempotent.
        prop_assert_eq!(filter_sdp(&out, CandidatePolicy::RelayOnly, &relays()), out.clone());
    }

    #[test]
    fn relay_only_trickle_passes_only_relay((cand, relay) in candidate(), a_prefix in any::<bool>()) {
        let input = if a_prefix { format!("a={cand}") } else { cand };
        match filter_candidate(&input, CandidatePolicy::RelayOnly, &relays()) {
            Some(out) => {
                prop_assert!(relay, "non-relay passed: {}", input);
                prop_assert_eq!(assert_only_relay(&out)?, 1);
                for marker in PRIVATE_MARKERS {
                    prop_assert!(!out.contains(marker), "{} leaked: {}", marker, out);
                }
            }
            None => prop_assert!(!relay, "relay dropped: {}", input),
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_never_yields_non_relay(text in "(\\PC|\r|\n){0,300}") {
        let out = filter_sdp(&text, CandidatePolicy::RelayOnly, &relays());
        assert_only_relay(&out)?;
        let _ = filter_candidate(&text, CandidatePolicy::RelayOnly, &relays());
    }

    #[test]
    fn policy_all_is_the_identity(text in "(\\PC|\r|\n){0,300}") {
        prop_assert_eq!(filter_sdp(&text, CandidatePolicy::All, &relays()), text.clone());
        prop_assert_eq!(filter_candidate(&text, CandidatePolicy::All, &relays()), Some(text));
    }
}
