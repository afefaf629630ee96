//! Clinics, their settings and the one-time setup of a new installation.

use chrono::{DateTime, Utc};
use konsult_domain::{ClinicId, FeeTable, Speciale, TherapistId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::crypto::{new_token, token_hash};
use crate::therapists::{insert_therapist, NewTherapist};
use crate::{get_flag, get_uuid, ms, Result, Store, StoreError};

/// How long each kind of record is kept; enforced by the retention job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Journal notes: at least 5 years from the last entry (physiotherapists).
    pub journal_years: u32,
    /// Billing lines: 2 years under the agreement, but accounting records are
    /// kept 5 years after the financial year, so 5 by default.
    pub billing_years: u32,
    /// Consultation events (admitted, media, ended; no addresses).
    pub event_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            journal_years: 5,
            billing_years: 5,
            event_days: 365,
        }
    }
}

impl Retention {
    /// Rejects periods below the legal minimums.
    pub fn validate(&self) -> Result<(), String> {
        if self.journal_years < 5 {
            return Err("journal_years must be at least 5 (journalføringsbekendtgørelsen)".into());
        }
        if self.billing_years < 2 {
            return Err("billing_years must be at least 2 (the agreement)".into());
        }
        if self.event_days == 0 {
            return Err("event_days must be at least 1".into());
        }
        Ok(())
    }
}

/// A clinic and its settings.
#[derive(Debug, Clone, Serialize)]
pub struct Clinic {
    /// Its id.
    pub id: ClinicId,
    /// Its name.
    pub name: String,
    /// The clinic's provider number (ydernummer).
    pub ydernummer: String,
    /// The billing specialties the clinic works under.
    pub specialer: Vec<Speciale>,
    /// The clinic's own fee table, when it loaded one; else the shipped one.
    #[serde(skip)]
    pub fee_table_json: Option<String>,
    /// Whether consultations force relay-only ICE unless overridden.
    pub relay_only_default: bool,
    /// Retention periods.
    pub retention: Retention,
}

impl Clinic {
    /// The fee table in force for this clinic.
    pub fn fee_table(&self) -> Result<FeeTable> {
        match &self.fee_table_json {
            None => Ok(FeeTable::default_table()),
            Some(json) => FeeTable::from_json_str(json)
                .map_err(|e| StoreError::Corrupt(format!("clinic fee table: {e}"))),
        }
    }
}

/// What the setup form gives.
#[derive(Debug, Clone)]
pub struct NewClinic {
    /// Name.
    pub name: String,
    /// Ydernummer.
    pub ydernummer: String,
    /// Specialer.
    pub specialer: Vec<Speciale>,
}

/// Changes an admin can make to the clinic's settings.
#[derive(Debug, Clone, Default)]
pub struct ClinicUpdate {
    /// New name.
    pub name: Option<String>,
    /// New ydernummer.
    pub ydernummer: Option<String>,
    /// New specialer.
    pub specialer: Option<Vec<Speciale>>,
    /// New relay-only default.
    pub relay_only_default: Option<bool>,
    /// New retention periods (validated by the caller).
    pub retention: Option<Retention>,
}

fn encode_specialer(s: &[Speciale]) -> String {
    s.iter()
        .map(|s| s.code().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_specialer(text: &str) -> Result<Vec<Speciale>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u16>()
                .ok()
                .and_then(|n| Speciale::try_from(n).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("speciale {s:?}")))
        })
        .collect()
}

impl Store {
    /// On an installation without any clinic, issues a fresh one-time setup
    /// token (replacing any earlier one) and returns it; otherwise `None`.
    pub async fn issue_setup_token(&self, now: DateTime<Utc>) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let clinics: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clinics")
            .fetch_one(tx.conn())
            .await?;
        if clinics > 0 {
            return Ok(None);
        }
        let token = new_token();
        sqlx::query("DELETE FROM setup_tokens")
            .execute(tx.conn())
            .await?;
        sqlx::query("INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2)")
            .bind(token_hash(&token))
            .bind(ms(now))
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(Some(token))
    }

    /// Creates the first clinic and its admin with the one-time setup token.
    /// The token is used up; a wrong or spent token changes nothing.
    pub async fn setup_first_clinic(
        &self,
        setup_token: &str,
        clinic: NewClinic,
        admin: NewTherapist,
        now: DateTime<Utc>,
    ) -> Result<(ClinicId, TherapistId)> {
        let mut tx = self.begin().await?;
        let used = sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1")
            .bind(token_hash(setup_token))
            .execute(tx.conn())
            .await?
            .rows_affected();
        if used != 1 {
            return Err(StoreError::NotFound("setup token"));
        }
        let ids = self
            .insert_clinic_with_admin(&mut tx, clinic, admin, now)
            .await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Creates a clinic and its first admin without a setup token (demo data,
    /// tests, operators' command line).
    pub async fn create_clinic(
        &self,
        clinic: NewClinic,
        admin: NewTherapist,
        now: DateTime<Utc>,
    ) -> Result<(ClinicId, TherapistId)> {
        let mut tx = self.begin().await?;
        let ids = self
            .insert_clinic_with_admin(&mut tx, clinic, admin, now)
            .await?;
        sqlx::query("DELETE FROM setup_tokens")
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn insert_clinic_with_admin(
        &self,
        tx: &mut crate::Tx,
        clinic: NewClinic,
        admin: NewTherapist,
        now: DateTime<Utc>,
    ) -> Result<(ClinicId, TherapistId)> {
        let id = ClinicId::from_uuid(uuid::Uuid::new_v4());
        sqlx::query(
            "INSERT INTO clinics (id, name, ydernummer, specialer, fee_table, relay_only_default, retention, created_at)
             VALUES ($1, $2, $3, $4, NULL, 1, $5, $6)",
        )
        .bind(id.to_string())
        .bind(&clinic.name)
        .bind(&clinic.ydernummer)
        .bind(encode_specialer(&clinic.specialer))
        .bind(serde_json::to_string(&Retention::default()).expect("retention serialises"))
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
        audit::start_chain(tx, id).await?;
        let admin_id = insert_therapist(self, tx, id, admin, now).await?;
        audit::append(
            tx,
            id,
            now,
            Actor::Therapist(admin_id),
            "clinic.create",
            None,
            Some(&id.to_string()),
        )
        .await?;
        Ok((id, admin_id))
    }

    /// Reads a clinic.
    pub async fn clinic(&self, id: ClinicId) -> Result<Clinic> {
        let row = sqlx::query(
            "SELECT id, name, ydernummer, specialer, fee_table, relay_only_default, retention
             FROM clinics WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("clinic"))?;
        Ok(Clinic {
            id: ClinicId::from_uuid(get_uuid(&row, "id")?),
            name: row.try_get("name")?,
            ydernummer: row.try_get("ydernummer")?,
            specialer: decode_specialer(&row.try_get::<String, _>("specialer")?)?,
            fee_table_json: row.try_get("fee_table")?,
            relay_only_default: get_flag(&row, "relay_only_default")?,
            retention: serde_json::from_str(&row.try_get::<String, _>("retention")?)
                .map_err(|e| StoreError::Corrupt(format!("retention: {e}")))?,
        })
    }

    /// All clinic ids (for the retention job).
    pub async fn clinic_ids(&self) -> Result<Vec<ClinicId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM clinics ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?;
        ids.iter()
            .map(|s| Ok(ClinicId::from_uuid(crate::parse_uuid(s)?)))
            .collect()
    }

    /// Changes a clinic's settings.
    pub async fn update_clinic(
        &self,
        id: ClinicId,
        by: TherapistId,
        update: ClinicUpdate,
        now: DateTime<Utc>,
    ) -> Result<Clinic> {
        let current = self.clinic(id).await?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE clinics SET name = $1, ydernummer = $2, specialer = $3, relay_only_default = $4, retention = $5
             WHERE id = $6",
        )
        .bind(update.name.unwrap_or(current.name))
        .bind(update.ydernummer.unwrap_or(current.ydernummer))
        .bind(encode_specialer(
            &update.specialer.unwrap_or(current.specialer),
        ))
        .bind(i64::from(
            update.relay_only_default.unwrap_or(current.relay_only_default),
        ))
        .bind(
            serde_json::to_string(&update.retention.unwrap_or(current.retention))
                .expect("retention serialises"),
        )
        .bind(id.to_string())
        .execute(tx.conn())
        .await?;
        audit::append(
            &mut tx,
            id,
            now,
            Actor::Therapist(by),
            "clinic.update",
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        self.clinic(id).await
    }

    /// Replaces the clinic's fee table (already validated by the domain).
    pub async fn set_fee_table(
        &self,
        id: ClinicId,
        by: TherapistId,
        table: &FeeTable,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let json = table.to_json_string();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE clinics SET fee_table = $1 WHERE id = $2")
            .bind(json)
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        audit::append(
            &mut tx,
            id,
            now,
            Actor::Therapist(by),
            "clinic.fee_table",
            None,
            None,
        )
        .await?;
        tx.commit().await
    }
}
