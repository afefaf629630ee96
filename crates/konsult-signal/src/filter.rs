//! Relay-only filtering of SDP and trickled ICE candidates.
//!
//! Under [`CandidatePolicy::RelayOnly`] the server must make sure neither
//! participant learns the other's IP address, even if a client is
//! misconfigured or misbehaves. This module is pure: it parses ICE candidate
//! attributes by the grammar of RFC 8839 section 5.1 and rewrites text.
//!
//! What [`filter_sdp`] does under `RelayOnly`, line by line (CRLF and LF both
//! accepted, the line ending of each line kept):
//!
//! - `a=candidate:` lines are kept only if they parse, are `typ relay` and
//!   their address is one of the [`Relays`] the server hands out (so a
//!   client cannot announce its own socket as a "relay" candidate and have
//!   the other side send checks straight to it). In kept lines the
//!   related address (`raddr`, the client's own mapped address) becomes
//!   `0.0.0.0`/`::` and `rport` 0, and only the well-known extensions
//!   `generation`, `ufrag`, `network-id`, `network-cost` and `tcptype` with
//!   well-formed values are kept. Unparseable candidate lines are dropped
//!   (fail closed).
//! - `c=` and `a=rtcp:` addresses become the null address of their family
//!   (browsers ignore them when ICE is used; they may carry the default
//!   candidate's address). The `o=` line's address becomes the null address too.
//! - The ports of `m=` and `a=rtcp:` lines (the default candidate's ports,
//!   which may be a host candidate's) become 9, the discard port browsers
//!   themselves use when no candidate is known; a port 0 (a rejected or
//!   bundle-only section) stays 0.
//! - `a=remote-candidates:` lines (they list addresses) are dropped.
//! - Any line with a control character inside it (for example a lone CR that
//!   some parser might take as a line break) is dropped.
//! - `a=end-of-candidates` and all other lines pass unchanged.
//!
//! [`filter_candidate`] applies the same candidate rule to one trickled
//! candidate. Under [`CandidatePolicy::All`] both functions change nothing.

use konsult_protocol::{CandidatePolicy, IceServer};
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

/// The relay addresses a relay-only candidate may carry: the embedded
/// relay's advertised address and those of configured external relays.
/// Empty means no relay candidate passes (fail closed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relays {
    ips: BTreeSet<IpAddr>,
}

impl Relays {
    /// The relays at `ips`.
    pub fn new(ips: impl IntoIterator<Item = IpAddr>) -> Relays {
        Relays {
            ips: ips.into_iter().map(canonical).collect(),
        }
    }

    /// True if `ip` is one of the relays (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ips.contains(&canonical(ip))
    }

    /// The addresses, in order.
    pub fn iter(&self) -> impl Iterator<Item = &IpAddr> {
        self.ips.iter()
    }

    /// Adds the relays at `ips`.
    pub fn extend(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        self.ips.extend(ips.into_iter().map(canonical));
    }

    /// The relay addresses in the `turn:` and `turns:` URLs of `servers`
    /// given as IP addresses (a host name says nothing a candidate's
    /// address can be checked against).
    pub fn in_ice_servers(servers: &[IceServer]) -> impl Iterator<Item = IpAddr> + '_ {
        servers
            .iter()
            .flat_map(|s| s.urls.iter())
            .filter_map(|url| turn_url_ip(url))
    }
}

/// The host of a `turn:` or `turns:` URL (RFC 7065) when it is an IP
/// address: `turn:203.0.113.10:3478?transport=udp`, `turns:[2001:db8::1]`.
fn turn_url_ip(url: &str) -> Option<IpAddr> {
    let rest = url
        .strip_prefix("turn:")
        .or_else(|| url.strip_prefix("turns:"))?;
    let hostport = rest.split('?').next()?;
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => hostport.split(':').next()?,
    };
    host.parse().ok()
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The `typ` of an ICE candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateKind<'a> {
    /// `host`.
    Host,
    /// `srflx`.
    Srflx,
    /// `prflx`.
    Prflx,
    /// `relay`.
    Relay,
    /// Another token (allowed by the grammar, not defined by RFC 8445).
    Other(&'a str),
}

/// The `connection-address` of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address<'a> {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A host name; `.local` names are mDNS-obfuscated host candidates.
    Fqdn(&'a str),
}

impl Address<'_> {
    /// True for an mDNS name (`….local`).
    pub fn is_mdns(&self) -> bool {
        match self {
            Address::Ip(_) => false,
            Address::Fqdn(name) => {
                let name = name.trim_end_matches('.');
                name.len() >= 6 && name[name.len() - 6..].eq_ignore_ascii_case(".local")
            }
        }
    }
}

/// A parsed `candidate` attribute (RFC 8839 section 5.1). Borrowed from the
/// input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// `foundation`: 1 to 32 ice-chars.
    pub foundation: &'a str,
    /// `component-id`: 1 to 3 digits.
    pub component: u16,
    /// `transport`: `UDP`, `TCP`, or another token, as written.
    pub transport: &'a str,
    /// `priority`: 1 to 10 digits.
    pub priority: u64,
    /// `connection-address`.
    pub address: Address<'a>,
    /// `port`.
    pub port: u16,
    /// `typ`.
    pub kind: CandidateKind<'a>,
    /// `raddr`, as written.
    pub related_address: Option<&'a str>,
    /// `rport`.
    pub related_port: Option<u16>,
    /// Extension attributes (`name value` pairs) in order.
    pub extensions: Vec<(&'a str, &'a str)>,
}

/// Why a candidate attribute did not parse. Never carries the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CandidateError {
    /// Does not start with `candidate:` (optionally after `a=`).
    #[error("not a candidate attribute")]
    NotCandidate,
    /// A character outside visible ASCII and single spaces.
    #[error("candidate contains a forbidden character")]
    ForbiddenCharacter,
    /// Fewer fields than the grammar requires, or an empty field.
    #[error("candidate is missing fields")]
    MissingFields,
    /// A field does not match its rule in the grammar.
    #[error("candidate field `{0}` is invalid")]
    InvalidField(&'static str),
}

fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn is_token_char(b: u8) -> bool {
    // RFC 3261 token.
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn digits<T: std::str::FromStr>(
    s: &str,
    max_len: usize,
    field: &'static str,
) -> Result<T, CandidateError> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CandidateError::InvalidField(field));
    }
    s.parse().map_err(|_| CandidateError::InvalidField(field))
}

fn parse_address(s: &str) -> Result<Address<'_>, CandidateError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Address::Ip(ip));
    }
    let fqdn_ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && s.bytes().any(|b| b.is_ascii_alphabetic() || b == b'-');
    if fqdn_ok {
        Ok(Address::Fqdn(s))
    } else {
        Err(CandidateError::InvalidField("connection-address"))
    }
}

/// Parses `candidate:…` or `a=candidate:…` (no line ending).
pub fn parse_candidate(attr: &str) -> Result<Candidate<'_>, CandidateError> {
    let body = strip_prefix_ci(attr, "a=").unwrap_or(attr);
    let body = strip_prefix_ci(body, "candidate:").ok_or(CandidateError::NotCandidate)?;
    if !body.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(CandidateError::ForbiddenCharacter);
    }
    let fields: Vec<&str> = body.split(' ').collect();
    if fields.len() < 8 || fields.iter().any(|f| f.is_empty()) {
        return Err(CandidateError::MissingFields);
    }
    let foundation = fields[0];
    if foundation.len() > 32 || !foundation.bytes().all(is_ice_char) {
        return Err(CandidateError::InvalidField("foundation"));
    }
    let component: u16 = digits(fields[1], 3, "component-id")?;
    let transport = fields[2];
    if !transport.bytes().all(is_token_char) {
        return Err(CandidateError::InvalidField("transport"));
    }
    let priority: u64 = digits(fields[3], 10, "priority")?;
    let address = parse_address(fields[4])?;
    let port: u16 = digits(fields[5], 5, "port")?;
    if !fields[6].eq_ignore_ascii_case("typ") {
        return Err(CandidateError::InvalidField("typ"));
    }
    let typ = fields[7];
    if !typ.bytes().all(is_token_char) {
        return Err(CandidateError::InvalidField("cand-type"));
    }
    let kind = match typ.to_ascii_lowercase().as_str() {
        "host" => CandidateKind::Host,
        "srflx" => CandidateKind::Srflx,
        "prflx" => CandidateKind::Prflx,
        "relay" => CandidateKind::Relay,
        _ => CandidateKind::Other(typ),
    };
    let mut rest = &fields[8..];
    let mut related_address = None;
    let mut related_port = None;
    if rest.len() >= 2 && rest[0].eq_ignore_ascii_case("raddr") {
        parse_address(rest[1]).map_err(|_| CandidateError::InvalidField("raddr"))?;
        related_address = Some(rest[1]);
        rest = &rest[2..];
    }
    if rest.len() >= 2 && rest[0].eq_ignore_ascii_case("rport") {
        related_port = Some(digits(rest[1], 5, "rport")?);
        rest = &rest[2..];
    }
    if rest.len() % 2 != 0 {
        return Err(CandidateError::MissingFields);
    }
    let mut extensions = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks(2) {
        if !pair[0].bytes().all(is_token_char) {
            return Err(CandidateError::InvalidField("extension-att-name"));
        }
        extensions.push((pair[0], pair[1]));
    }
    Ok(Candidate {
        foundation,
        component,
        transport,
        priority,
        address,
        port,
        kind,
        related_address,
        related_port,
        extensions,
    })
}

impl fmt::Display for Candidate<'_> {
    /// Writes `candidate:…` (without `a=`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "candidate:{} {} {} {} ",
            self.foundation, self.component, self.transport, self.priority
        )?;
        match self.address {
            Address::Ip(ip) => write!(f, "{ip}")?,
            Address::Fqdn(name) => f.write_str(name)?,
        }
        let typ = match self.kind {
            CandidateKind::Host => "host",
            CandidateKind::Srflx => "srflx",
            CandidateKind::Prflx => "prflx",
            CandidateKind::Relay => "relay",
            CandidateKind::Other(t) => t,
        };
        write!(f, " {} typ {typ}", self.port)?;
        if let Some(raddr) = self.related_address {
            write!(f, " raddr {raddr}")?;
        }
        if let Some(rport) = self.related_port {
            write!(f, " rport {rport}")?;
        }
        for (name, value) in &self.extensions {
            write!(f, " {name} {value}")?;
        }
        Ok(())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Extensions a browser legitimately puts on a candidate, with a check of
/// their value. Everything else is dropped from relay candidates, so no
/// extension can smuggle an address.
fn safe_extension(name: &str, value: &str) -> bool {
    let all_digits =
        |v: &str| !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit());
    match name.to_ascii_lowercase().as_str() {
        "generation" | "network-id" | "network-cost" => all_digits(value),
        "ufrag" => value.len() <= 256 && value.bytes().all(is_ice_char),
        "tcptype" => ["active", "passive", "so"]
            .iter()
            .any(|t| value.eq_ignore_ascii_case(t)),
        _ => false,
    }
}

/// The relay-only verdict for one candidate attribute: `Some(rewritten
/// candidate:…)` if it may pass, `None` if it must be dropped.
fn relay_only_candidate(attr: &str, relays: &Relays) -> Option<String> {
    let mut cand = parse_candidate(attr).ok()?;
    if cand.kind != CandidateKind::Relay {
        return None;
    }
    // A relay address is a TURN server's: one the server handed out. A name
    // here is not what a browser produces and could be anything.
    match cand.address {
        Address::Ip(ip) if relays.contains(ip) => {}
        _ => return None,
    }
    if let Some(raddr) = cand.related_address {
        let v6 = matches!(raddr.parse::<IpAddr>(), Ok(IpAddr::V6(_)));
        cand.related_address = Some(if v6 { "::" } else { "0.0.0.0" });
        cand.related_port = Some(0);
    } else if cand.related_port.is_some() {
        cand.related_port = Some(0);
    }
    cand.extensions.retain(|(n, v)| safe_extension(n, v));
    Some(cand.to_string())
}

/// Filters one trickled candidate (`RTCIceCandidate.candidate`) under a
/// policy. Returns the text to relay, or `None` when it must be dropped.
/// Under `RelayOnly` the result has no `a=` prefix.
pub fn filter_candidate(
    candidate: &str,
    policy: CandidatePolicy,
    relays: &Relays,
) -> Option<String> {
    match policy {
        CandidatePolicy::All => Some(candidate.to_string()),
        CandidatePolicy::RelayOnly => relay_only_candidate(candidate, relays),
    }
}

/// Filters a whole SDP under a policy (see the module docs).
pub fn filter_sdp(sdp: &str, policy: CandidatePolicy, relays: &Relays) -> String {
    match policy {
        CandidatePolicy::All => sdp.to_string(),
        CandidatePolicy::RelayOnly => {
            let mut out = String::with_capacity(sdp.len());
            for line in sdp.split_inclusive('\n') {
                let (content, eol) = split_eol(line);
                if let Some(kept) = relay_only_line(content, relays) {
                    out.push_str(&kept);
                    out.push_str(eol);
                }
            }
            out
        }
    }
}

/// Splits off `\r\n` or `\n` (whichever ends the line).
fn split_eol(line: &str) -> (&str, &str) {
    if let Some(c) = line.strip_suffix("\r\n") {
        (c, "\r\n")
    } else if let Some(c) = line.strip_suffix('\n') {
        (c, "\n")
    } else {
        (line, "")
    }
}

fn null_address(addrtype: &str) -> &'static str {
    if addrtype.eq_ignore_ascii_case("IP6") {
        "::"
    } else {
        "0.0.0.0"
    }
}

/// The relay-only rule for one SDP line without its line ending.
fn relay_only_line(content: &str, relays: &Relays) -> Option<String> {
    if content.chars().any(|c| c.is_control()) {
        return None;
    }
    let t = content.trim_start();
    if let Some(attr) = strip_prefix_ci(t, "a=") {
        let name = attr.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("candidate") {
            return relay_only_candidate(attr, relays).map(|c| format!("a={c}"));
        }
        if name.eq_ignore_ascii_case("remote-candidates") {
            return None;
        }
        if name.eq_ignore_ascii_case("rtcp") {
            // a=rtcp:<port> [<nettype> <addrtype> <address>]
            let value = attr.split_once(':').map(|(_, v)| v).unwrap_or("");
            let fields: Vec<&str> = value.split_whitespace().collect();
            let addrtype = fields.get(2).copied().unwrap_or("IP4");
            return Some(format!(
                "a=rtcp:9 IN {} {}",
                ip_family(addrtype),
                null_address(addrtype)
            ));
        }
        return Some(content.to_string());
    }
    if let Some(value) = strip_prefix_ci(t, "m=") {
        // m=<media> <port>[/<count>] <proto> <fmt> ...: the port is the
        // default candidate's; 0 (rejected, bundle-only) keeps its meaning.
        let mut fields = value.splitn(3, ' ');
        let (media, port, rest) = (fields.next()?, fields.next()?, fields.next()?);
        let port = if port == "0" || port.starts_with("0/") {
            port
        } else {
            "9"
        };
        return Some(format!("m={media} {port} {rest}"));
    }
    if let Some(value) = strip_prefix_ci(t, "c=") {
        // c=<nettype> <addrtype> <connection-address>
        let addrtype = value.split_whitespace().nth(1).unwrap_or("IP4");
        return Some(format!(
            "c=IN {} {}",
            ip_family(addrtype),
            null_address(addrtype)
        ));
    }
    if let Some(value) = strip_prefix_ci(t, "o=") {
        // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
        let fields: Vec<&str> = value.split(' ').collect();
        if fields.len() < 6 {
            return None;
        }
        return Some(format!(
            "o={} {} {} {} {} {}",
            fields[0],
            fields[1],
            fields[2],
            fields[3],
            fields[4],
            null_address(fields[4])
        ));
    }
    Some(content.to_string())
}

fn ip_family(addrtype: &str) -> &'static str {
    if addrtype.eq_ignore_ascii_case("IP6") {
        "IP6"
    } else {
        "IP4"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relays of these tests: the addresses of `CHROME_RELAY` and `IPV6_RELAY`.
    fn relays() -> Relays {
        Relays::new([
            "203.0.113.5".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
        ])
    }

    const CHROME_HOST: &str = "candidate:842163049 1 udp 1677729535 192.168.1.20 54321 typ host generation 0 ufrag EEtu network-id 1 network-cost 10";
    const CHROME_SRFLX: &str = "candidate:3471623853 1 udp 2122260223 198.51.100.9 61665 typ srflx raddr 192.168.1.20 rport 54321 generation 0 ufrag EEtu network-id 1";
    const CHROME_RELAY: &str = "candidate:1853887674 1 udp 33562367 203.0.113.5 50000 typ relay raddr 198.51.100.9 rport 61665 generation 0 ufrag EEtu network-id 1 network-cost 10";
    const MDNS_HOST: &str = "candidate:1 1 udp 2122260223 3f2a6c1e-1d2b-4c5e-9a7b-0c1d2e3f4a5b.local 60000 typ host generation 0";
    const TCP_HOST: &str =
        "candidate:2 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active generation 0";
    const PRFLX: &str =
        "candidate:3 1 UDP 1845501695 10.1.2.3 40000 typ prflx raddr 0.0.0.0 rport 0";
    const IPV6_RELAY: &str =
        "candidate:4 1 udp 25108479 2001:db8::5 50001 typ relay raddr 2001:db8:1::9 rport 5000";

    #[test]
    fn parses_browser_candidates() {
        let c = parse_candidate(CHROME_SRFLX).unwrap();
        assert_eq!(c.foundation, "3471623853");
        assert_eq!(c.component, 1);
        assert_eq!(c.transport, "udp");
        assert_eq!(c.priority, 2122260223);
        assert_eq!(c.address, Address::Ip("198.51.100.9".parse().unwrap()));
        assert_eq!(c.port, 61665);
        assert_eq!(c.kind, CandidateKind::Srflx);
        assert_eq!(c.related_address, Some("192.168.1.20"));
        assert_eq!(c.related_port, Some(54321));
        assert_eq!(
            c.extensions,
            vec![("generation", "0"), ("ufrag", "EEtu"), ("network-id", "1")]
        );
        assert_eq!(c.to_string(), CHROME_SRFLX);

        let m = parse_candidate(MDNS_HOST).unwrap();
        assert!(m.address.is_mdns());
        assert_eq!(m.kind, CandidateKind::Host);
        assert_eq!(parse_candidate(TCP_HOST).unwrap().transport, "tcp");
        assert_eq!(parse_candidate(PRFLX).unwrap().kind, CandidateKind::Prflx);
        let v6 = parse_candidate(IPV6_RELAY).unwrap();
        assert_eq!(v6.kind, CandidateKind::Relay);
        assert_eq!(v6.address, Address::Ip("2001:db8::5".parse().unwrap()));
    }

    #[test]
    fn accepts_a_prefix_and_other_types() {
        let line = format!("a={CHROME_RELAY}");
        let c = parse_candidate(&line).unwrap();
        assert_eq!(c.kind, CandidateKind::Relay);
        let o = parse_candidate("candidate:1 1 udp 1 203.0.113.1 1 typ foo").unwrap();
        assert_eq!(o.kind, CandidateKind::Other("foo"));
    }

    #[test]
    fn rejects_bad_grammar() {
        use CandidateError::*;
        let cases: &[(&str, CandidateError)] = &[
            ("", NotCandidate),
            ("candidat:1 1 udp 1 1.2.3.4 5 typ host", NotCandidate),
            ("candidate:1 1 udp 1 1.2.3.4 5 typ", MissingFields),
            ("candidate:1  1 udp 1 1.2.3.4 5 typ host", MissingFields),
            (
                "candidate:1 1 udp 1 1.2.3.4 5 typ host generation",
                MissingFields,
            ),
            (
                "candidate:1\t1 udp 1 1.2.3.4 5 typ host",
                ForbiddenCharacter,
            ),
            (
                "candidate:f=o 1 udp 1 1.2.3.4 5 typ host",
                InvalidField("foundation"),
            ),
            (
                "candidate:123456789012345678901234567890123 1 udp 1 1.2.3.4 5 typ host",
                InvalidField("foundation"),
            ),
            (
                "candidate:1 1000 udp 1 1.2.3.4 5 typ host",
                InvalidField("component-id"),
            ),
            (
                "candidate:1 1 udp 12345678901 1.2.3.4 5 typ host",
                InvalidField("priority"),
            ),
            (
                "candidate:1 1 udp 1 1.2.3.4 70000 typ host",
                InvalidField("port"),
            ),
            (
                "candidate:1 1 udp 1 1.2.3.4 5 type host",
                InvalidField("typ"),
            ),
            (
                "candidate:1 1 udp 1 1.2.3.4 5 typ relay raddr x_y rport 1",
                InvalidField("raddr"),
            ),
            (
                "candidate:1 1 udp 1 999.1.2.3 5 typ relay",
                InvalidField("connection-address"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_candidate(input), Err(*expected), "{input}");
        }
    }

    #[test]
    fn trickle_relay_only_drops_everything_but_relay() {
        let p = CandidatePolicy::RelayOnly;
        for dropped in [
            CHROME_HOST,
            CHROME_SRFLX,
            MDNS_HOST,
            TCP_HOST,
            PRFLX,
            "garbage",
        ] {
            assert_eq!(filter_candidate(dropped, p, &relays()), None, "{dropped}");
        }
        let relay = filter_candidate(CHROME_RELAY, p, &relays()).unwrap();
        assert_eq!(
            relay,
            "candidate:1853887674 1 udp 33562367 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0 generation 0 ufrag EEtu network-id 1 network-cost 10"
        );
        let v6 = filter_candidate(&format!("a={IPV6_RELAY}"), p, &relays()).unwrap();
        assert_eq!(
            v6,
            "candidate:4 1 udp 25108479 2001:db8::5 50001 typ relay raddr :: rport 0"
        );
        // A relay claim with an mDNS name is not something a TURN server gives.
        let fake = "candidate:9 1 udp 1 abc.local 5 typ relay";
        assert_eq!(filter_candidate(fake, p, &relays()), None);
    }

    #[test]
    fn relay_extensions_cannot_smuggle_addresses() {
        let sneaky = "candidate:1 1 udp 1 203.0.113.5 5 typ relay raddr 198.51.100.1 rport 7 raddr 192.168.9.9 x-addr 10.9.9.9 generation 10.0.0.1 generation 3";
        let out = filter_candidate(sneaky, CandidatePolicy::RelayOnly, &relays()).unwrap();
        assert_eq!(
            out,
            "candidate:1 1 udp 1 203.0.113.5 5 typ relay raddr 0.0.0.0 rport 0 generation 3"
        );
    }

    #[test]
    fn all_policy_changes_nothing() {
        assert_eq!(
            filter_candidate(CHROME_HOST, CandidatePolicy::All, &relays()).as_deref(),
            Some(CHROME_HOST)
        );
        let sdp = format!("v=0\r\nc=IN IP4 192.168.1.20\r\na={CHROME_HOST}\r\n");
        assert_eq!(filter_sdp(&sdp, CandidatePolicy::All, &relays()), sdp);
    }

    fn sample_sdp(eol: &str) -> String {
        [
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 192.168.1.20",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            "m=audio 54321 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 198.51.100.9",
            "a=rtcp:54322 IN IP4 198.51.100.9",
            &format!("a={CHROME_HOST}"),
            &format!("a={CHROME_SRFLX}"),
            &format!("a={MDNS_HOST}"),
            &format!("a={TCP_HOST}"),
            &format!("a={PRFLX}"),
            &format!("a={CHROME_RELAY}"),
            "a=remote-candidates:1 192.168.1.20 54321",
            "a=end-of-candidates",
            "a=ice-ufrag:EEtu",
            "a=mid:0",
            "",
        ]
        .join(eol)
    }

    #[test]
    fn sdp_relay_only_crlf() {
        let out = filter_sdp(&sample_sdp("\r\n"), CandidatePolicy::RelayOnly, &relays());
        let expected = [
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            "a=candidate:1853887674 1 udp 33562367 203.0.113.5 50000 typ relay raddr 0.0.0.0 rport 0 generation 0 ufrag EEtu network-id 1 network-cost 10",
            "a=end-of-candidates",
            "a=ice-ufrag:EEtu",
            "a=mid:0",
            "",
        ]
        .join("\r\n");
        assert_eq!(out, expected);
        for leaked in [
            "192.168.1.20",
            "198.51.100.9",
            ".local",
            "10.1.2.3",
            "54321",
            "54322",
        ] {
            assert!(!out.contains(leaked), "{leaked} leaked");
        }
    }

    #[test]
    fn sdp_relay_only_lf_keeps_lf() {
        let out = filter_sdp(&sample_sdp("\n"), CandidatePolicy::RelayOnly, &relays());
        assert!(!out.contains('\r'));
        assert!(out.contains("typ relay"));
        assert!(!out.contains("typ host"));
        assert!(out.ends_with("a=mid:0\n"));
    }

    #[test]
    fn sdp_tricks_are_dropped() {
        let sdp = format!(
            "v=0\r\nA=CANDIDATE:{}\r\n  a=candidate:{}\r\na=x\ra={CHROME_HOST}\r\nc=IN IP6 fd00::1\r\na=candidate\r\n",
            &CHROME_HOST["candidate:".len()..],
            &CHROME_SRFLX["candidate:".len()..],
        );
        let out = filter_sdp(&sdp, CandidatePolicy::RelayOnly, &relays());
        assert_eq!(out, "v=0\r\nc=IN IP6 ::\r\n");
    }

    #[test]
    fn a_relay_candidate_must_carry_a_relay_the_server_handed_out() {
        let p = CandidatePolicy::RelayOnly;
        // The patient's own socket, announced as a relay.
        let own =
            "candidate:1 1 udp 33562367 198.51.100.9 61665 typ relay raddr 192.168.1.20 rport 5";
        assert_eq!(filter_candidate(own, p, &relays()), None);
        // A real relay candidate passes only while its relay is known.
        assert!(filter_candidate(CHROME_RELAY, p, &relays()).is_some());
        assert_eq!(filter_candidate(CHROME_RELAY, p, &Relays::default()), None);
        // An IPv4-mapped address is the IPv4 relay.
        let mapped = "candidate:1 1 udp 1 ::ffff:203.0.113.5 5 typ relay";
        assert!(filter_candidate(mapped, p, &relays()).is_some());
        let sdp =
            format!("v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na={own}\r\na={CHROME_RELAY}\r\n");
        let out = filter_sdp(&sdp, p, &relays());
        assert!(!out.contains("198.51.100.9 61665"), "{out}");
        assert!(out.contains("203.0.113.5 50000 typ relay"), "{out}");
        assert!(
            out.contains("m=video 0 "),
            "a rejected section stays rejected: {out}"
        );
    }

    #[test]
    fn relays_handed_out_in_ice_servers_are_relays() {
        let servers = [IceServer {
            urls: vec![
                "turn:203.0.113.10:3478?transport=udp".to_owned(),
                "turns:turn.konsult.example.dk:443?transport=tcp".to_owned(),
                "turns:[2001:db8::7]:5349".to_owned(),
                "stun:198.51.100.9:3478".to_owned(),
                "turn:198.51.100.20".to_owned(),
            ],
            username: None,
            credential: None,
        }];
        let mut relays = Relays::default();
        relays.extend(Relays::in_ice_servers(&servers));
        let ips: Vec<String> = relays.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["198.51.100.20", "203.0.113.10", "2001:db8::7"]);
        assert!(
            !relays.contains("198.51.100.9".parse().unwrap()),
            "a STUN server is no relay"
        );
    }
}
