//! TURN REST credentials, exactly as coturn's `use-auth-secret` checks them.
//!
//! A credential is a pair
//!
//! * username `"<expiry>:<reference>"`, where `expiry` is the last unix second
//!   at which the credential is accepted, and
//! * password `base64(HMAC-SHA1(secret, username))`.
//!
//! Whoever holds the shared secret (Konsult's server) mints credentials; a
//! relay that holds the same secret (this crate's [`Relay`](crate::Relay) or a
//! coturn `turnserver --use-auth-secret --static-auth-secret=…`) recomputes the
//! password from the username alone. No database, no round trip, and the
//! credential dies by itself at `expiry`.
//!
//! Everything here is pure: the current time is an argument, never read from
//! a clock, so issuing and checking are deterministic and testable.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};

/// Longest accepted [`Reference`], in bytes.
///
/// 64 leaves room for a UUID (36), a 256-bit base64url token (43) or a hex
/// SHA-256 (64), and keeps the STUN USERNAME attribute far below its 513-byte
/// limit.
pub const MAX_REFERENCE_LEN: usize = 64;

/// Why a credential could not be issued or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The reference is empty, too long, or has a character outside
    /// `[A-Za-z0-9._~-]`.
    #[error("invalid consultation reference: {0}")]
    InvalidReference(&'static str),
    /// The username is not `"<expiry>:<reference>"`.
    #[error("malformed TURN REST username: {0}")]
    MalformedUsername(&'static str),
    /// The credential's expiry lies before `now`.
    #[error("credential expired at unix second {expiry}")]
    Expired {
        /// The expiry carried in the username (unix seconds).
        expiry: u64,
    },
    /// A credential must live at least one whole second.
    #[error("credential lifetime must be at least one second")]
    ZeroLifetime,
    /// `now` lies before 1970 or `now + ttl` does not fit in a `u64` of
    /// seconds.
    #[error("time out of range for a TURN REST credential")]
    TimeOutOfRange,
    /// The shared secret is empty; HMAC would accept it, but nobody should.
    #[error("shared secret is empty")]
    EmptySecret,
}

/// A pseudonymous, consultation-scoped reference: the `id` half of the
/// username.
///
/// The username travels in clear text in every STUN request and in relay
/// logs, so it must not identify a person: never a name, CPR number, e-mail
/// or phone number. Konsult uses an opaque id minted per consultation (for
/// example the consultation's UUID), so a relay operator can tell allocations
/// of one consultation apart from another's and close them all when the
/// consultation ends ([`Relay::close_reference`](crate::Relay::close_reference)),
/// and learns nothing else.
///
/// Parse, don't validate: a `Reference` holds 1 to [`MAX_REFERENCE_LEN`]
/// characters from `[A-Za-z0-9._~-]` (RFC 3986's unreserved set). That set has
/// no `:`, so `"<expiry>:<reference>"` splits unambiguously, and nothing that
/// could need escaping in a log line or URL.
///
/// # Consultation and participant parts
///
/// A reference of the form `"<consultation>.<participant>"` (exactly one dot,
/// both parts non-empty) names one participant of a consultation, so the
/// relay can evict that participant alone and count the media it observed
/// per participant; build one with [`Reference::for_participant`]. Any other
/// reference (no dot, or dots elsewhere, as in `"a.b.c"` or `".a"`) is a
/// consultation-only reference, taken whole as before: it is its own
/// [`consultation_part`](Self::consultation_part) and has no
/// [`participant_part`](Self::participant_part). [`Reference::parse`]
/// accepts the same strings as always, so coturn-style usernames keep
/// working.
///
/// Closing a consultation-only reference closes every participant under it
/// as well; see [`Reference::covers`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference(String);

impl Reference {
    /// Checks `s` and wraps it.
    pub fn parse(s: &str) -> Result<Self, CredentialError> {
        if s.is_empty() {
            return Err(CredentialError::InvalidReference("empty"));
        }
        if s.len() > MAX_REFERENCE_LEN {
            return Err(CredentialError::InvalidReference("longer than 64 bytes"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        {
            return Err(CredentialError::InvalidReference(
                "characters outside [A-Za-z0-9._~-]",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The reference of `participant` in `consultation`,
    /// `"<consultation>.<participant>"`.
    ///
    /// `consultation` must be consultation-only and contain no dot (a dot
    /// would make the result ambiguous), `participant` must be 1 or more
    /// characters from `[A-Za-z0-9_~-]`, and the whole must fit
    /// [`MAX_REFERENCE_LEN`]. Like the consultation part, the participant
    /// part must be pseudonymous: an opaque id, never a name or other
    /// personal data.
    pub fn for_participant(
        consultation: &Reference,
        participant: &str,
    ) -> Result<Reference, CredentialError> {
        if consultation.0.contains('.') {
            return Err(CredentialError::InvalidReference(
                "the consultation part contains a '.'",
            ));
        }
        if participant.is_empty() {
            return Err(CredentialError::InvalidReference("empty participant part"));
        }
        if !participant.bytes().all(is_part_byte) {
            return Err(CredentialError::InvalidReference(
                "participant part has characters outside [A-Za-z0-9_~-]",
            ));
        }
        if consultation.0.len() + 1 + participant.len() > MAX_REFERENCE_LEN {
            return Err(CredentialError::InvalidReference("longer than 64 bytes"));
        }
        Ok(Self(format!("{}.{participant}", consultation.0)))
    }

    /// The consultation this reference belongs to: the part before the dot
    /// of a `"<consultation>.<participant>"` reference, else the reference
    /// itself.
    pub fn consultation_part(&self) -> Reference {
        Self(self.consultation_str().to_owned())
    }

    /// The participant part of a `"<consultation>.<participant>"` reference;
    /// `None` for a consultation-only reference.
    pub fn participant_part(&self) -> Option<&str> {
        split_parts(&self.0).map(|(_, participant)| participant)
    }

    /// Whether closing `self` closes `other`: `other` is `self`, or `self`
    /// is the consultation part of `other`. A consultation-only reference
    /// covers itself and all of its participants; a participant reference
    /// covers only itself.
    pub fn covers(&self, other: &Reference) -> bool {
        other == self || other.consultation_str() == self.0
    }

    /// The reference as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// [`Self::consultation_part`] without the copy.
    pub(crate) fn consultation_str(&self) -> &str {
        split_parts(&self.0).map_or(&self.0, |(consultation, _)| consultation)
    }
}

/// Splits `"<consultation>.<participant>"` with exactly one dot and two
/// non-empty parts; `None` for anything else.
fn split_parts(s: &str) -> Option<(&str, &str)> {
    let (consultation, participant) = s.split_once('.')?;
    let two_parts =
        !consultation.is_empty() && !participant.is_empty() && !participant.contains('.');
    two_parts.then_some((consultation, participant))
}

/// A byte allowed in one part of a reference: the reference set without `.`.
fn is_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-')
}

/// Lets a map keyed by [`Reference`] be searched with a `&str` (the
/// consultation part of another reference) without building a `Reference`.
/// Hashing and ordering agree, because both are the `String`'s.
impl Borrow<str> for Reference {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Reference {
    type Err = CredentialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A parsed TURN REST username, `"<expiry>:<reference>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TurnUsername {
    expiry: u64,
    /// `expiry` as a `SystemTime`, checked representable at construction.
    expires_at: SystemTime,
    reference: Reference,
}

impl TurnUsername {
    /// Parses `"<expiry>:<reference>"`: expiry is ASCII digits (no sign, no
    /// spaces) naming a second this platform's `SystemTime` can represent,
    /// the reference is a valid [`Reference`].
    pub fn parse(s: &str) -> Result<Self, CredentialError> {
        let (expiry, reference) = s
            .split_once(':')
            .ok_or(CredentialError::MalformedUsername("no ':' separator"))?;
        if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CredentialError::MalformedUsername(
                "expiry is not a decimal number",
            ));
        }
        let expiry = expiry
            .parse::<u64>()
            .map_err(|_| CredentialError::MalformedUsername("expiry does not fit 64 bits"))?;
        let expires_at =
            expiry_time(expiry).ok_or(CredentialError::MalformedUsername("expiry out of range"))?;
        let reference = Reference::parse(reference)?;
        Ok(Self {
            expiry,
            expires_at,
            reference,
        })
    }

    /// The last unix second at which the credential is accepted.
    pub fn expiry_unix(&self) -> u64 {
        self.expiry
    }

    /// [`Self::expiry_unix`] as a `SystemTime`.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// The reference the credential was issued for (a consultation's, or
    /// one participant's).
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Whether the credential is still accepted at `now`.
    ///
    /// Same rule as coturn (`timestamp >= now`): the expiry second itself is
    /// still valid, the next one is not.
    pub fn is_valid_at(&self, now: SystemTime) -> Result<bool, CredentialError> {
        Ok(unix_seconds(now)? <= self.expiry)
    }
}

impl fmt::Display for TurnUsername {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.expiry, self.reference)
    }
}

impl FromStr for TurnUsername {
    type Err = CredentialError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A TURN REST username and its password, ready to hand to a WebRTC client
/// as an `RTCIceServer`'s `username` and `credential`.
///
/// The password is a [`SecretString`]: it is redacted in `Debug` output and
/// must be exposed explicitly (`password().expose_secret()`) where it is sent
/// to the one client that needs it.
#[derive(Debug, Clone)]
pub struct TurnCredentials {
    username: TurnUsername,
    password: SecretString,
}

impl TurnCredentials {
    /// Mints credentials for `reference`, valid from `now` through
    /// `now + ttl` (whole seconds; `now` is rounded down to its second).
    ///
    /// The caller caps `ttl` by the consultation window, so a credential never
    /// outlives the consultation it was issued for.
    pub fn issue(
        secret: &SecretString,
        reference: &Reference,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<Self, CredentialError> {
        if ttl.as_secs() == 0 {
            return Err(CredentialError::ZeroLifetime);
        }
        let expiry = unix_seconds(now)?
            .checked_add(ttl.as_secs())
            .ok_or(CredentialError::TimeOutOfRange)?;
        let username = TurnUsername {
            expiry,
            expires_at: expiry_time(expiry).ok_or(CredentialError::TimeOutOfRange)?,
            reference: reference.clone(),
        };
        let password = rest_password(secret, &username.to_string())?;
        Ok(Self { username, password })
    }

    /// Checks a username presented to a relay at `now` and returns the
    /// credentials it stands for: the password is the one the client must
    /// prove it knows (through STUN MESSAGE-INTEGRITY).
    ///
    /// A forged username (another reference or a pushed-out expiry) parses
    /// fine but yields a different password, so the client's integrity check
    /// fails; an expired one is refused here.
    pub fn verify(
        secret: &SecretString,
        username: &str,
        now: SystemTime,
    ) -> Result<Self, CredentialError> {
        let username = TurnUsername::parse(username)?;
        if !username.is_valid_at(now)? {
            return Err(CredentialError::Expired {
                expiry: username.expiry,
            });
        }
        let password = rest_password(secret, &username.to_string())?;
        Ok(Self { username, password })
    }

    /// The username.
    pub fn username(&self) -> &TurnUsername {
        &self.username
    }

    /// The password, `base64(HMAC-SHA1(secret, username))`.
    pub fn password(&self) -> &SecretString {
        &self.password
    }

    /// When the credential stops being accepted.
    pub fn expires_at(&self) -> SystemTime {
        self.username.expires_at()
    }
}

/// `base64(HMAC-SHA1(secret, username))`, coturn's `use-auth-secret` password.
fn rest_password(secret: &SecretString, username: &str) -> Result<SecretString, CredentialError> {
    let secret = secret.expose_secret();
    if secret.is_empty() {
        return Err(CredentialError::EmptySecret);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    Ok(SecretString::from(BASE64_STANDARD.encode(tag.as_ref())))
}

fn expiry_time(expiry: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(expiry))
}

fn unix_seconds(t: SystemTime) -> Result<u64, CredentialError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| CredentialError::TimeOutOfRange)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    /// Known answer computed independently of this code with
    /// `echo -n "1700000000:c0ffee-consult" | openssl dgst -sha1 -hmac "konsult-test-secret" -binary | base64`.
    /// `tests/rest_credentials_openssl.rs` recomputes such values with
    /// openssl at test time, and `tests/coturn.rs` has coturn accept them.
    #[test]
    fn known_answer_from_openssl() {
        let creds = TurnCredentials::issue(
            &secret("konsult-test-secret"),
            &Reference::parse("c0ffee-consult").unwrap(),
            at(1_699_999_000),
            Duration::from_secs(1000),
        )
        .unwrap();
        assert_eq!(creds.username().to_string(), "1700000000:c0ffee-consult");
        assert_eq!(
            creds.password().expose_secret(),
            "NYB6/KJhqjMXW3hf7aITIAm2oAQ="
        );
    }

    /// RFC 2202 test case 2 checks the HMAC-SHA1 primitive itself:
    /// key "Jefe", data "what do ya want for nothing?",
    /// digest effcdf6ae5eb2fa2d27416d5f184df9c259a7c79 (base64 below).
    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        let pw = rest_password(&secret("Jefe"), "what do ya want for nothing?").unwrap();
        assert_eq!(pw.expose_secret(), "7/zfauXrL6LSdBbV8YTfnCWafHk=");
    }

    #[test]
    fn verify_accepts_what_issue_minted_until_expiry_inclusive() {
        let s = secret("s3cret");
        let r = Reference::parse("ref-1").unwrap();
        let issued = TurnCredentials::issue(&s, &r, at(1000), Duration::from_secs(60)).unwrap();
        let name = issued.username().to_string();
        for now in [1000, 1030, 1060] {
            let v = TurnCredentials::verify(&s, &name, at(now)).unwrap();
            assert_eq!(
                v.password().expose_secret(),
                issued.password().expose_secret()
            );
            assert_eq!(v.username().reference(), &r);
        }
        assert_eq!(
            TurnCredentials::verify(&s, &name, at(1061)).unwrap_err(),
            CredentialError::Expired { expiry: 1060 }
        );
    }

    #[test]
    fn sub_second_now_rounds_down_and_expiry_is_whole_seconds() {
        let c = TurnCredentials::issue(
            &secret("s"),
            &Reference::parse("r").unwrap(),
            at(100) + Duration::from_millis(999),
            Duration::from_millis(2500),
        )
        .unwrap();
        assert_eq!(c.username().expiry_unix(), 102);
        assert_eq!(c.expires_at(), at(102));
    }

    #[test]
    fn forged_usernames_do_not_reuse_the_password() {
        let s = secret("s3cret");
        let issued = TurnCredentials::issue(
            &s,
            &Reference::parse("consult-a").unwrap(),
            at(1000),
            Duration::from_secs(60),
        )
        .unwrap();
        for forged in ["99999999:consult-a", "1060:consult-b"] {
            let v = TurnCredentials::verify(&s, forged, at(1000)).unwrap();
            assert_ne!(
                v.password().expose_secret(),
                issued.password().expose_secret()
            );
        }
        // Another secret gives another password for the same username.
        let other =
            TurnCredentials::verify(&secret("other"), &issued.username().to_string(), at(1000))
                .unwrap();
        assert_ne!(
            other.password().expose_secret(),
            issued.password().expose_secret()
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let s = secret("s");
        let r = Reference::parse("r").unwrap();
        assert_eq!(
            TurnCredentials::issue(&s, &r, at(0), Duration::from_millis(999)).unwrap_err(),
            CredentialError::ZeroLifetime
        );
        let latest = UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 - 1);
        assert_eq!(
            TurnCredentials::issue(&s, &r, latest, Duration::from_secs(2)).unwrap_err(),
            CredentialError::TimeOutOfRange
        );
        assert_eq!(
            TurnCredentials::verify(&s, "18446744073709551615:r", at(0)).unwrap_err(),
            CredentialError::MalformedUsername("expiry out of range")
        );
        assert_eq!(
            TurnCredentials::issue(
                &s,
                &r,
                UNIX_EPOCH - Duration::from_secs(1),
                Duration::from_secs(1)
            )
            .unwrap_err(),
            CredentialError::TimeOutOfRange
        );
        assert_eq!(
            TurnCredentials::issue(&secret(""), &r, at(0), Duration::from_secs(1)).unwrap_err(),
            CredentialError::EmptySecret
        );
        for bad in [
            "",
            "no-colon",
            ":ref",
            "-1:ref",
            "+1:ref",
            " 1:ref",
            "1 :ref",
            "0x10:ref",
            "18446744073709551616:ref",
            "1:",
            "1:a:b",
            "1:with space",
            "1:æøå",
        ] {
            assert!(
                TurnCredentials::verify(&s, bad, at(0)).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn reference_charset_and_length() {
        assert!(Reference::parse("550e8400-e29b-41d4-a716-446655440000").is_ok());
        assert!(Reference::parse("a.b_c~d-E9").is_ok());
        assert!(Reference::parse(&"a".repeat(MAX_REFERENCE_LEN)).is_ok());
        assert!(Reference::parse(&"a".repeat(MAX_REFERENCE_LEN + 1)).is_err());
        for bad in ["", "a:b", "a b", "a/b", "a@b", "a\nb", "ø"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn two_part_references_have_a_consultation_and_a_participant() {
        let p = r("c0ffee.p-1");
        assert_eq!(p.consultation_part(), r("c0ffee"));
        assert_eq!(p.participant_part(), Some("p-1"));
        let c = r("c0ffee");
        assert_eq!(c.consultation_part(), c);
        assert_eq!(c.participant_part(), None);
    }

    #[test]
    fn other_dotted_references_are_taken_whole() {
        // Accepted as before, but not "<consultation>.<participant>": each
        // is its own consultation, with no participant.
        for whole in ["a.b.c", ".a", "a.", "a..b", ".", "..", "v1.2.3"] {
            let reference = r(whole);
            assert_eq!(reference.consultation_part(), reference, "{whole:?}");
            assert_eq!(reference.participant_part(), None, "{whole:?}");
        }
    }

    #[test]
    fn a_consultation_covers_its_participants_and_a_participant_only_itself() {
        let c = r("c");
        let p1 = r("c.p1");
        let p2 = r("c.p2");
        assert!(c.covers(&c));
        assert!(c.covers(&p1));
        assert!(c.covers(&p2));
        assert!(p1.covers(&p1));
        assert!(!p1.covers(&p2));
        assert!(!p1.covers(&c));
        // Prefixes are not parts.
        assert!(!c.covers(&r("cc.p1")));
        assert!(!c.covers(&r("c.p1.x")));
        assert!(!r("a.b").covers(&r("a.b.c")));
        assert!(r("a.b.c").covers(&r("a.b.c")));
    }

    #[test]
    fn for_participant_checks_parts_and_length() {
        let c = r("c0ffee");
        assert_eq!(
            Reference::for_participant(&c, "p1").unwrap(),
            r("c0ffee.p1")
        );
        assert_eq!(
            Reference::for_participant(&c, "a_b~C-9").unwrap().as_str(),
            "c0ffee.a_b~C-9"
        );
        for bad in ["", "a.b", ".", "a b", "a:b", "ø"] {
            assert!(
                Reference::for_participant(&c, bad).is_err(),
                "participant {bad:?}"
            );
        }
        assert!(Reference::for_participant(&r("c.p1"), "p2").is_err());
        assert!(Reference::for_participant(&r("a.b.c"), "p2").is_err());
        let long = r(&"c".repeat(60));
        assert_eq!(
            Reference::for_participant(&long, "abc")
                .unwrap()
                .as_str()
                .len(),
            MAX_REFERENCE_LEN
        );
        assert_eq!(
            Reference::for_participant(&long, "abcd").unwrap_err(),
            CredentialError::InvalidReference("longer than 64 bytes")
        );
    }

    #[test]
    fn password_is_redacted_in_debug() {
        let c = TurnCredentials::issue(
            &secret("s"),
            &Reference::parse("r").unwrap(),
            at(0),
            Duration::from_secs(1),
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(c.password().expose_secret()), "{dbg}");
    }

    proptest! {
        #[test]
        fn issue_then_verify_round_trips(
            secret_text in "[ -~]{1,40}",
            reference in "[A-Za-z0-9._~-]{1,64}",
            now in 0u64..4_000_000_000,
            ttl in 1u64..1_000_000,
            offset in 0u64..2_000_000,
        ) {
            let s = secret(&secret_text);
            let r = Reference::parse(&reference).unwrap();
            let issued = TurnCredentials::issue(&s, &r, at(now), Duration::from_secs(ttl)).unwrap();
            let name = issued.username().to_string();
            prop_assert_eq!(TurnUsername::parse(&name).unwrap(), issued.username().clone());
            let result = TurnCredentials::verify(&s, &name, at(now + offset));
            if offset <= ttl {
                let v = result.unwrap();
                prop_assert_eq!(v.password().expose_secret(), issued.password().expose_secret());
            } else {
                prop_assert_eq!(result.unwrap_err(), CredentialError::Expired { expiry: now + ttl });
            }
        }

        #[test]
        fn participant_references_round_trip(
            consultation in "[A-Za-z0-9_~-]{1,40}",
            participant in "[A-Za-z0-9_~-]{1,40}",
        ) {
            let c = Reference::parse(&consultation).unwrap();
            match Reference::for_participant(&c, &participant) {
                Ok(p) => {
                    prop_assert!(consultation.len() + 1 + participant.len() <= MAX_REFERENCE_LEN);
                    // What was built parses back to the same parts.
                    let reparsed = Reference::parse(p.as_str()).unwrap();
                    prop_assert_eq!(&reparsed, &p);
                    prop_assert_eq!(reparsed.consultation_part(), c.clone());
                    prop_assert_eq!(reparsed.participant_part(), Some(participant.as_str()));
                    prop_assert!(c.covers(&p));
                    prop_assert!(!p.covers(&c));
                }
                Err(err) => {
                    prop_assert!(consultation.len() + 1 + participant.len() > MAX_REFERENCE_LEN);
                    prop_assert_eq!(err, CredentialError::InvalidReference("longer than 64 bytes"));
                }
            }
        }

        #[test]
        fn every_reference_has_a_consultation_part_that_covers_it(
            reference in "[A-Za-z0-9._~-]{1,64}",
        ) {
            let r = Reference::parse(&reference).unwrap();
            let c = r.consultation_part();
            prop_assert!(c.covers(&r));
            prop_assert_eq!(c.participant_part(), None);
            match r.participant_part() {
                Some(p) => prop_assert_eq!(format!("{c}.{p}"), reference),
                None => prop_assert_eq!(c, r),
            }
        }

        #[test]
        fn verify_never_panics(username in "\\PC{0,80}", now in any::<u64>()) {
            let _ = TurnCredentials::verify(&secret("s"), &username, at(now % 10_000_000_000));
        }

        #[test]
        fn any_numeric_expiry_is_handled(expiry in any::<u64>(), now in 0u64..10_000_000_000) {
            let name = format!("{expiry}:r");
            match TurnCredentials::verify(&secret("s"), &name, at(now)) {
                Ok(c) => {
                    prop_assert!(expiry >= now);
                    prop_assert_eq!(c.username().expiry_unix(), expiry);
                    prop_assert!(c.expires_at() >= at(now));
                }
                Err(CredentialError::Expired { expiry: e }) => prop_assert!(e < now),
                Err(CredentialError::MalformedUsername(_)) => {
                    prop_assert!(UNIX_EPOCH.checked_add(Duration::from_secs(expiry)).is_none())
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
