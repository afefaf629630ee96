//! What a room saves so that its participants can resume after a restart
//! of the server (or, later, on another node).
//!
//! A [`RoomRecord`] is written with every change of the room that matters
//! for resuming ([`crate::Output::Write`]) and read back with
//! `Hub::restore`. It holds no message content, no address and no bearer
//! token: resume tokens only as SHA-256 hashes, the patient's join link
//! only as the opaque [`LinkRef`] the pump gave the core.

use konsult_domain::{Evidence, EvidencePolicy};
use konsult_protocol::{CandidatePolicy, ResumeToken, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The version of [`RoomRecord`]'s layout. Version 2 added each
/// participant's id; version 1 records (without ids) are still read.
pub const RECORD_VERSION: u32 = 2;

/// The oldest layout still read.
const OLDEST_VERSION: u32 = 1;

/// An opaque name of the join link a patient came with (the pump's choice,
/// for example a prefix of the link's token hash). Used to end the
/// connections of a revoked link. Never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinkRef(pub String);

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 of a resume token, as the core keeps and saves it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a token.
    pub fn of(token: &ResumeToken) -> Self {
        TokenHash(Sha256::digest(token.as_str().as_bytes()).into())
    }

    /// Compares in constant time.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TokenHash(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TokenHash::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("a token hash is 64 hex digits"))
    }
}

/// One participant of a saved room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantRecord {
    /// The pump's id of the participant (absent in version 1 records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// The protocol version of its latest join, when not 1 (a resume
    /// continues in the same version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// A patient's own admission and two-way evidence (layout 2; in a
    /// layout 1 record the room's `admitted` and `evidence` are the one
    /// patient's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallRecord>,
    /// Therapist or patient.
    pub role: Role,
    /// The hash of the participant's current resume token.
    pub token: TokenHash,
    /// Hashes of tokens of devices that were replaced (they get `replaced`).
    pub superseded: Vec<TokenHash>,
    /// The next `seq` to send. Every message clients may rely on (every
    /// message of a committed event) has a lower one.
    pub next_seq: u64,
    /// The patient's join link.
    pub link: Option<LinkRef>,
}

/// Where one patient of a saved room stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRecord {
    /// Admitted (in the call).
    pub admitted: bool,
    /// Two-way media of its current call, if established, and by what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// A room as saved: enough to take both participants back without a new
/// admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRecord {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The room's candidate policy.
    pub candidate_policy: CandidatePolicy,
    /// The clinic's evidence policy.
    pub evidence_policy: EvidencePolicy,
    /// The patient was admitted at least once: the consultation's call has
    /// started.
    pub call_started: bool,
    /// The patient is admitted now.
    pub admitted: bool,
    /// Two-way media of the current call, if established, and by what.
    pub evidence: Option<Evidence>,
    /// Who is in the room.
    pub participants: Vec<ParticipantRecord>,
}

impl RoomRecord {
    /// The record as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("room records serialise")
    }

    /// Reads a record written by [`RoomRecord::to_json`].
    pub fn from_json(text: &str) -> Result<Self, RecordError> {
        let record: RoomRecord =
            serde_json::from_str(text).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if !RoomRecord::is_readable(record.version) {
            return Err(RecordError::Version(record.version));
        }
        Ok(record)
    }

    /// Whether this version reads records of layout `version`.
    pub fn is_readable(version: u32) -> bool {
        (OLDEST_VERSION..=RECORD_VERSION).contains(&version)
    }
}

/// A saved record that cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a record.
    #[error("malformed room record: {0}")]
    Malformed(String),
    /// Written by another version.
    #[error("room record version {0} is not supported")]
    Version(u32),
    /// The consultation already has a room.
    #[error("the consultation already has a room")]
    RoomExists,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_round_trip_and_never_show() {
        let token = ResumeToken::parse("resume-token-00000001".into()).unwrap();
        let hash = TokenHash::of(&token);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json.len(), 66);
        assert!(!json.contains("resume-token"));
        let back: TokenHash = serde_json::from_str(&json).unwrap();
        assert!(back.ct_eq(&hash));
        assert_eq!(format!("{hash:?}"), "TokenHash(..)");
        assert!(serde_json::from_str::<TokenHash>("\"00\"").is_err());
    }

    #[test]
    fn records_refuse_other_versions() {
        let record = RoomRecord {
            version: RECORD_VERSION + 1,
            candidate_policy: CandidatePolicy::All,
            evidence_policy: EvidencePolicy::ClientReported,
            call_started: false,
            admitted: false,
            evidence: None,
            participants: vec![],
        };
        assert_eq!(
            RoomRecord::from_json(&record.to_json()),
            Err(RecordError::Version(RECORD_VERSION + 1))
        );
    }
}
