//! Encryption of personal data at rest, and the hashes that let us find
//! rows without storing secrets in clear.
//!
//! Personal fields (names, CPR numbers, contact data, journal text) are
//! sealed with AES-256-GCM under the configured 32-byte key. Each value gets
//! a fresh random 96-bit nonce, stored in front of the ciphertext, and is
//! bound to its place (`table.column:row-id`) as associated data, so a
//! ciphertext copied into another row or column fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key is not 32 bytes of base64.
    #[error("the encryption key must be 32 bytes, base64-encoded")]
    BadKey,
    /// A stored value does not open under this key and place.
    #[error("a stored value could not be decrypted (wrong key or tampered data)")]
    Open,
}

/// The data-at-rest key and the operations that use it.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    lookup_key: SecretSlice<u8>,
    /// Keys the audit chain and signs exported chain heads: it lives with
    /// the data-at-rest key, never in the database, so a database writer
    /// alone cannot recompute the chain.
    audit_key: SecretSlice<u8>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    /// Builds a cipher from the 32 raw key bytes.
    pub fn from_key(key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let aead = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::BadKey)?;
        // A separate key for lookup hashes, derived so that a lookup hash
        // never reveals anything about the encryption key.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| CryptoError::BadKey)?;
        mac.update(b"konsult lookup key v1");
        let lookup_key = mac.finalize().into_bytes().to_vec();
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| CryptoError::BadKey)?;
        mac.update(b"konsult audit chain key v1");
        let audit_key = mac.finalize().into_bytes().to_vec();
        Ok(Self {
            aead,
            lookup_key: SecretSlice::from(lookup_key),
            audit_key: SecretSlice::from(audit_key),
        })
    }

    /// Parses a base64 key as kept in the key file.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadKey)?;
        Self::from_key(&bytes)
    }

    /// A new random key, base64-encoded, for a key file.
    pub fn generate_key_base64() -> String {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// Seals `plain` for the place `aad` (e.g. `patients.name:<id>`).
    pub fn seal(&self, aad: &str, plain: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value sealed by [`Cipher::seal`] for the same place.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<String, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Open)
    }

    /// Seals an optional value.
    pub fn seal_opt(&self, aad: &str, plain: Option<&str>) -> Option<Vec<u8>> {
        plain.map(|p| self.seal(aad, p))
    }

    /// Opens an optional value.
    pub fn open_opt(
        &self,
        aad: &str,
        sealed: Option<&[u8]>,
    ) -> Result<Option<String>, CryptoError> {
        sealed.map(|s| self.open(aad, s)).transpose()
    }

    /// A keyed hash for finding a row by a secret value (a login e-mail)
    /// without storing the value in clear.
    pub fn lookup_hash(&self, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.lookup_key.expose_secret())
            .expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl Cipher {
    /// HMAC-SHA256 under the audit key over `purpose` and `parts` (each
    /// ended by 0x1f), in hex: an audit entry's hash or a head's signature.
    pub fn audit_mac(&self, purpose: &str, parts: &[&str]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.audit_key.expose_secret())
            .expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0x1e]);
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(&[0x1f]);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A fresh bearer token: 256 random bits, URL-safe base64.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a bearer token (join links, sessions, setup): only
/// its SHA-256, so a copy of the database grants no access.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> Cipher {
        Cipher::from_key(&[7u8; 32]).unwrap()
    }

    #[test]
    fn sealed_value_opens_only_in_its_place() {
        let c = cipher();
        let sealed = c.seal("patients.name:1", "Grethe Hansen");
        assert_eq!(c.open("patients.name:1", &sealed).unwrap(), "Grethe Hansen");
        assert!(c.open("patients.name:2", &sealed).is_err());
        assert!(!sealed.windows(6).any(|w| w == b"Grethe"));
    }

    #[test]
    fn a_different_key_cannot_open() {
        let sealed = cipher().seal("x", "secret");
        let other = Cipher::from_key(&[8u8; 32]).unwrap();
        assert!(other.open("x", &sealed).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let c = cipher();
        let mut sealed = c.seal("x", "secret");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(c.open("x", &sealed).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(Cipher::from_key(&[0u8; 16]).is_err());
        assert!(Cipher::from_base64("not base64!").is_err());
        assert!(Cipher::from_base64(&Cipher::generate_key_base64()).is_ok());
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.len() >= 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
