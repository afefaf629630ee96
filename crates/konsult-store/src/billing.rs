//! Billing lines and decisions: the ledger a region can audit.
//!
//! * A line has a **service day** (`calendar_day`, the Danish day of the consultation) and a
//!   **posting day** (the Danish day it was made). Exports are by posting period, so a line made
//!   today never lands in a period exported before.
//! * A line is never changed once made (only marked exported, and marked reversed when its
//!   reversal is made). A correction is a **reversal**: a new line with fee and shares negated,
//!   posted on the day it is made. A line that is neither reversed nor a reversal is **active**;
//!   the database holds "one active line per patient and Danish day" and "per consultation and
//!   patient" with unique indexes.
//! * Each consultation has a **decision** in force and the history of every decision it had. A
//!   consultation is decided again after a reversal, a fee-table fix, a re-pricing or an in-clinic
//!   visit on its day; the domain's [`decide_billing`] keeps an active line as it is, so deciding
//!   again never bills twice.

use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{
    danish_day, decide_billing, reprice, reversal, visit_conflicts, BillingDecision, BillingLine,
    BillingLineId, ClinicId, ConsultationFacts, ConsultationId, ConsultationOutcome,
    ConsultationState, Eligibility, Evidence, InClinicVisit, Money, NotBillableReason, PatientId,
    PayerShares, ServiceKind, ServiceNumber, Speciale, TherapistId,
};
use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::consultations::Consultation;
use crate::{
    from_ms, get_flag, get_uuid, ms, opt_from_ms, parse_day, Backend, Result, Store, StoreError, Tx,
};

pub(crate) const LINE_COLUMNS: &str = "b.id, b.patient_id, b.consultation_id, b.kind, b.service_number, b.speciale,
    b.fee_ore, b.region_ore, b.patient_ore, b.calendar_day, b.evidence, b.correction_of, b.note, b.exported_at,
    b.created_at, b.posting_day, b.reversed_by, b.therapist_id, b.fee_reference, b.fee_unconfirmed";

/// A billing line as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredLine {
    /// Id.
    pub id: BillingLineId,
    /// The line.
    pub line: BillingLine,
    /// The Danish day the line was made: the period it is exported in.
    pub posting_day: NaiveDate,
    /// The therapist who ran the consultation.
    pub therapist: Option<TherapistId>,
    /// The line this one reverses, if it is a reversal.
    pub correction_of: Option<BillingLineId>,
    /// The reversal of this line, if it was reversed.
    pub reversed_by: Option<BillingLineId>,
    /// Why the reversal was made.
    pub note: Option<String>,
    /// When it was first exported; from then on it never changes.
    pub exported_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl StoredLine {
    /// Neither reversed nor a reversal.
    pub fn is_active(&self) -> bool {
        self.correction_of.is_none() && self.reversed_by.is_none()
    }
}

/// A line as exported: no personal data, only the patient's pseudonym. Every field is fixed when
/// the line is made, so exporting a closed period again gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportLine {
    /// Line id.
    pub line_id: BillingLineId,
    /// The clinic's ydernummer when the line was exported.
    pub ydernummer: String,
    /// Pseudonymous patient reference.
    pub patient_ref: String,
    /// The therapist who ran the consultation (the clinic's account id).
    pub therapist_id: Option<TherapistId>,
    /// `individual_video` or `hold_video`.
    pub kind: ServiceKind,
    /// Service number, e.g. `0131`.
    pub service_number: ServiceNumber,
    /// Speciale.
    pub speciale: Speciale,
    /// Fee in øre (negative on a reversal).
    pub fee_ore: i64,
    /// Region's share in øre.
    pub region_share_ore: i64,
    /// Patient's share in øre.
    pub patient_share_ore: i64,
    /// The service day: the Danish calendar day of the consultation.
    pub calendar_day: NaiveDate,
    /// The posting day: the Danish day the line was made; exports are by posting period.
    pub posting_day: NaiveDate,
    /// The consultation.
    pub consultation_id: ConsultationId,
    /// What the line's two-way evidence rests on (`client_reported` or `relay_observed`).
    pub evidence: Evidence,
    /// How the fee was derived: level, regulation steps, missing steps.
    pub fee_reference: String,
    /// Whether a regulation step was missing when the fee was derived.
    pub fee_unconfirmed: bool,
    /// The line it reverses, if a reversal.
    pub correction_of: Option<BillingLineId>,
    /// When first exported.
    pub exported_at: Option<DateTime<Utc>>,
}

pub(crate) fn line_from_row(r: &sqlx::any::AnyRow) -> Result<StoredLine> {
    let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
    let opt_line_id = |col: &str| -> Result<Option<BillingLineId>> {
        r.try_get::<Option<String>, _>(col)?
            .map(|s| crate::parse_uuid(&s).map(BillingLineId::from_uuid))
            .transpose()
    };
    let consultation: Option<String> = r.try_get("consultation_id")?;
    let calendar_day = parse_day(&r.try_get::<String, _>("calendar_day")?)?;
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
            speciale: crate::get_speciale(r, "speciale")?,
            fee: Money::from_ore(r.try_get("fee_ore")?),
            shares: PayerShares {
                region: Money::from_ore(r.try_get("region_ore")?),
                patient: Money::from_ore(r.try_get("patient_ore")?),
            },
            calendar_day,
            evidence: {
                let code: String = r.try_get("evidence")?;
                Evidence::from_code(&code).ok_or_else(|| corrupt("evidence"))?
            },
            fee_reference: r.try_get("fee_reference")?,
            fee_unconfirmed: get_flag(r, "fee_unconfirmed")?,
        },
        posting_day: r
            .try_get::<Option<String>, _>("posting_day")?
            .map(|d| parse_day(&d))
            .transpose()?
            .unwrap_or(calendar_day),
        therapist: r
            .try_get::<Option<String>, _>("therapist_id")?
            .map(|s| crate::parse_uuid(&s).map(TherapistId::from_uuid))
            .transpose()?,
        correction_of: opt_line_id("correction_of")?,
        reversed_by: opt_line_id("reversed_by")?,
        note: r.try_get("note")?,
        exported_at: opt_from_ms(r.try_get("exported_at")?)?,
        created_at: from_ms(r.try_get("created_at")?)?,
    })
}

/// How a period is chosen: by posting day (what exports use) or by service day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeriodBy {
    /// The day the line was made (exports).
    #[default]
    Posting,
    /// The day of the consultation.
    Service,
}

impl PeriodBy {
    /// `posting` or `service`.
    pub fn code(self) -> &'static str {
        match self {
            PeriodBy::Posting => "posting",
            PeriodBy::Service => "service",
        }
    }
}

/// The decision in force for a consultation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decided {
    /// The decision.
    pub decision: BillingDecision,
    /// Its line, if billable.
    pub line_id: Option<BillingLineId>,
    /// 1 for the first decision, one more for each later one.
    pub generation: i64,
    /// Whether this call made a new decision (false: the one in force stands).
    pub changed: bool,
}

/// One decision of a consultation's history.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// 1, 2, …
    pub generation: i64,
    /// The decision.
    pub decision: BillingDecision,
    /// Its line, if billable.
    pub line_id: Option<BillingLineId>,
    /// When.
    pub decided_at: DateTime<Utc>,
    /// Why it was decided: `completed`, `completed_again`, `decided_again`, `reversed`,
    /// `fee_schedule_changed`, `repriced`, `in_clinic_visit`, `closed`, `patient_merged`.
    pub cause: String,
}

/// A line replaced because the fee schedule now prices it differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repriced {
    /// The consultation.
    pub consultation: ConsultationId,
    /// The line replaced.
    pub old_line: BillingLineId,
    /// Its reversal.
    pub reversal: BillingLineId,
    /// The new line.
    pub new_line: BillingLineId,
    /// The old fee.
    pub old_fee: Money,
    /// The new fee.
    pub new_fee: Money,
}

/// What a change of the fee schedule did to the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleEffects {
    /// Lines re-priced: reversed and replaced in the current period.
    pub repriced: Vec<Repriced>,
    /// Consultations decided `no_valid_fee` (or out of range) that are now billable.
    pub now_billable: Vec<ConsultationId>,
}

/// A line reversed because of an in-clinic visit the same day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisitConflict {
    /// The consultation whose line was reversed.
    pub consultation: ConsultationId,
    /// The line.
    pub line: BillingLineId,
    /// Its reversal.
    pub reversal: BillingLineId,
    /// The Danish day.
    pub day: NaiveDate,
}

/// Why a line is reversed: a therapist's note, or the system's reason.
pub(crate) const NOTE_VISIT: &str =
    "In-clinic visit recorded the same day: only one consultation per calendar day";
pub(crate) const NOTE_REPRICE: &str = "Re-priced: the fee schedule now gives another fee";
pub(crate) const NOTE_MERGE: &str =
    "Duplicate patient merged: only one consultation per patient per calendar day";

impl Store {
    /// Inserts a line posted today (the Danish day of `now`).
    pub(crate) async fn insert_line(
        tx: &mut Tx,
        clinic: ClinicId,
        line: &BillingLine,
        therapist: Option<TherapistId>,
        correction_of: Option<BillingLineId>,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<BillingLineId> {
        for amount in [line.fee, line.shares.region, line.shares.patient] {
            if amount.ore().abs() > konsult_domain::MAX_FEE.ore() {
                return Err(StoreError::Conflict(format!(
                    "an amount of {amount} is outside ±400 kr; refusing to store the line"
                )));
            }
        }
        if line.shares.total() != Some(line.fee) {
            return Err(StoreError::Conflict(
                "the shares do not add up to the fee; refusing to store the line".into(),
            ));
        }
        let id = BillingLineId::from_uuid(uuid::Uuid::new_v4());
        sqlx::query(
            "INSERT INTO billing_lines (id, clinic_id, patient_id, consultation_id, kind, service_number, speciale,
                fee_ore, region_ore, patient_ore, calendar_day, correction_of, note, created_at, evidence,
                posting_day, therapist_id, fee_reference, fee_unconfirmed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
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
        .bind(line.evidence.code())
        .bind(danish_day(now).to_string())
        .bind(therapist.map(|t| t.to_string()))
        .bind(line.fee_reference.as_str())
        .bind(i64::from(line.fee_unconfirmed))
        .execute(tx.conn())
        .await?;
        Ok(id)
    }

    pub(crate) async fn line_in(
        tx: &mut Tx,
        clinic: ClinicId,
        id: BillingLineId,
    ) -> Result<StoredLine> {
        let row = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM billing_lines b WHERE b.clinic_id = $1 AND b.id = $2"
        ))
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound("billing line"))?;
        line_from_row(&row)
    }

    /// One stored line of the clinic.
    pub async fn billing_line(&self, clinic: ClinicId, id: BillingLineId) -> Result<StoredLine> {
        let mut tx = self.begin().await?;
        let line = Self::line_in(&mut tx, clinic, id).await?;
        tx.commit().await?;
        Ok(line)
    }

    /// The patient's active lines.
    pub(crate) async fn active_lines_of_patient(
        tx: &mut Tx,
        clinic: ClinicId,
        patient: PatientId,
    ) -> Result<Vec<StoredLine>> {
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM billing_lines b WHERE b.clinic_id = $1 AND b.patient_id = $2
             AND b.correction_of IS NULL AND b.reversed_by IS NULL"
        ))
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter().map(line_from_row).collect()
    }

    /// Reverses an active line with a new line posted today (fee and shares negated) that
    /// references it, and marks the original reversed. Audited as `billing.correct` when a
    /// therapist asked for it, else as `billing.reverse` (re-pricing, a visit, a merge).
    pub(crate) async fn reverse_in(
        tx: &mut Tx,
        clinic: ClinicId,
        actor: Actor,
        original: &StoredLine,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<BillingLineId> {
        let action = if note == NOTE_REPRICE || note == NOTE_VISIT || note == NOTE_MERGE {
            "billing.reverse"
        } else {
            "billing.correct"
        };
        if original.correction_of.is_some() {
            return Err(StoreError::Conflict(
                "a reversal cannot itself be reversed".into(),
            ));
        }
        if original.reversed_by.is_some() {
            return Err(StoreError::Conflict(
                "this line has already been reversed".into(),
            ));
        }
        let id = Self::insert_line(
            tx,
            clinic,
            &reversal(&original.line),
            original.therapist,
            Some(original.id),
            Some(note),
            now,
        )
        .await?;
        let marked = sqlx::query(
            "UPDATE billing_lines SET reversed_by = $1 WHERE id = $2 AND reversed_by IS NULL",
        )
        .bind(id.to_string())
        .bind(original.id.to_string())
        .execute(tx.conn())
        .await?;
        if marked.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "this line has already been reversed".into(),
            ));
        }
        let subject = format!("{} reversal:{id}", original.id);
        audit::append(
            tx,
            clinic,
            now,
            actor,
            action,
            Some(original.line.patient),
            Some(&subject),
        )
        .await?;
        Ok(id)
    }

    /// Reverses a line at a therapist's request, posted today, and decides its consultation
    /// again (a new decision, audited; it may give a new line, e.g. with today's fee table).
    pub async fn correct_line(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: BillingLineId,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<BillingLineId> {
        let mut tx = self.begin().await?;
        let original = Self::line_in(&mut tx, clinic, id).await?;
        let reversal =
            Self::reverse_in(&mut tx, clinic, Actor::Therapist(by), &original, note, now).await?;
        self.record_reversal_decision(&mut tx, clinic, &original, "reversed", now)
            .await?;
        tx.commit().await?;
        Ok(reversal)
    }

    /// After a reversal the consultation's decision in force no longer holds: it becomes "not
    /// billed" until the consultation is decided again. Recorded as a new generation.
    pub(crate) async fn record_reversal_decision(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        original: &StoredLine,
        cause: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let consultation = original.line.consultation;
        if let Some(current) = Self::decision_in(tx, clinic, consultation).await? {
            if current.line_id == Some(original.id) {
                let decision = match cause {
                    "in_clinic_visit" => {
                        BillingDecision::NotBillable(NotBillableReason::InClinicVisitThatDay {
                            day: original.line.calendar_day,
                        })
                    }
                    _ => BillingDecision::NotBillable(NotBillableReason::Reversed {
                        line: original.id,
                    }),
                };
                Self::record_decision(
                    tx,
                    clinic,
                    consultation,
                    Some(original.line.patient),
                    &decision,
                    None,
                    current.generation + 1,
                    cause,
                    now,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The decision in force for a consultation.
    pub(crate) async fn decision_in(
        tx: &mut Tx,
        clinic: ClinicId,
        id: ConsultationId,
    ) -> Result<Option<Decided>> {
        let row = sqlx::query(
            "SELECT decision, line_id, generation FROM billing_decisions WHERE clinic_id = $1 AND consultation_id = $2",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(tx.conn())
        .await?;
        row.map(|r| {
            Ok(Decided {
                decision: serde_json::from_str(&r.try_get::<String, _>("decision")?)
                    .map_err(|e| StoreError::Corrupt(format!("decision: {e}")))?,
                line_id: r
                    .try_get::<Option<String>, _>("line_id")?
                    .map(|l| crate::parse_uuid(&l).map(BillingLineId::from_uuid))
                    .transpose()?,
                generation: r.try_get("generation")?,
                changed: false,
            })
        })
        .transpose()
    }

    /// The stored billing decision of a consultation, if decided.
    pub async fn billing_decision(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
    ) -> Result<Option<(BillingDecision, Option<BillingLineId>)>> {
        let mut tx = self.begin().await?;
        let decided = Self::decision_in(&mut tx, clinic, id).await?;
        tx.commit().await?;
        Ok(decided.map(|d| (d.decision, d.line_id)))
    }

    /// Every decision the consultation had, oldest first.
    pub async fn decision_history(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
    ) -> Result<Vec<DecisionRecord>> {
        let rows = sqlx::query(
            "SELECT generation, decision, line_id, decided_at, cause FROM billing_decision_history
             WHERE clinic_id = $1 AND consultation_id = $2 ORDER BY generation",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DecisionRecord {
                    generation: r.try_get("generation")?,
                    decision: serde_json::from_str(&r.try_get::<String, _>("decision")?)
                        .map_err(|e| StoreError::Corrupt(format!("decision: {e}")))?,
                    line_id: r
                        .try_get::<Option<String>, _>("line_id")?
                        .map(|l| crate::parse_uuid(&l).map(BillingLineId::from_uuid))
                        .transpose()?,
                    decided_at: from_ms(r.try_get("decided_at")?)?,
                    cause: r.try_get("cause")?,
                })
            })
            .collect()
    }

    /// Stores `decision` as the one in force (generation `generation`) and in the history, and
    /// audits it as `billing.decide`.
    #[allow(clippy::too_many_arguments)]
    async fn record_decision(
        tx: &mut Tx,
        clinic: ClinicId,
        consultation: ConsultationId,
        patient: Option<PatientId>,
        decision: &BillingDecision,
        line_id: Option<BillingLineId>,
        generation: i64,
        cause: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let json = serde_json::to_string(decision).expect("decisions serialise");
        let line = line_id.map(|l| l.to_string());
        if generation == 1 {
            sqlx::query(
                "INSERT INTO billing_decisions (consultation_id, clinic_id, decision, line_id, decided_at, generation)
                 VALUES ($1, $2, $3, $4, $5, 1)",
            )
            .bind(consultation.to_string())
            .bind(clinic.to_string())
            .bind(&json)
            .bind(line.clone())
            .bind(ms(now))
            .execute(tx.conn())
            .await?;
        } else {
            let updated = sqlx::query(
                "UPDATE billing_decisions SET decision = $1, line_id = $2, decided_at = $3, generation = $4
                 WHERE consultation_id = $5 AND generation = $6",
            )
            .bind(&json)
            .bind(line.clone())
            .bind(ms(now))
            .bind(generation)
            .bind(consultation.to_string())
            .bind(generation - 1)
            .execute(tx.conn())
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict(
                    "the consultation was decided concurrently; try again".into(),
                ));
            }
        }
        sqlx::query(
            "INSERT INTO billing_decision_history (consultation_id, clinic_id, generation, decision, line_id, decided_at, cause)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(consultation.to_string())
        .bind(clinic.to_string())
        .bind(generation)
        .bind(&json)
        .bind(line)
        .bind(ms(now))
        .bind(cause)
        .execute(tx.conn())
        .await?;
        let code = match decision {
            BillingDecision::Billable(_) => "billable",
            BillingDecision::NotBillable(reason) => reason.code(),
        };
        audit::append(
            tx,
            clinic,
            now,
            Actor::System,
            "billing.decide",
            patient,
            Some(&format!(
                "{consultation} generation:{generation} cause:{cause} decision:{code}"
            )),
        )
        .await
    }

    /// Takes the consultation's row lock on PostgreSQL, so that decisions of one consultation
    /// are made one at a time (SQLite has one writer anyway).
    pub(crate) async fn lock_consultation(&self, tx: &mut Tx, id: ConsultationId) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM consultations WHERE id = $1 FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(tx.conn())
                .await?;
        }
        Ok(())
    }

    /// How a closed consultation ended, for billing.
    fn outcome_of(c: &Consultation) -> Result<ConsultationOutcome> {
        Ok(match c.state {
            ConsultationState::Completed => ConsultationOutcome::Held {
                started_at: c.started_at.unwrap_or(c.scheduled_start),
                two_way: c.two_way_evidence,
            },
            ConsultationState::Cancelled => ConsultationOutcome::Cancelled,
            ConsultationState::NoShow => ConsultationOutcome::NoShow,
            ConsultationState::TechnicalFailure => ConsultationOutcome::TechnicalFailure,
            other => {
                return Err(StoreError::Conflict(format!(
                    "the consultation is {other}: only a closed consultation is decided"
                )))
            }
        })
    }

    /// Decides a closed consultation with today's facts, fee schedule and ledger. A decision
    /// equal to the one in force changes nothing (`changed: false`); otherwise a new line is made
    /// if billable and not already active, and the decision is recorded as a new generation.
    pub(crate) async fn decide_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        c: &Consultation,
        cause: &str,
        now: DateTime<Utc>,
    ) -> Result<Decided> {
        let clinic_row = Self::clinic_in(tx, clinic).await?;
        let outcome = Self::outcome_of(c)?;
        let eligibility_at_start = match outcome {
            ConsultationOutcome::Held { .. } => {
                let text: Option<String> = sqlx::query_scalar(
                    "SELECT eligibility_at_start FROM consultations WHERE id = $1",
                )
                .bind(c.id.to_string())
                .fetch_one(tx.conn())
                .await?;
                match text {
                    Some(t) => serde_json::from_str(&t)
                        .map_err(|e| StoreError::Corrupt(format!("eligibility: {e}")))?,
                    None => Eligibility::Eligible,
                }
            }
            _ => Eligibility::Eligible,
        };
        let facts = ConsultationFacts {
            id: c.id,
            patient: c.patient,
            kind: ServiceKind::IndividualVideo,
            speciale: c.speciale,
            outcome,
            eligibility_at_start,
            evidence_policy: clinic_row.evidence_policy,
            patient_inactive: self.patient_inactive_in(tx, clinic, c.patient).await?,
        };
        let active = Self::active_lines_of_patient(tx, clinic, c.patient).await?;
        let lines: Vec<BillingLine> = active.iter().map(|s| s.line.clone()).collect();
        let visits = self.visits_in(tx, clinic, c.patient).await?;
        let schedule = self.fee_schedule_in(tx, clinic).await?;
        let decision = decide_billing(&facts, &lines, &visits, &schedule);
        let current = Self::decision_in(tx, clinic, c.id).await?;
        let existing_line = active
            .iter()
            .find(|s| s.line.consultation == c.id && s.line.patient == c.patient)
            .map(|s| s.id);
        if let Some(current) = &current {
            if current.decision == decision && current.line_id == existing_line {
                return Ok(current.clone());
            }
        }
        let line_id = match &decision {
            BillingDecision::Billable(line) => match existing_line {
                Some(id) => Some(id),
                None => Some(
                    Self::insert_line(tx, clinic, line, Some(c.therapist), None, None, now).await?,
                ),
            },
            BillingDecision::NotBillable(_) => None,
        };
        let generation = current.map_or(1, |d| d.generation + 1);
        Self::record_decision(
            tx,
            clinic,
            c.id,
            Some(c.patient),
            &decision,
            line_id,
            generation,
            cause,
            now,
        )
        .await?;
        Ok(Decided {
            decision,
            line_id,
            generation,
            changed: true,
        })
    }

    /// Decides a closed consultation again at a therapist's request: after its line was
    /// reversed, or when the fee table or the ledger changed. Answers the decision in force
    /// (`changed: false`) when nothing differs.
    pub async fn redecide(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Decided> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = self.begin().await?;
                self.lock_consultation(&mut tx, id).await?;
                let c = self.consultation_in(&mut tx, clinic, id).await?;
                let decided = self
                    .decide_in(&mut tx, clinic, &c, "decided_again", now)
                    .await?;
                audit::append(
                    &mut tx,
                    clinic,
                    now,
                    Actor::Therapist(by),
                    "billing.redecide",
                    Some(c.patient),
                    Some(&id.to_string()),
                )
                .await?;
                tx.commit().await?;
                Ok(decided)
            }
            .await;
            match result {
                Err(e) if attempt < 8 && crate::consultations::is_retryable(&e) => continue,
                other => return other,
            }
        }
    }

    /// Brings the ledger in line with the clinic's fee schedule: every active line the schedule
    /// now prices differently ([`reprice`]) is reversed and replaced by a new line, both posted
    /// today; every closed consultation decided `no_valid_fee` or `fee_out_of_range` is decided
    /// again. Each change is audited.
    pub(crate) async fn apply_schedule_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<ScheduleEffects> {
        let schedule = self.fee_schedule_in(tx, clinic).await?;
        let mut effects = ScheduleEffects::default();
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM billing_lines b WHERE b.clinic_id = $1
             AND b.correction_of IS NULL AND b.reversed_by IS NULL
             AND (b.fee_unconfirmed <> 0 OR b.fee_reference <> '')
             ORDER BY b.calendar_day, b.created_at, b.id"
        ))
        .bind(clinic.to_string())
        .fetch_all(tx.conn())
        .await?;
        let lines = rows.iter().map(line_from_row).collect::<Result<Vec<_>>>()?;
        for old in lines {
            let Some(new) = reprice(&old.line, &schedule) else {
                continue;
            };
            let reversal = Self::reverse_in(tx, clinic, actor, &old, NOTE_REPRICE, now).await?;
            let new_line =
                Self::insert_line(tx, clinic, &new, old.therapist, None, None, now).await?;
            if let Some(current) = Self::decision_in(tx, clinic, old.line.consultation).await? {
                Self::record_decision(
                    tx,
                    clinic,
                    old.line.consultation,
                    Some(old.line.patient),
                    &BillingDecision::Billable(new.clone()),
                    Some(new_line),
                    current.generation + 1,
                    "repriced",
                    now,
                )
                .await?;
            }
            effects.repriced.push(Repriced {
                consultation: old.line.consultation,
                old_line: old.id,
                reversal,
                new_line,
                old_fee: old.line.fee,
                new_fee: new.fee,
            });
        }
        let rows = sqlx::query("SELECT consultation_id, decision FROM billing_decisions WHERE clinic_id = $1 ORDER BY decided_at, consultation_id")
            .bind(clinic.to_string())
            .fetch_all(tx.conn())
            .await?;
        for r in rows {
            let decision: BillingDecision =
                serde_json::from_str(&r.try_get::<String, _>("decision")?)
                    .map_err(|e| StoreError::Corrupt(format!("decision: {e}")))?;
            let fee_problem = matches!(
                decision,
                BillingDecision::NotBillable(
                    NotBillableReason::NoValidFee(_) | NotBillableReason::FeeOutOfRange { .. }
                )
            );
            if !fee_problem {
                continue;
            }
            let id = ConsultationId::from_uuid(get_uuid(&r, "consultation_id")?);
            let c = self.consultation_in(tx, clinic, id).await?;
            let decided = self
                .decide_in(tx, clinic, &c, "fee_schedule_changed", now)
                .await?;
            if matches!(decided.decision, BillingDecision::Billable(_)) {
                effects.now_billable.push(id);
            }
        }
        Ok(effects)
    }

    /// An in-clinic visit was recorded: the patient's active video lines on its Danish day are
    /// reversed (posted today) and their consultations' decisions become
    /// `in_clinic_visit_that_day`, the same result as when the visit is recorded first.
    pub(crate) async fn apply_visit_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        actor: Actor,
        visit: &InClinicVisit,
        now: DateTime<Utc>,
    ) -> Result<Vec<VisitConflict>> {
        let active = Self::active_lines_of_patient(tx, clinic, visit.patient).await?;
        let lines: Vec<BillingLine> = active.iter().map(|s| s.line.clone()).collect();
        let mut conflicts = Vec::new();
        for line in visit_conflicts(visit, &lines) {
            let stored = active
                .iter()
                .find(|s| s.line == *line)
                .expect("conflicts come from the active lines");
            let reversal = Self::reverse_in(tx, clinic, actor, stored, NOTE_VISIT, now).await?;
            self.record_reversal_decision(tx, clinic, stored, "in_clinic_visit", now)
                .await?;
            conflicts.push(VisitConflict {
                consultation: stored.line.consultation,
                line: stored.id,
                reversal,
                day: stored.line.calendar_day,
            });
        }
        Ok(conflicts)
    }

    /// The clinic's lines of a period (both ends included), by posting day or service day.
    pub async fn billing_lines(
        &self,
        clinic: ClinicId,
        by_therapist: TherapistId,
        from: NaiveDate,
        to: NaiveDate,
        by: PeriodBy,
        now: DateTime<Utc>,
    ) -> Result<Vec<ExportLine>> {
        let mut tx = self.begin().await?;
        let lines = self.export_lines_in(&mut tx, clinic, from, to, by).await?;
        // Billing lines name patients (by pseudonym): reading them is audited.
        let subject = format!("{from}..{to} by:{}", by.code());
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by_therapist),
            "billing.list",
            None,
            Some(&subject),
        )
        .await?;
        tx.commit().await?;
        Ok(lines)
    }

    async fn export_lines_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        from: NaiveDate,
        to: NaiveDate,
        by: PeriodBy,
    ) -> Result<Vec<ExportLine>> {
        let column = match by {
            PeriodBy::Posting => "b.posting_day",
            PeriodBy::Service => "b.calendar_day",
        };
        let rows = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS}, p.pseudonym, cl.ydernummer FROM billing_lines b
             JOIN patients p ON p.id = b.patient_id JOIN clinics cl ON cl.id = b.clinic_id
             WHERE b.clinic_id = $1 AND {column} >= $2 AND {column} <= $3
             -- a reversal comes before the replacement made with it
             ORDER BY {column}, b.created_at, CASE WHEN b.correction_of IS NULL THEN 1 ELSE 0 END, b.id"
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
                    therapist_id: s.therapist,
                    kind: s.line.kind,
                    service_number: s.line.service_number,
                    speciale: s.line.speciale,
                    fee_ore: s.line.fee.ore(),
                    region_share_ore: s.line.shares.region.ore(),
                    patient_share_ore: s.line.shares.patient.ore(),
                    calendar_day: s.line.calendar_day,
                    posting_day: s.posting_day,
                    consultation_id: s.line.consultation,
                    evidence: s.line.evidence,
                    fee_reference: s.line.fee_reference,
                    fee_unconfirmed: s.line.fee_unconfirmed,
                    correction_of: s.correction_of,
                    exported_at: s.exported_at,
                })
            })
            .collect()
    }

    /// Exports the lines posted in a closed period (it ended before today, Danish time): returns
    /// them and marks those not yet exported, which makes them immutable. Nothing can be posted
    /// in a closed period any more, so exporting it again gives the same lines.
    pub async fn export_billing(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<ExportLine>> {
        let today = danish_day(now);
        if to >= today {
            return Err(StoreError::PeriodOpen {
                last_day: to,
                today,
            });
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE billing_lines SET exported_at = $1
             WHERE clinic_id = $2 AND posting_day >= $3 AND posting_day <= $4 AND exported_at IS NULL",
        )
        .bind(ms(now))
        .bind(clinic.to_string())
        .bind(from.to_string())
        .bind(to.to_string())
        .execute(tx.conn())
        .await?;
        let lines = self
            .export_lines_in(&mut tx, clinic, from, to, PeriodBy::Posting)
            .await?;
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

    /// Fills what lines made before posting days existed lack: the posting day of a reversal is
    /// the Danish day it was made; an original line keeps its service day (exports were by
    /// service day then, so the periods already exported stay as they were).
    pub(crate) async fn backfill_posting_days(&self) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT id, calendar_day, correction_of, created_at FROM billing_lines WHERE posting_day IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        for r in &rows {
            let correction: Option<String> = r.try_get("correction_of")?;
            let day = match correction {
                Some(_) => danish_day(from_ms(r.try_get("created_at")?)?).to_string(),
                None => r.try_get::<String, _>("calendar_day")?,
            };
            sqlx::query("UPDATE billing_lines SET posting_day = $1 WHERE id = $2")
                .bind(day)
                .bind(r.try_get::<String, _>("id")?)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}
