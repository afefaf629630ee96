//! Clinics, their settings and the one-time setup of a new installation.

use chrono::{DateTime, Duration, Utc};
use konsult_domain::{ClinicId, EvidencePolicy, FeeTable, Speciale, TherapistId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::crypto::{new_token, token_hash};
use crate::therapists::{insert_therapist, NewTherapist};
use crate::{from_ms, get_flag, get_uuid, ms, Result, Store, StoreError};

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

/// The clinic's own privacy information for patients (the join page's
/// notice). The contact is how patients reach the clinic about their data;
/// without own texts the default notice is shown, filled in from the
/// clinic's name, contact and retention periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyText {
    /// Address, phone or e-mail for questions about personal data.
    pub contact: String,
    /// The clinic's own notice in Danish, replacing the default text.
    pub text_da: Option<String>,
    /// The clinic's own notice in English.
    pub text_en: Option<String>,
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
    /// Which evidence of two-way media the clinic accepts for billing.
    /// `relay_observed` makes every consultation relay-only.
    pub evidence_policy: EvidencePolicy,
    /// Retention periods.
    pub retention: Retention,
    /// The clinic's privacy information, when it has set it.
    pub privacy: Option<PrivacyText>,
    /// The clinic's phone number for patients, when it has set one.
    pub phone: Option<String>,
}

impl Clinic {
    /// Whether a consultation scheduled with `requested` relay-only is
    /// relay-only: the clinic's evidence policy may force it.
    pub fn relay_only(&self, requested: bool) -> bool {
        requested || self.evidence_policy.forces_relay_only()
    }

    /// The fee table in force for this clinic (its levels; see
    /// [`Store::fee_schedule`] for the fees in force on a day).
    pub fn fee_table(&self) -> Result<FeeTable> {
        fee_table_of(self.fee_table_json.as_deref())
    }
}

/// The stored fee table, or the shipped one when the clinic loaded none.
pub(crate) fn fee_table_of(json: Option<&str>) -> Result<FeeTable> {
    match json {
        None => Ok(FeeTable::default_table()),
        Some(json) => FeeTable::from_json_str(json)
            .map_err(|e| StoreError::Corrupt(format!("clinic fee table: {e}"))),
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
    /// New evidence policy.
    pub evidence_policy: Option<EvidencePolicy>,
    /// New retention periods (validated by the caller).
    pub retention: Option<Retention>,
    /// New phone number (validated by the caller); `Some(None)` removes it.
    pub phone: Option<Option<String>>,
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

async fn insert_clinic(
    tx: &mut crate::Tx,
    clinic: &NewClinic,
    now: DateTime<Utc>,
) -> Result<ClinicId> {
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
    Ok(id)
}

/// The clinic a setup token is for (`None`: the first clinic), checking
/// that it exists (`NotFound`) and is younger than `max_age`
/// (`setup_link_expired`).
async fn setup_token_row(
    conn: &mut sqlx::AnyConnection,
    setup_token: &str,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Option<ClinicId>> {
    let row = sqlx::query("SELECT created_at, clinic_id FROM setup_tokens WHERE token_hash = $1")
        .bind(token_hash(setup_token))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("setup token"))?;
    let created = from_ms(row.try_get("created_at")?)?;
    if now.signed_duration_since(created) > max_age {
        return Err(StoreError::Refused {
            code: "setup_link_expired",
            message: "the setup link has expired; ask the operator for a new one (restarting an installation without a clinic prints a new link)".into(),
        });
    }
    row.try_get::<Option<String>, _>("clinic_id")?
        .map(|c| Ok(ClinicId::from_uuid(crate::parse_uuid(&c)?)))
        .transpose()
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
        sqlx::query("DELETE FROM setup_tokens WHERE clinic_id IS NULL")
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

    /// What a setup token is for, if it exists and is younger than
    /// `max_age`: `None` for the installation's first clinic, or the clinic
    /// (added by the operator) whose first admin it sets up. An unknown or
    /// spent token is `NotFound`; an old one is refused (`setup_link_expired`).
    pub async fn setup_token_clinic(
        &self,
        setup_token: &str,
        max_age: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Clinic>> {
        let mut conn = self.pool.acquire().await?;
        match setup_token_row(&mut conn, setup_token, max_age, now).await? {
            Some(clinic) => Ok(Some(Self::clinic_on(&mut conn, clinic).await?)),
            None => Ok(None),
        }
    }

    /// Uses a one-time setup token younger than `max_age`: the first
    /// clinic's token creates `clinic` (required) and its admin; a clinic's
    /// token (from [`Store::add_clinic`]) creates that clinic's first admin,
    /// and `clinic` is ignored. A wrong or spent token changes nothing
    /// (`NotFound`); an old one is refused (`setup_link_expired`) and stays
    /// unused.
    pub async fn setup_with_token(
        &self,
        setup_token: &str,
        clinic: Option<NewClinic>,
        admin: NewTherapist,
        max_age: Duration,
        now: DateTime<Utc>,
    ) -> Result<(ClinicId, TherapistId)> {
        let mut tx = self.begin().await?;
        let target = setup_token_row(tx.conn(), setup_token, max_age, now).await?;
        sqlx::query("DELETE FROM setup_tokens WHERE token_hash = $1")
            .bind(token_hash(setup_token))
            .execute(tx.conn())
            .await?;
        let ids = match target {
            None => {
                let clinic = clinic.ok_or_else(|| StoreError::Refused {
                    code: "clinic_details_missing",
                    message: "this link sets up a new clinic: its name, ydernummer and specialer are needed".into(),
                })?;
                self.insert_clinic_with_admin(&mut tx, clinic, admin, now)
                    .await?
            }
            Some(id) => {
                let admin_id = insert_therapist(self, &mut tx, id, admin, now).await?;
                audit::append(
                    &mut tx,
                    id,
                    now,
                    Actor::Therapist(admin_id),
                    "clinic.first_admin",
                    None,
                    Some(&admin_id.to_string()),
                )
                .await?;
                (id, admin_id)
            }
        };
        tx.commit().await?;
        Ok(ids)
    }

    /// Creates the first clinic and its admin with the one-time setup token,
    /// whatever its age (see [`Store::setup_with_token`]).
    pub async fn setup_first_clinic(
        &self,
        setup_token: &str,
        clinic: NewClinic,
        admin: NewTherapist,
        now: DateTime<Utc>,
    ) -> Result<(ClinicId, TherapistId)> {
        self.setup_with_token(setup_token, Some(clinic), admin, Duration::MAX, now)
            .await
    }

    /// The operator adds a clinic (command line): the clinic without any
    /// account, audited as the operator's, and a one-time token that sets
    /// up its first admin (see [`Store::setup_with_token`]). Also voids the
    /// first-run token of an installation that had no clinic yet.
    pub async fn add_clinic(
        &self,
        clinic: NewClinic,
        now: DateTime<Utc>,
    ) -> Result<(ClinicId, String)> {
        let mut tx = self.begin().await?;
        let id = insert_clinic(&mut tx, &clinic, now).await?;
        audit::append(
            &mut tx,
            id,
            now,
            Actor::System,
            "clinic.create_by_operator",
            None,
            Some(&id.to_string()),
        )
        .await?;
        sqlx::query("DELETE FROM setup_tokens WHERE clinic_id IS NULL")
            .execute(tx.conn())
            .await?;
        let token = new_token();
        sqlx::query(
            "INSERT INTO setup_tokens (token_hash, created_at, clinic_id) VALUES ($1, $2, $3)",
        )
        .bind(token_hash(&token))
        .bind(ms(now))
        .bind(id.to_string())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok((id, token))
    }

    /// Creates a clinic and its first admin without a setup token (demo data,
    /// tests).
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
        sqlx::query("DELETE FROM setup_tokens WHERE clinic_id IS NULL")
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
        let id = insert_clinic(tx, &clinic, now).await?;
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
        let mut conn = self.pool.acquire().await?;
        Self::clinic_on(&mut conn, id).await
    }

    /// The clinic, read through a transaction: code inside a transaction
    /// never takes a second connection from the pool (under load every
    /// connection may be held by a transaction waiting for this one).
    pub(crate) async fn clinic_in(tx: &mut crate::Tx, id: ClinicId) -> Result<Clinic> {
        Self::clinic_on(tx.conn(), id).await
    }

    async fn clinic_on(conn: &mut sqlx::AnyConnection, id: ClinicId) -> Result<Clinic> {
        let row = sqlx::query(
            "SELECT id, name, ydernummer, specialer, fee_table, relay_only_default, evidence_policy, retention,
                privacy_notice, phone
             FROM clinics WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("clinic"))?;
        Ok(Clinic {
            id: ClinicId::from_uuid(get_uuid(&row, "id")?),
            name: row.try_get("name")?,
            ydernummer: row.try_get("ydernummer")?,
            specialer: decode_specialer(&row.try_get::<String, _>("specialer")?)?,
            fee_table_json: row.try_get("fee_table")?,
            relay_only_default: get_flag(&row, "relay_only_default")?,
            evidence_policy: evidence_policy_of(&row)?,
            retention: serde_json::from_str(&row.try_get::<String, _>("retention")?)
                .map_err(|e| StoreError::Corrupt(format!("retention: {e}")))?,
            privacy: row
                .try_get::<Option<String>, _>("privacy_notice")?
                .map(|json| {
                    serde_json::from_str(&json)
                        .map_err(|e| StoreError::Corrupt(format!("privacy notice: {e}")))
                })
                .transpose()?,
            phone: row.try_get("phone")?,
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
            "UPDATE clinics SET name = $1, ydernummer = $2, specialer = $3, relay_only_default = $4, retention = $5,
                evidence_policy = $6, phone = $7
             WHERE id = $8",
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
        .bind(
            update
                .evidence_policy
                .unwrap_or(current.evidence_policy)
                .code(),
        )
        .bind(update.phone.unwrap_or(current.phone))
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

    /// Sets (or, with `None`, clears) the clinic's privacy information.
    pub async fn set_privacy_text(
        &self,
        id: ClinicId,
        by: TherapistId,
        text: Option<&PrivacyText>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE clinics SET privacy_notice = $1 WHERE id = $2")
            .bind(text.map(|t| serde_json::to_string(t).expect("privacy text serialises")))
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        audit::append(
            &mut tx,
            id,
            now,
            Actor::Therapist(by),
            "clinic.privacy_notice",
            None,
            None,
        )
        .await?;
        tx.commit().await
    }

    /// The clinic a join-link token belongs to, whatever the state of the
    /// link (open, expired, revoked): the privacy notice stays readable
    /// after the consultation. `None` for an unknown token.
    pub async fn clinic_of_link(&self, token: &str) -> Result<Option<ClinicId>> {
        let clinic: Option<String> =
            sqlx::query_scalar("SELECT clinic_id FROM join_links WHERE token_hash = $1")
                .bind(crate::crypto::token_hash(token))
                .fetch_optional(&self.pool)
                .await?;
        clinic
            .map(|c| Ok(ClinicId::from_uuid(crate::parse_uuid(&c)?)))
            .transpose()
    }
}

/// The `evidence_policy` column of a clinic row.
pub(crate) fn evidence_policy_of(row: &sqlx::any::AnyRow) -> Result<EvidencePolicy> {
    let code: String = row.try_get("evidence_policy")?;
    EvidencePolicy::from_code(&code)
        .ok_or_else(|| StoreError::Corrupt(format!("evidence policy {code:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_minimums_follow_the_law() {
        let defaults = Retention::default();
        assert_eq!(defaults.validate(), Ok(()));
        // Journals: at least 5 years after the last entry (physiotherapists).
        assert_eq!(defaults.journal_years, 5);
        assert!(Retention {
            journal_years: 4,
            ..defaults
        }
        .validate()
        .is_err());
        // Billing: the agreement's 2 years are the floor; bogføringsloven's
        // 5 years after the financial year are the default.
        assert_eq!(defaults.billing_years, 5);
        assert!(Retention {
            billing_years: 2,
            ..defaults
        }
        .validate()
        .is_ok());
        assert!(Retention {
            billing_years: 1,
            ..defaults
        }
        .validate()
        .is_err());
        assert!(Retention {
            event_days: 0,
            ..defaults
        }
        .validate()
        .is_err());
    }
}
