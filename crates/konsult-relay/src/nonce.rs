//! Stateless nonces (RFC 8489 §9.2): the relay remembers nothing per nonce.
//!
//! A long-term-credential server answers a client's first request with 401
//! and a NONCE, which the client echoes in every authenticated request
//! until the server calls it stale (438). The `turn` crate stored each
//! nonce it handed out for an hour, so every unauthenticated, spoofable
//! Allocate grew the relay's memory (73 MiB for 600k). Here a nonce is
//! `<issued at, 8 hex digits><tag, 16 hex digits>`: the tag is an HMAC-SHA256,
//! under a key drawn at start, over the issue time and the client's
//! transport address. Checking it is a recomputation; a forged or replayed
//! nonce from another address fails the tag, an old one is stale. A restart
//! draws a new key, so clients are sent a fresh nonce once (438) and carry
//! on.

use std::net::SocketAddr;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// How long a nonce is accepted after it was issued. A client whose nonce
/// goes stale gets 438 with a fresh one and retries at once.
pub(crate) const NONCE_LIFETIME_SECS: u64 = 3600;

/// Hex digits of the issue time, then of the tag.
const TIME_DIGITS: usize = 8;
const TAG_BYTES: usize = 8;

/// What a nonce a client sent turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Issued by this relay to this client address, and not stale.
    Valid,
    /// Issued by this relay to this client address, but too long ago.
    Stale,
    /// Not a nonce this relay issued to this client address (forged,
    /// another client's, from before a restart, or malformed).
    Unknown,
}

/// The key nonces are minted and checked with.
pub(crate) struct Nonces {
    key: hmac::Key,
}

impl Nonces {
    /// A fresh random key.
    pub(crate) fn new() -> Self {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system random generator works");
        Self::with_key(&key)
    }

    /// A fixed key, for tests.
    pub(crate) fn with_key(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A nonce for `client`, issued at `now_unix` (seconds since the epoch).
    pub(crate) fn mint(&self, now_unix: u64, client: SocketAddr) -> String {
        // The time wraps after 2^32 s (in 2106); a nonce is checked against
        // the same wrapped clock.
        let issued = now_unix as u32;
        let tag = self.tag(issued, client);
        let mut nonce = format!("{issued:08x}");
        for byte in tag {
            nonce.push_str(&format!("{byte:02x}"));
        }
        nonce
    }

    /// Checks a nonce `client` sent at `now_unix`.
    pub(crate) fn check(&self, nonce: &str, now_unix: u64, client: SocketAddr) -> NonceCheck {
        if nonce.len() != TIME_DIGITS + 2 * TAG_BYTES || !nonce.is_ascii() {
            return NonceCheck::Unknown;
        }
        let (time, tag) = nonce.split_at(TIME_DIGITS);
        let Ok(issued) = u32::from_str_radix(time, 16) else {
            return NonceCheck::Unknown;
        };
        let Some(tag) = decode_hex(tag) else {
            return NonceCheck::Unknown;
        };
        // Compared without an early exit: the tag is a secret-derived value.
        let expected = self.tag(issued, client);
        let difference = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference != 0 {
            return NonceCheck::Unknown;
        }
        let age = (now_unix as u32).wrapping_sub(issued);
        if u64::from(age) < NONCE_LIFETIME_SECS {
            NonceCheck::Valid
        } else {
            NonceCheck::Stale
        }
    }

    fn tag(&self, issued: u32, client: SocketAddr) -> [u8; TAG_BYTES] {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&issued.to_be_bytes());
        match client.ip() {
            std::net::IpAddr::V4(ip) => context.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => context.update(&ip.octets()),
        }
        context.update(&client.port().to_be_bytes());
        let full = context.sign();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full.as_ref()[..TAG_BYTES]);
        tag
    }
}

fn decode_hex(text: &str) -> Option<[u8; TAG_BYTES]> {
    let mut out = [0u8; TAG_BYTES];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_nonce_is_valid_for_its_client_until_it_is_stale() {
        let nonces = Nonces::with_key(b"k");
        let client = addr("192.0.2.1:5000");
        let nonce = nonces.mint(1_000_000, client);
        assert_eq!(nonce.len(), 24);
        assert_eq!(nonces.check(&nonce, 1_000_000, client), NonceCheck::Valid);
        assert_eq!(
            nonces.check(&nonce, 1_000_000 + NONCE_LIFETIME_SECS - 1, client),
            NonceCheck::Valid
        );
        assert_eq!(
            nonces.check(&nonce, 1_000_000 + NONCE_LIFETIME_SECS, client),
            NonceCheck::Stale
        );
    }

    #[test]
    fn another_client_a_forged_tag_or_another_key_is_unknown() {
        let nonces = Nonces::with_key(b"k");
        let client = addr("[2001:db8::1]:5000");
        let nonce = nonces.mint(1_000_000, client);
        let unknown = |n: &str, c| nonces.check(n, 1_000_000, c);
        assert_eq!(
            unknown(&nonce, addr("[2001:db8::1]:5001")),
            NonceCheck::Unknown
        );
        assert_eq!(unknown(&nonce, addr("192.0.2.1:5000")), NonceCheck::Unknown);
        let mut forged = nonce.clone();
        forged.replace_range(23.., if nonce.ends_with('0') { "1" } else { "0" });
        assert_eq!(unknown(&forged, client), NonceCheck::Unknown);
        // A later issue time with the old tag does not pass either.
        let shifted = format!("{:08x}{}", 1_000_100u32, &nonce[8..]);
        assert_eq!(unknown(&shifted, client), NonceCheck::Unknown);
        let other = Nonces::with_key(b"other");
        assert_eq!(other.check(&nonce, 1_000_000, client), NonceCheck::Unknown);
        for junk in ["", "zz", "0000000000000000000000g0", "ééééééééééééé"] {
            assert_eq!(unknown(junk, client), NonceCheck::Unknown, "{junk:?}");
        }
    }
}
