//! The audit log: who read or wrote which patient's data, and when.
//!
//! Append-only and hash-chained per clinic: each entry's hash covers the
//! previous entry's hash and its own fields, so editing, deleting or
//! reordering any entry breaks the chain at that point
//! ([`Store::verify_audit_chain`]). The chain head lives in `audit_heads`;
//! appending updates the head row first, which serialises concurrent
//! appenders of one clinic on both databases.
//!
//! The hash is an HMAC under a key derived from the data-at-rest key, which
//! is not in the database: someone who can write the database but does not
//! hold the key cannot delete an entry and recompute the chain after it.
//! Keyed hashes are written `k1:<hex>`. Chains written before keying
//! (plain SHA-256) are re-keyed once at start-up if they verify; one that
//! does not stays as it is and reports broken. An operator exports signed
//! heads ([`Store::signed_heads`]) and checks them later
//! ([`Store::check_signed_head`]): a head once exported cannot be dropped
//! or rewritten even by someone who holds the key but not the export.

use chrono::{DateTime, Utc};
use konsult_domain::{ClinicId, ConsultationId, PatientId, TherapistId};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::crypto::Cipher;
use crate::{from_ms, ms, Result, Store, StoreError, Tx};

/// The prefix of a keyed entry hash.
const KEYED: &str = "k1:";

/// The hash that the first entry of a chain links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A logged-in therapist or admin.
    Therapist(TherapistId),
    /// The patient, through the join link of a consultation.
    PatientLink(ConsultationId),
    /// Konsult itself (retention job, signaling events).
    System,
}

impl Actor {
    pub(crate) fn encode(&self) -> String {
        match self {
            Actor::Therapist(id) => format!("therapist:{id}"),
            Actor::PatientLink(id) => format!("patient-link:{id}"),
            Actor::System => "system".to_owned(),
        }
    }

    /// Reads an actor as stored in the log; `None` for text it never wrote.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "system" {
            return Some(Actor::System);
        }
        if let Some(id) = text.strip_prefix("therapist:") {
            return id
                .parse()
                .ok()
                .map(|u| Actor::Therapist(TherapistId::from_uuid(u)));
        }
        let id = text.strip_prefix("patient-link:")?;
        id.parse()
            .ok()
            .map(|u| Actor::PatientLink(ConsultationId::from_uuid(u)))
    }

    /// The stored form (`therapist:<id>`, `patient-link:<consultation>`, `system`).
    pub fn as_stored(&self) -> String {
        self.encode()
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the clinic's chain, from 1.
    pub seq: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it (`therapist:<id>`, `patient-link:<consultation>`, `system`).
    pub actor: String,
    /// What was done, e.g. `patient.read`.
    pub action: String,
    /// Whose data, when it concerns a patient.
    pub patient: Option<uuid::Uuid>,
    /// The record acted on (an id), when not the patient itself.
    pub subject: Option<String>,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

/// A keyed entry hash: `k1:` and the HMAC of the entry under the audit key.
#[allow(clippy::too_many_arguments)]
fn keyed_hash(
    cipher: &Cipher,
    prev: &str,
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    patient: &str,
    subject: &str,
) -> String {
    let seq = seq.to_string();
    let at_ms = at_ms.to_string();
    let mac = cipher.audit_mac(
        "audit entry",
        &[prev, &seq, &at_ms, actor, action, patient, subject],
    );
    format!("{KEYED}{mac}")
}

/// The unkeyed hash of chains written before the key (SHA-256).
fn legacy_hash(
    prev: &str,
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    patient: &str,
    subject: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        &at_ms.to_string(),
        actor,
        action,
        patient,
        subject,
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(h.finalize())
}

impl AuditEntry {
    /// This entry's keyed hash, linked to `prev`.
    fn keyed_hash(&self, cipher: &Cipher, prev: &str) -> String {
        keyed_hash(
            cipher,
            prev,
            self.seq,
            ms(self.at),
            &self.actor,
            &self.action,
            &self.patient.map(|p| p.to_string()).unwrap_or_default(),
            self.subject.as_deref().unwrap_or(""),
        )
    }

    /// This entry's hash as chains before the key had it, linked to `prev`.
    fn legacy_hash(&self, prev: &str) -> String {
        legacy_hash(
            prev,
            self.seq,
            ms(self.at),
            &self.actor,
            &self.action,
            &self.patient.map(|p| p.to_string()).unwrap_or_default(),
            self.subject.as_deref().unwrap_or(""),
        )
    }
}

/// Starts a clinic's chain; called when the clinic is created.
pub(crate) async fn start_chain(tx: &mut Tx, clinic: ClinicId) -> Result<()> {
    sqlx::query("INSERT INTO audit_heads (clinic_id, seq, head) VALUES ($1, 0, $2)")
        .bind(clinic.to_string())
        .bind(GENESIS)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Appends an entry inside the caller's transaction, so the audit record
/// and the change it describes commit together or not at all.
pub async fn append(
    tx: &mut Tx,
    clinic: ClinicId,
    at: DateTime<Utc>,
    actor: Actor,
    action: &str,
    patient: Option<PatientId>,
    subject: Option<&str>,
) -> Result<()> {
    // Bumping the sequence first takes the row lock on PostgreSQL, so two
    // appenders of one clinic cannot both link to the same head.
    let row = sqlx::query(
        "UPDATE audit_heads SET seq = seq + 1 WHERE clinic_id = $1 RETURNING seq, head",
    )
    .bind(clinic.to_string())
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound("clinic"))?;
    let seq: i64 = row.try_get("seq")?;
    let prev: String = row.try_get("head")?;
    let actor = actor.encode();
    let patient = patient.map(|p| p.to_string());
    let at_ms = ms(at);
    let hash = keyed_hash(
        tx.cipher(),
        &prev,
        seq,
        at_ms,
        &actor,
        action,
        patient.as_deref().unwrap_or(""),
        subject.unwrap_or(""),
    );
    sqlx::query(
        "INSERT INTO audit_log (clinic_id, seq, at, actor, action, patient_id, subject, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(clinic.to_string())
    .bind(seq)
    .bind(at_ms)
    .bind(&actor)
    .bind(action)
    .bind(patient)
    .bind(subject)
    .bind(&prev)
    .bind(&hash)
    .execute(tx.conn())
    .await?;
    sqlx::query("UPDATE audit_heads SET head = $1 WHERE clinic_id = $2")
        .bind(&hash)
        .bind(clinic.to_string())
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Result of checking a clinic's chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ChainStatus {
    /// Every entry links to its predecessor and hashes to its stored hash.
    Intact {
        /// Number of entries checked.
        entries: i64,
    },
    /// The first entry where the chain no longer holds.
    Broken {
        /// Its sequence number.
        at_seq: i64,
    },
}

impl Store {
    /// Reads a page of a clinic's audit log, oldest first.
    pub async fn audit_entries(
        &self,
        clinic: ClinicId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, patient_id, subject, prev_hash, hash FROM audit_log
             WHERE clinic_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(clinic.to_string())
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Recomputes a clinic's whole chain and reports where it breaks.
    pub async fn verify_audit_chain(&self, clinic: ClinicId) -> Result<ChainStatus> {
        let mut prev = GENESIS.to_owned();
        let mut after = 0;
        let mut count = 0;
        loop {
            let page = self.audit_entries(clinic, after, 1000).await?;
            if page.is_empty() {
                break;
            }
            for e in &page {
                let expected = e.keyed_hash(&self.cipher, &prev);
                if e.seq != count + 1 || e.prev_hash != prev || e.hash != expected {
                    return Ok(ChainStatus::Broken { at_seq: count + 1 });
                }
                prev = e.hash.clone();
                count += 1;
            }
            after = page.last().map(|e| e.seq).unwrap_or(after);
        }
        let head: Option<String> =
            sqlx::query_scalar("SELECT head FROM audit_heads WHERE clinic_id = $1")
                .bind(clinic.to_string())
                .fetch_optional(&self.pool)
                .await?;
        if head.as_deref().is_some_and(|h| h != prev) {
            // Entries were removed from the end.
            return Ok(ChainStatus::Broken { at_seq: count + 1 });
        }
        Ok(ChainStatus::Intact { entries: count })
    }

    /// Re-keys every chain written before the audit key: a chain whose head
    /// is not keyed is verified with the old unkeyed hash and, if intact,
    /// rewritten with keyed hashes and an `audit.rekeyed` entry, in one
    /// transaction. A chain that does not verify is left as it is (and
    /// reports broken). Returns the number of chains re-keyed.
    ///
    /// Run it once per installation, at the first start after the upgrade,
    /// and keep the fact that it ran *outside* the database (the server keeps
    /// a marker next to the key file): someone who can write the database
    /// could otherwise delete an entry, recompute the whole chain unkeyed,
    /// and have the next start re-key the forgery as intact.
    pub async fn rekey_audit_chains(&self) -> Result<usize> {
        let heads = sqlx::query("SELECT clinic_id, head FROM audit_heads")
            .fetch_all(&self.pool)
            .await?;
        let mut rekeyed = 0;
        for row in heads {
            let head: String = row.try_get("head")?;
            if head == GENESIS || head.starts_with(KEYED) {
                continue;
            }
            let clinic = ClinicId::from_uuid(crate::get_uuid(&row, "clinic_id")?);
            let mut tx = self.begin().await?;
            let entries = Self::chain_in(&mut tx, clinic).await?;
            let mut prev = GENESIS.to_owned();
            let mut intact = true;
            for (i, e) in entries.iter().enumerate() {
                let expected = e.legacy_hash(&prev);
                if e.seq != i as i64 + 1 || e.prev_hash != prev || e.hash != expected {
                    intact = false;
                    break;
                }
                prev = e.hash.clone();
            }
            if !intact || prev != head {
                tracing::error!(%clinic, "the audit chain does not verify; it is not re-keyed");
                continue;
            }
            let mut prev = GENESIS.to_owned();
            for e in &entries {
                let hash = e.keyed_hash(&self.cipher, &prev);
                sqlx::query(
                    "UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE clinic_id = $3 AND seq = $4",
                )
                .bind(&prev)
                .bind(&hash)
                .bind(clinic.to_string())
                .bind(e.seq)
                .execute(tx.conn())
                .await?;
                prev = hash;
            }
            sqlx::query("UPDATE audit_heads SET head = $1 WHERE clinic_id = $2")
                .bind(&prev)
                .bind(clinic.to_string())
                .execute(tx.conn())
                .await?;
            let subject = format!("{} entries", entries.len());
            append(
                &mut tx,
                clinic,
                Utc::now(),
                Actor::System,
                "audit.rekeyed",
                None,
                Some(&subject),
            )
            .await?;
            tx.commit().await?;
            rekeyed += 1;
        }
        Ok(rekeyed)
    }

    /// Rewrites a clinic's chain with the unkeyed SHA-256 hashes it had
    /// before the audit key, head included: what an installation from before
    /// the key holds, and exactly what someone who can write the database but
    /// lacks the key can forge. For tests of re-keying and tamper detection.
    #[doc(hidden)]
    pub async fn rewrite_chain_unkeyed(&self, clinic: ClinicId) -> Result<()> {
        let mut tx = self.begin().await?;
        let entries = Self::chain_in(&mut tx, clinic).await?;
        let mut prev = GENESIS.to_owned();
        for e in &entries {
            let hash = e.legacy_hash(&prev);
            sqlx::query(
                "UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE clinic_id = $3 AND seq = $4",
            )
            .bind(&prev)
            .bind(&hash)
            .bind(clinic.to_string())
            .bind(e.seq)
            .execute(tx.conn())
            .await?;
            prev = hash;
        }
        sqlx::query("UPDATE audit_heads SET head = $1, seq = $2 WHERE clinic_id = $3")
            .bind(&prev)
            .bind(entries.last().map_or(0, |e| e.seq))
            .bind(clinic.to_string())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A clinic's whole chain, oldest first, read in the caller's
    /// transaction.
    async fn chain_in(tx: &mut Tx, clinic: ClinicId) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, patient_id, subject, prev_hash, hash FROM audit_log
             WHERE clinic_id = $1 ORDER BY seq",
        )
        .bind(clinic.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Every clinic's chain head, signed with the audit key, for an
    /// operator to keep outside the database ([`Store::check_signed_head`]).
    pub async fn signed_heads(&self, now: DateTime<Utc>) -> Result<Vec<SignedHead>> {
        let rows = sqlx::query("SELECT clinic_id, seq, head FROM audit_heads ORDER BY clinic_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let mut head = SignedHead {
                    clinic: crate::get_uuid(r, "clinic_id")?,
                    seq: r.try_get("seq")?,
                    head: r.try_get("head")?,
                    at: now,
                    signature: String::new(),
                };
                head.signature = self.head_signature(&head);
                Ok(head)
            })
            .collect()
    }

    fn head_signature(&self, head: &SignedHead) -> String {
        self.cipher.audit_mac(
            "audit head",
            &[
                &head.clinic.to_string(),
                &head.seq.to_string(),
                &head.head,
                &head.at.to_rfc3339(),
            ],
        )
    }

    /// Checks an exported head against the database: its signature is the
    /// audit key's, the clinic's chain verifies, and its entry `seq` still
    /// has the exported hash (entries may have been appended since, none
    /// removed or rewritten).
    pub async fn check_signed_head(&self, head: &SignedHead) -> Result<HeadCheck> {
        let expected = self.head_signature(head);
        let signed = expected.len() == head.signature.len()
            && expected
                .bytes()
                .zip(head.signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !signed {
            return Ok(HeadCheck::BadSignature);
        }
        let clinic = ClinicId::from_uuid(head.clinic);
        if let ChainStatus::Broken { at_seq } = self.verify_audit_chain(clinic).await? {
            return Ok(HeadCheck::ChainBroken { at_seq });
        }
        if head.seq == 0 {
            return Ok(HeadCheck::Holds);
        }
        let stored: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_log WHERE clinic_id = $1 AND seq = $2")
                .bind(clinic.to_string())
                .bind(head.seq)
                .fetch_optional(&self.pool)
                .await?;
        Ok(if stored.as_deref() == Some(head.head.as_str()) {
            HeadCheck::Holds
        } else {
            HeadCheck::Rewritten
        })
    }
}

/// A clinic's chain head at a moment, signed with the audit key: what an
/// operator exports (`konsult audit heads`) and checks later.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SignedHead {
    /// The clinic.
    pub clinic: uuid::Uuid,
    /// The number of entries then.
    pub seq: i64,
    /// The hash of the last entry then ([`GENESIS`] for none).
    pub head: String,
    /// When it was exported.
    pub at: DateTime<Utc>,
    /// HMAC over the above under the audit key, in hex.
    pub signature: String,
}

/// What checking an exported head found.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HeadCheck {
    /// The head is in the chain and the chain verifies.
    Holds,
    /// The signature is not the audit key's: not an export of this installation.
    BadSignature,
    /// The chain does not verify from this entry on.
    ChainBroken {
        /// The first entry where it breaks.
        at_seq: i64,
    },
    /// The chain verifies but no longer holds the exported head: it was
    /// truncated or rewritten with the key.
    Rewritten,
}

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        at: from_ms(r.try_get("at")?)?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        patient: r
            .try_get::<Option<String>, _>("patient_id")?
            .map(|p| crate::parse_uuid(&p))
            .transpose()?,
        subject: r.try_get("subject")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}
