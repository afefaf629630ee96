//! The clinic's fee schedule: its fee table (or the shipped one) regulated by the published steps
//! and the steps its admin recorded. Recording, replacing or removing a step, or loading a new
//! table, brings the ledger in line in the same transaction (re-pricing and deciding again; see
//! [`crate::billing`]).

use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{
    ClinicId, FeeSchedule, FeeTable, RegulationStep, Regulations, Speciale, StepChange, TherapistId,
};
use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::billing::ScheduleEffects;
use crate::{from_ms, get_uuid, ms, parse_day, Result, Store, StoreError, Tx};

/// A regulation step in force for a clinic.
#[derive(Debug, Clone, Serialize)]
pub struct StoredStep {
    /// The step.
    pub step: RegulationStep,
    /// Shipped with Konsult (public, cited in `docs/domain.md`); cannot be changed.
    pub published: bool,
    /// Who recorded it (clinic steps).
    pub recorded_by: Option<TherapistId>,
    /// When (clinic steps).
    pub recorded_at: Option<DateTime<Utc>>,
}

impl Store {
    async fn clinic_steps_in(&self, tx: &mut Tx, clinic: ClinicId) -> Result<Vec<StoredStep>> {
        let rows = sqlx::query(
            "SELECT speciale, effective_from, change, source, recorded_by, recorded_at FROM fee_steps
             WHERE clinic_id = $1 ORDER BY speciale, effective_from",
        )
        .bind(clinic.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let change: StepChange =
                    serde_json::from_str(&r.try_get::<String, _>("change")?)
                        .map_err(|e| StoreError::Corrupt(format!("fee step: {e}")))?;
                Ok(StoredStep {
                    step: RegulationStep {
                        speciale: crate::get_speciale(r, "speciale")?,
                        effective_from: parse_day(&r.try_get::<String, _>("effective_from")?)?,
                        change,
                        source: r.try_get("source")?,
                    },
                    published: false,
                    recorded_by: Some(TherapistId::from_uuid(get_uuid(r, "recorded_by")?)),
                    recorded_at: Some(from_ms(r.try_get("recorded_at")?)?),
                })
            })
            .collect()
    }

    /// The clinic's fee schedule, read in a transaction.
    pub(crate) async fn fee_schedule_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
    ) -> Result<FeeSchedule> {
        // Read through the transaction: a table replaced in it must count.
        let json: Option<String> =
            sqlx::query_scalar("SELECT fee_table FROM clinics WHERE id = $1")
                .bind(clinic.to_string())
                .fetch_optional(tx.conn())
                .await?
                .ok_or(StoreError::NotFound("clinic"))?;
        let table = crate::clinics::fee_table_of(json.as_deref())?;
        let steps = self.clinic_steps_in(tx, clinic).await?;
        let regulations = Regulations::published()
            .with(steps.into_iter().map(|s| s.step).collect())
            .map_err(|problems| StoreError::Corrupt(format!("fee steps: {}", join(&problems))))?;
        Ok(FeeSchedule::new(table, regulations))
    }

    /// The clinic's fee schedule: its table regulated by every step in force.
    pub async fn fee_schedule(&self, clinic: ClinicId) -> Result<FeeSchedule> {
        let mut tx = self.begin().await?;
        let schedule = self.fee_schedule_in(&mut tx, clinic).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    /// Every step in force for the clinic, published and recorded, by speciale and date.
    pub async fn fee_steps(&self, clinic: ClinicId) -> Result<Vec<StoredStep>> {
        let mut tx = self.begin().await?;
        let mut steps: Vec<StoredStep> = Regulations::published()
            .steps()
            .iter()
            .map(|step| StoredStep {
                step: step.clone(),
                published: true,
                recorded_by: None,
                recorded_at: None,
            })
            .collect();
        steps.extend(self.clinic_steps_in(&mut tx, clinic).await?);
        tx.commit().await?;
        steps.sort_by_key(|s| (s.step.speciale, s.step.effective_from));
        Ok(steps)
    }

    /// Records a regulation step (or replaces the clinic's own step of that speciale and date),
    /// then re-prices the lines it concerns and decides again the consultations that had no
    /// valid fee, all in one transaction. A published step cannot be replaced.
    pub async fn record_fee_step(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        step: &RegulationStep,
        now: DateTime<Utc>,
    ) -> Result<ScheduleEffects> {
        let problems = step.problems();
        if !problems.is_empty() {
            return Err(StoreError::Refused {
                code: "invalid_fee_step",
                message: join(&problems),
            });
        }
        if Regulations::published()
            .step(step.speciale, step.effective_from)
            .is_some()
        {
            return Err(StoreError::Refused {
                code: "published_fee_step",
                message: format!(
                    "the step of speciale {} on {} is published and cannot be changed",
                    step.speciale, step.effective_from
                ),
            });
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "DELETE FROM fee_steps WHERE clinic_id = $1 AND speciale = $2 AND effective_from = $3",
        )
        .bind(clinic.to_string())
        .bind(i64::from(step.speciale.code()))
        .bind(step.effective_from.to_string())
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO fee_steps (clinic_id, speciale, effective_from, change, source, recorded_by, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(clinic.to_string())
        .bind(i64::from(step.speciale.code()))
        .bind(step.effective_from.to_string())
        .bind(serde_json::to_string(&step.change).expect("steps serialise"))
        .bind(step.source.trim())
        .bind(by.to_string())
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "fees.step",
            None,
            Some(&format!(
                "speciale:{} from:{} change:{}",
                step.speciale,
                step.effective_from,
                step.change.english()
            )),
        )
        .await?;
        let effects = self
            .apply_schedule_in(&mut tx, clinic, Actor::Therapist(by), now)
            .await?;
        tx.commit().await?;
        Ok(effects)
    }

    /// Removes a step the clinic recorded (a mistake), and brings the ledger in line.
    pub async fn remove_fee_step(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        speciale: Speciale,
        effective_from: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<ScheduleEffects> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query(
            "DELETE FROM fee_steps WHERE clinic_id = $1 AND speciale = $2 AND effective_from = $3",
        )
        .bind(clinic.to_string())
        .bind(i64::from(speciale.code()))
        .bind(effective_from.to_string())
        .execute(tx.conn())
        .await?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::NotFound("fee step"));
        }
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "fees.step_removed",
            None,
            Some(&format!("speciale:{speciale} from:{effective_from}")),
        )
        .await?;
        let effects = self
            .apply_schedule_in(&mut tx, clinic, Actor::Therapist(by), now)
            .await?;
        tx.commit().await?;
        Ok(effects)
    }

    /// Replaces the clinic's fee table (already validated by the domain) and brings the ledger
    /// in line with it.
    pub async fn set_fee_table(
        &self,
        id: ClinicId,
        by: TherapistId,
        table: &FeeTable,
        now: DateTime<Utc>,
    ) -> Result<ScheduleEffects> {
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
        let effects = self
            .apply_schedule_in(&mut tx, id, Actor::Therapist(by), now)
            .await?;
        tx.commit().await?;
        Ok(effects)
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
