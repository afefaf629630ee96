//! Retention: each period is a clinic setting ([`crate::clinics::Retention`])
//! and [`Store::enforce_retention`] is the job that applies it. Signaling
//! metadata (addresses, SDP, candidates) is never stored, so it needs none.
//!
//! - Journal notes (and the patient-safety confirmations beside them) are
//!   kept `journal_years` after the patient's *last* entry, then erased.
//! - Billing lines are kept until `billing_years` after the end of the
//!   financial (calendar) year of their day, then deleted with their
//!   corrections and decisions.
//! - Call events and login events are kept `event_days`; expired sessions
//!   and join links that closed more than `event_days` ago are deleted.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use konsult_domain::{ClinicId, PatientId, TherapistId};
use serde::Serialize;

use crate::audit::{self, Actor};
use crate::{ms, Result, Store, StoreError};

/// What one run of the job removed in one clinic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Patients whose journal notes were erased.
    pub journals_erased: u64,
    /// Billing lines deleted.
    pub billing_lines_deleted: u64,
    /// Call events deleted.
    pub events_deleted: u64,
    /// Expired join links deleted.
    pub links_deleted: u64,
    /// Login events deleted.
    pub login_events_deleted: u64,
}

fn years_before(now: DateTime<Utc>, years: u32) -> DateTime<Utc> {
    now.checked_sub_months(Months::new(years.saturating_mul(12)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Store {
    /// Applies the clinic's retention periods at `now`.
    pub async fn enforce_retention(
        &self,
        clinic: ClinicId,
        now: DateTime<Utc>,
    ) -> Result<RetentionReport> {
        let settings = self.clinic(clinic).await?.retention;
        let mut report = RetentionReport::default();
        let mut tx = self.begin().await?;

        // Journals: patients whose newest journal entry is older than the period.
        let journal_cutoff = ms(years_before(now, settings.journal_years));
        let patients: Vec<String> = sqlx::query_scalar(
            "SELECT patient_id FROM consultations WHERE clinic_id = $1 AND journal_enc IS NOT NULL
             GROUP BY patient_id HAVING MAX(completed_at) < $2",
        )
        .bind(clinic.to_string())
        .bind(journal_cutoff)
        .fetch_all(tx.conn())
        .await?;
        for p in &patients {
            sqlx::query("UPDATE consultations SET journal_enc = NULL, safety_enc = NULL WHERE clinic_id = $1 AND patient_id = $2")
                .bind(clinic.to_string())
                .bind(p)
                .execute(tx.conn())
                .await?;
            let patient = PatientId::from_uuid(crate::parse_uuid(p)?);
            audit::append(
                &mut tx,
                clinic,
                now,
                Actor::System,
                "retention.journal_erased",
                Some(patient),
                None,
            )
            .await?;
            report.journals_erased += 1;
        }

        // Billing: kept until `billing_years` after the end of the day's year.
        // A line of day D may go once now >= 1 Jan (year(D) + 1 + years).
        let keep_from_year = now.year() - 1 - settings.billing_years as i32;
        let cutoff_day = NaiveDate::from_ymd_opt(keep_from_year + 1, 1, 1)
            .ok_or_else(|| StoreError::Corrupt("retention year".into()))?;
        const OLD: &str = "SELECT id FROM billing_lines WHERE clinic_id = $1 AND calendar_day < $2";
        let old_lines: Vec<String> = sqlx::query_scalar(OLD)
            .bind(clinic.to_string())
            .bind(cutoff_day.to_string())
            .fetch_all(tx.conn())
            .await?;
        if !old_lines.is_empty() {
            sqlx::query(&format!("UPDATE billing_decisions SET line_id = NULL WHERE clinic_id = $1 AND line_id IN ({OLD})"))
                .bind(clinic.to_string())
                .bind(cutoff_day.to_string())
                .execute(tx.conn())
                .await?;
            sqlx::query(&format!("UPDATE billing_decision_history SET line_id = NULL WHERE clinic_id = $1 AND line_id IN ({OLD})"))
                .bind(clinic.to_string())
                .bind(cutoff_day.to_string())
                .execute(tx.conn())
                .await?;
            // A reversal shares its original's service day, so both go
            // together; unlink them first (each references the other).
            sqlx::query(
                "UPDATE billing_lines SET reversed_by = NULL WHERE clinic_id = $1 AND calendar_day < $2",
            )
            .bind(clinic.to_string())
            .bind(cutoff_day.to_string())
            .execute(tx.conn())
            .await?;
            // Corrections first: they reference the lines they correct.
            let corrections = sqlx::query(
                "DELETE FROM billing_lines WHERE clinic_id = $1 AND calendar_day < $2 AND correction_of IS NOT NULL",
            )
            .bind(clinic.to_string())
            .bind(cutoff_day.to_string())
            .execute(tx.conn())
            .await?
            .rows_affected();
            let originals =
                sqlx::query("DELETE FROM billing_lines WHERE clinic_id = $1 AND calendar_day < $2")
                    .bind(clinic.to_string())
                    .bind(cutoff_day.to_string())
                    .execute(tx.conn())
                    .await?
                    .rows_affected();
            report.billing_lines_deleted = corrections + originals;
            audit::append(
                &mut tx,
                clinic,
                now,
                Actor::System,
                "retention.billing_deleted",
                None,
                Some(&format!("before {cutoff_day}")),
            )
            .await?;
        }

        let event_cutoff = ms(now - chrono::Duration::days(i64::from(settings.event_days)));
        report.events_deleted =
            sqlx::query("DELETE FROM consultation_events WHERE clinic_id = $1 AND at < $2")
                .bind(clinic.to_string())
                .bind(event_cutoff)
                .execute(tx.conn())
                .await?
                .rows_affected();
        report.links_deleted =
            sqlx::query("DELETE FROM join_links WHERE clinic_id = $1 AND closes_at < $2")
                .bind(clinic.to_string())
                .bind(event_cutoff)
                .execute(tx.conn())
                .await?
                .rows_affected();
        report.login_events_deleted =
            sqlx::query("DELETE FROM login_events WHERE clinic_id = $1 AND at < $2")
                .bind(clinic.to_string())
                .bind(event_cutoff)
                .execute(tx.conn())
                .await?
                .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE clinic_id = $1 AND expires_at <= $2")
            .bind(clinic.to_string())
            .bind(ms(now))
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Erases a patient's personal data (GDPR art. 17) where the retention
    /// rules allow it: not while any journal note of theirs must still be
    /// kept. Billing lines keep only the pseudonym. Erasing is audited.
    pub async fn erase_patient(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.require_patient(&mut tx, clinic, patient).await?;
        let last_entry: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(completed_at) FROM consultations WHERE clinic_id = $1 AND patient_id = $2 AND journal_enc IS NOT NULL",
        )
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_one(tx.conn())
        .await?;
        if let Some(last) = last_entry {
            let years = self.clinic(clinic).await?.retention.journal_years;
            let until = crate::from_ms(last)?
                .checked_add_months(Months::new(years * 12))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            return Err(StoreError::Conflict(format!(
                "the journal must be kept until {} ({years} years after the last entry)",
                until.format("%Y-%m-%d")
            )));
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM consultations WHERE clinic_id = $1 AND patient_id = $2
             AND state IN ('scheduled', 'open', 'waiting', 'in_call', 'ended')",
        )
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_one(tx.conn())
        .await?;
        if open > 0 {
            return Err(StoreError::Conflict(
                "the patient has consultations that are not closed".into(),
            ));
        }
        // A safety confirmation (where the patient was, a phone number) of a
        // consultation without a journal note to keep goes with the rest.
        sqlx::query(
            "UPDATE consultations SET safety_enc = NULL WHERE clinic_id = $1 AND patient_id = $2",
        )
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .execute(tx.conn())
        .await?;
        // The values replaced by rectifications are personal data too.
        sqlx::query("DELETE FROM patient_revisions WHERE clinic_id = $1 AND patient_id = $2")
            .bind(clinic.to_string())
            .bind(patient.to_string())
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "UPDATE patients SET name_enc = NULL, cpr_enc = NULL, phone_enc = NULL, email_enc = NULL, cpr_lookup = NULL, erased_at = $1
             WHERE clinic_id = $2 AND id = $3",
        )
        .bind(ms(now))
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .execute(tx.conn())
        .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "patient.erase",
            Some(patient),
            None,
        )
        .await?;
        tx.commit().await
    }
}
