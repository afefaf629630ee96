//! The audit log: who read or wrote which patient's data, and when.
//!
//! Append-only and hash-chained per clinic: each entry's hash covers the
//! previous entry's hash and its own fields, so editing, deleting or
//! reordering any entry breaks the chain at that point ([`verify`]). The
//! chain head lives in `audit_heads`; appending updates the head row first,
//! which serialises concurrent appenders of one clinic on both databases.

use chrono::{DateTime, Utc};
use konsult_domain::{ClinicId, ConsultationId, PatientId, TherapistId};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{from_ms, ms, Result, Store, StoreError, Tx};

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
    fn encode(&self) -> String {
        match self {
            Actor::Therapist(id) => format!("therapist:{id}"),
            Actor::PatientLink(id) => format!("patient-link:{id}"),
            Actor::System => "system".to_owned(),
        }
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

fn entry_hash(
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
    let hash = entry_hash(
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
        rows.iter()
            .map(|r| {
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
            })
            .collect()
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
                let expected = entry_hash(
                    &prev,
                    e.seq,
                    ms(e.at),
                    &e.actor,
                    &e.action,
                    &e.patient.map(|p| p.to_string()).unwrap_or_default(),
                    e.subject.as_deref().unwrap_or(""),
                );
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
}
