//! Billing lines: stored once, never changed after export (only marked
//! exported); a correction is a new, reversing line that references the
//! original.

use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{
    BillingLine, BillingLineId, ClinicId, ConsultationId, Money, PatientId, PayerShares,
    ServiceKind, ServiceNumber, Speciale, TherapistId,
};
use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::{
    from_ms, get_uuid, ms, opt_from_ms, parse_day, Result, ResultExt, Store, StoreError, Tx,
};

pub(crate) const LINE_COLUMNS: &str = "b.id, b.patient_id, b.consultation_id, b.kind, b.service_number, b.speciale,
    b.fee_ore, b.region_ore, b.patient_ore, b.calendar_day, b.correction_of, b.note, b.exported_at, b.created_at";

/// A billing line as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredLine {
    /// Id.
    pub id: BillingLineId,
    /// The line.
    pub line: BillingLine,
    /// The line this one corrects (a reversal), if it is a correction.
    pub correction_of: Option<BillingLineId>,
    /// Why the correction was made.
    pub note: Option<String>,
    /// When it was first exported; from then on it never changes.
    pub exported_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A line as exported: no personal data, only the patient's pseudonym.
#[derive(Debug, Clone, Serialize)]
pub struct ExportLine {
    /// Line id.
    pub line_id: BillingLineId,
    /// The clinic's ydernummer.
    pub ydernummer: String,
    /// Pseudonymous patient reference.
    pub patient_ref: String,
    /// Service number, e.g. `0131`.
    pub service_number: ServiceNumber,
    /// Speciale.
    pub speciale: Speciale,
    /// Fee in øre.
    pub fee_ore: i64,
    /// Region's share in øre.
    pub region_share_ore: i64,
    /// Patient's share in øre.
    pub patient_share_ore: i64,
    /// Danish calendar day.
    pub calendar_day: NaiveDate,
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// The line it corrects, if a correction.
    pub correction_of: Option<BillingLineId>,
    /// When first exported.
    pub exported_at: Option<DateTime<Utc>>,
}

pub(crate) fn line_from_row(r: &sqlx::any::AnyRow) -> Result<StoredLine> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
    let speciale = crate::get_speciale(r, "speciale")?;
    let consultation: Option<String> = r.try_get("consultation_id")?;
    Ok(StoredLine {
        id: BillingLineId::from_uuid(get_uuid(r, "id")?),
        line: BillingLine {
            consultation: ConsultationId::from_uuid(crate::parse_uuid(
                &consultation.ok_or_else(|| corrupt("line without consultation"))?,
            )?),
            patient: PatientId::from_uuid(get_uuid(r, "patient_id")?),
            kind: r
                .try_get::<String, _>("kind")?
                .parse::<ServiceKind>()
                .map_err(|_| corrupt("kind"))?,
            service_number: ServiceNumber::parse(&r.try_get::<String, _>("service_number")?)
                .map_err(|_| corrupt("service number"))?,
            speciale,
            fee: Money::from_ore(r.try_get("fee_ore")?),
            shares: PayerShares {
                region: Money::from_ore(r.try_get("region_ore")?),
                patient: Money::from_ore(r.try_get("patient_ore")?),
            },
            calendar_day: parse_day(&r.try_get::<String, _>("calendar_day")?)?,
        },
        correction_of: r
            .try_get::<Option<String>, _>("correction_of")?
            .map(|s| crate::parse_uuid(&s).map(BillingLineId::from_uuid))
            .transpose()?,
        note: r.try_get("note")?,
        exported_at: opt_from_ms(r.try_get("exported_at")?)?,
        created_at: from_ms(r.try_get("created_at")?)?,
    })
}

impl Store {
    pub(crate) async fn insert_line(
        tx: &mut Tx,
        clinic: ClinicId,
        line: &BillingLine,
        correction_of: Option<BillingLineId>,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<BillingLineId> {
        let id = BillingLineId::from_uuid(uuid::Uuid::new_v4());
        sqlx::query(
            "INSERT INTO billing_lines (id, clinic_id, patient_id, consultation_id, kind, service_number, speciale,
                fee_ore, region_ore, patient_ore, calendar_day, correction_of, note, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(line.patient.to_string())
        .bind(line.consultation.to_string())
        .bind(line.kind.code())
        .bind(line.service_number.to_string())
        .bind(i64::from(line.speciale.code()))
        .bind(line.fee.ore())
        .bind(line.shares.region.ore())
        .bind(line.shares.patient.ore())
        .bind(line.calendar_day.to_string())
        .bind(correction_of.map(|c| c.to_string()))
        .bind(note)
        .bind(ms(now))
        .execute(tx.conn())
        .await
        .map_err(crate::StoreError::Database)?;
        Ok(id)
    }

    /// One stored line of the clinic.
    pub async fn billing_line(&self, clinic: ClinicId, id: BillingLineId) -> Result<StoredLine> {
        let row = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM billing_lines b WHERE b.clinic_id = $1 AND b.id = $2"
        ))
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("billing line"))?;
        line_from_row(&row)
    }

    /// The clinic's lines on calendar days `from..=to`, in export form.
    pub async fn billing_lines(
        &self,
        clinic: ClinicId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ExportLine>> {
        let mut tx = self.begin().await?;
        let lines = self.export_lines_in(&mut tx, clinic, from, to).await?;
        tx.commit().await?;
        Ok(lines)
    }

    async fn export_lines_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ExportLine>> {
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS}, p.pseudonym, cl.ydernummer FROM billing_lines b
             JOIN patients p ON p.id = b.patient_id JOIN clinics cl ON cl.id = b.clinic_id
             WHERE b.clinic_id = $1 AND b.calendar_day >= $2 AND b.calendar_day <= $3
             ORDER BY b.calendar_day, b.created_at"
        ))
        .bind(clinic.to_string())
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let s = line_from_row(r)?;
                Ok(ExportLine {
                    line_id: s.id,
                    ydernummer: r.try_get("ydernummer")?,
                    patient_ref: r.try_get("pseudonym")?,
                    service_number: s.line.service_number,
                    speciale: s.line.speciale,
                    fee_ore: s.line.fee.ore(),
                    region_share_ore: s.line.shares.region.ore(),
                    patient_share_ore: s.line.shares.patient.ore(),
                    calendar_day: s.line.calendar_day,
                    consultation_id: s.line.consultation,
                    correction_of: s.correction_of,
                    exported_at: s.exported_at,
                })
            })
            .collect()
    }

    /// Exports the lines of a period: returns them and marks those not yet
    /// exported, which makes them immutable.
    pub async fn export_billing(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<ExportLine>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE billing_lines SET exported_at = $1
             WHERE clinic_id = $2 AND calendar_day >= $3 AND calendar_day <= $4 AND exported_at IS NULL",
        )
        .bind(ms(now))
        .bind(clinic.to_string())
        .bind(from.to_string())
        .bind(to.to_string())
        .execute(tx.conn())
        .await?;
        let lines = self.export_lines_in(&mut tx, clinic, from, to).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "billing.export",
            None,
            Some(&format!("{from}..{to}")),
        )
        .await?;
        tx.commit().await?;
        Ok(lines)
    }

    /// Corrects a line with a new reversing line (negative fee and shares)
    /// that references it. A line is corrected at most once.
    pub async fn correct_line(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: BillingLineId,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<BillingLineId> {
        let original = self.billing_line(clinic, id).await?;
        if original.correction_of.is_some() {
            return Err(StoreError::Conflict(
                "a correction line cannot itself be corrected".into(),
            ));
        }
        let negate = |m: Money| Money::from_ore(-m.ore());
        let reversal = BillingLine {
            fee: negate(original.line.fee),
            shares: PayerShares {
                region: negate(original.line.shares.region),
                patient: negate(original.line.shares.patient),
            },
            ..original.line.clone()
        };
        let mut tx = self.begin().await?;
        let new_id = Self::insert_line(&mut tx, clinic, &reversal, Some(id), Some(note), now)
            .await
            .map_err(|e| match e {
                StoreError::Database(db) => Err::<(), _>(db)
                    .on_unique("this line has already been corrected")
                    .unwrap_err(),
                other => other,
            })?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "billing.correct",
            Some(original.line.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok(new_id)
    }
}
