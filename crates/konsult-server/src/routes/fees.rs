//! The fees in force and their regulation steps: what the dashboard shows and the form an admin
//! records a new step with (a percentage or the official amounts).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use chrono::NaiveDate;
use konsult_domain::fees::RowRef;
use konsult_domain::regulation::parse_percent;
use konsult_domain::regulation::StepProblem;
use konsult_domain::{
    danish_day, FeeTableError, FeeTableProblem, Money, RegulationStep, ServiceKind, Speciale,
    StepChange, MAX_FEE,
};
use konsult_store::billing::ScheduleEffects;
use konsult_store::fees::StoredStep;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Auth};
use crate::error::{ApiError, ApiResult, Problem, ProblemItem};
use crate::extract::ApiJson;
use crate::routes::account::unknown_speciale;
use crate::routes::consultations::Amount;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fee_status))
        .routes(routes!(record_step))
        .routes(routes!(remove_step))
}

/// A regulation date with no recorded step.
#[derive(Debug, Serialize, ToSchema)]
pub struct MissingStepDto {
    /// Speciale.
    pub speciale: u16,
    /// The 1 April or 1 October.
    pub effective_from: NaiveDate,
}

/// The fee of one service today.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentFeeDto {
    /// `individual_video` or `hold_video`.
    pub kind: String,
    /// Speciale.
    pub speciale: u16,
    /// Service number today.
    pub service_number: String,
    /// Fee in force today (the best known one if unconfirmed).
    pub fee: Amount,
    /// The patient's own payment (sp. 51: 60,7 %; sp. 62: none).
    pub patient_share: Amount,
    /// A regulation step up to today is missing.
    pub unconfirmed: bool,
    /// The compact reference carried on billing lines.
    pub reference: String,
    /// How the fee was derived, in Danish.
    pub explained_da: String,
    /// The same in English.
    pub explained_en: String,
}

/// A regulation step in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepDto {
    /// Speciale.
    pub speciale: u16,
    /// The 1 April or 1 October it applies from.
    pub effective_from: NaiveDate,
    /// The percentage, e.g. `+1,06 %`, or `officielle beløb`.
    pub change_da: String,
    /// Parts per million for a percentage step (+1,06 % = 10600).
    pub percent_ppm: Option<i64>,
    /// The official amounts in øre per kind, for an amounts step.
    pub amounts_ore: Option<BTreeMap<String, i64>>,
    /// Where the figure comes from.
    pub source: String,
    /// Shipped with Konsult (public, cited in docs/domain.md); cannot be changed.
    pub published: bool,
    /// When the clinic recorded it.
    pub recorded_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<StoredStep> for StepDto {
    fn from(s: StoredStep) -> Self {
        let (percent_ppm, amounts_ore) = match &s.step.change {
            StepChange::Percent { ppm } => (Some(*ppm), None),
            StepChange::Amounts { fees } => (
                None,
                Some(
                    fees.iter()
                        .map(|(kind, fee)| (kind.code().to_owned(), fee.ore()))
                        .collect(),
                ),
            ),
        };
        Self {
            speciale: s.step.speciale.code(),
            effective_from: s.step.effective_from,
            change_da: s.step.change.danish(),
            percent_ppm,
            amounts_ore,
            source: s.step.source,
            published: s.published,
            recorded_at: s.recorded_at,
        }
    }
}

/// The clinic's fees today: whether the table is up to date, the fee of each
/// service and how it was derived, and every regulation step.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeeStatusDto {
    /// Today (Danish).
    pub today: NaiveDate,
    /// Every regulation date up to today has a step.
    pub up_to_date: bool,
    /// The regulation dates with no step, by speciale.
    pub missing: Vec<MissingStepDto>,
    /// What to tell the clinic, in Danish (empty when up to date).
    pub warning_da: Option<String>,
    /// The same in English.
    pub warning_en: Option<String>,
    /// Today's fee of each service under each of the clinic's specialer.
    pub current: Vec<CurrentFeeDto>,
    /// The steps in force.
    pub steps: Vec<StepDto>,
}

/// The clinic's fees today and their regulation steps.
#[utoipa::path(get, path = "/api/fees", tag = "fees",
    responses((status = 200, body = FeeStatusDto), (status = 401, body = Problem)))]
async fn fee_status(State(state): State<AppState>, Auth(s): Auth) -> ApiResult<Json<FeeStatusDto>> {
    let today = danish_day(state.clock.now());
    let clinic = state.store.clinic(s.clinic).await?;
    let schedule = state.store.fee_schedule(s.clinic).await?;
    let missing: Vec<(Speciale, NaiveDate)> = schedule
        .missing_steps(today)
        .into_iter()
        .filter(|(speciale, _)| clinic.specialer.contains(speciale))
        .collect();
    let mut current = Vec::new();
    for speciale in &clinic.specialer {
        for kind in ServiceKind::ALL {
            if let Ok(priced) = schedule.price(kind, *speciale, today) {
                current.push(CurrentFeeDto {
                    kind: kind.code().to_owned(),
                    speciale: speciale.code(),
                    service_number: priced.service_number.to_string(),
                    fee: priced.fee.into(),
                    patient_share: konsult_domain::shares(*speciale, priced.fee).patient.into(),
                    unconfirmed: priced.reference.unconfirmed(),
                    reference: priced.reference.code(),
                    explained_da: priced.reference.danish(),
                    explained_en: priced.reference.english(),
                });
            }
        }
    }
    let (warning_da, warning_en) = if missing.is_empty() {
        (None, None)
    } else {
        let list = |date: fn(NaiveDate) -> String| {
            missing
                .iter()
                .map(|(speciale, day)| format!("sp. {} {}", speciale.code(), date(*day)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        (
            Some(format!(
                "Honorartabellen er ikke opdateret: reguleringen {} er ikke registreret. \
                 Honorarerne er de senest kendte og markeres som ikke bekræftede, indtil \
                 reguleringen er registreret; så genberegnes linjerne.",
                list(|d| d.format("%-d.%m.%Y").to_string())
            )),
            Some(format!(
                "The fee table is out of date: no regulation step is recorded for {}. Fees are \
                 the latest known ones and marked unconfirmed until the step is recorded; the \
                 lines are then re-priced.",
                list(|d| d.to_string())
            )),
        )
    };
    let steps = state.store.fee_steps(s.clinic).await?;
    Ok(Json(FeeStatusDto {
        today,
        up_to_date: missing.is_empty(),
        missing: missing
            .into_iter()
            .map(|(speciale, effective_from)| MissingStepDto {
                speciale: speciale.code(),
                effective_from,
            })
            .collect(),
        warning_da,
        warning_en,
        current,
        steps: steps.into_iter().map(Into::into).collect(),
    }))
}

/// A regulation step to record: a percentage, or the official amounts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Speciale (51 or 62).
    pub speciale: u16,
    /// The 1 April or 1 October the new fees apply from.
    pub effective_from: NaiveDate,
    /// The regulation in percent as published, e.g. `"1,06"` or `"-0,84"`
    /// (at most 4 decimals, within ±20 %). Give this or `amounts_ore`.
    pub percent: Option<String>,
    /// The official amounts in øre per kind (`individual_video`,
    /// `hold_video`), from the published fee list.
    pub amounts_ore: Option<BTreeMap<String, i64>>,
    /// Where the figure comes from (the published fee list).
    pub source: String,
}

/// A re-priced line.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepricedDto {
    /// Consultation.
    pub consultation_id: uuid::Uuid,
    /// The line replaced.
    pub old_line_id: uuid::Uuid,
    /// Its reversal (posted today).
    pub reversal_id: uuid::Uuid,
    /// The new line (posted today).
    pub new_line_id: uuid::Uuid,
    /// Old fee.
    pub old_fee: Amount,
    /// New fee.
    pub new_fee: Amount,
}

/// What a change of the fee schedule did to the billing lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleEffectsDto {
    /// Lines re-priced (a reversal and a new line each, in the current period).
    pub repriced: Vec<RepricedDto>,
    /// Consultations that had no valid fee and are now billed.
    pub now_billable: Vec<uuid::Uuid>,
}

impl From<ScheduleEffects> for ScheduleEffectsDto {
    fn from(e: ScheduleEffects) -> Self {
        Self {
            repriced: e
                .repriced
                .into_iter()
                .map(|r| RepricedDto {
                    consultation_id: r.consultation.as_uuid(),
                    old_line_id: r.old_line.as_uuid(),
                    reversal_id: r.reversal.as_uuid(),
                    new_line_id: r.new_line.as_uuid(),
                    old_fee: r.old_fee.into(),
                    new_fee: r.new_fee.into(),
                })
                .collect(),
            now_billable: e.now_billable.iter().map(|c| c.as_uuid()).collect(),
        }
    }
}

/// 422 `invalid_fee_step`, one item per reason.
fn bad_step(items: Vec<ProblemItem>) -> ApiError {
    ApiError::Rule {
        code: "invalid_fee_step",
        title: "The regulation step was not recorded".into(),
        items,
    }
}

/// One reason a regulation step is refused, in both languages.
fn step_item(da: impl std::fmt::Display, en: impl std::fmt::Display) -> ProblemItem {
    ProblemItem {
        code: "invalid_fee_step".into(),
        da: format!("Reguleringen er ikke gyldig: {da}"),
        en: format!("The regulation step is not valid: {en}"),
    }
}

/// A day as the Danish UI writes it (`01.04.2026`).
fn danish_date(day: NaiveDate) -> String {
    day.format("%d.%m.%Y").to_string()
}

/// A regulation step's problem in Danish (the English is its `Display`).
fn step_problem_danish(problem: &StepProblem) -> String {
    match problem {
        StepProblem::NotARegulationDate(day) => format!(
            "en regulering gælder fra 1. april eller 1. oktober, ikke fra {}.",
            danish_date(*day)
        ),
        StepProblem::BeforeReferenceLevel(day) => format!(
            "{} ligger ikke efter referenceniveauet fra oktober 2022.",
            danish_date(*day)
        ),
        StepProblem::Duplicate { speciale, date } => format!(
            "speciale {speciale} har allerede en regulering den {}.",
            danish_date(*date)
        ),
        StepProblem::PercentOutOfRange(ppm) => {
            let magnitude = ppm.unsigned_abs();
            let fraction = format!("{:04}", magnitude % 10_000);
            let fraction = fraction.trim_end_matches('0');
            let sign = if *ppm < 0 { "-" } else { "+" };
            let whole = magnitude / 10_000;
            let percent = if fraction.is_empty() {
                format!("{sign}{whole} %")
            } else {
                format!("{sign}{whole},{fraction} %")
            };
            format!("en regulering på {percent} er mere end ±20 %.")
        }
        StepProblem::MissingAmount(kind) => format!(
            "de officielle beløb skal give et honorar for {}.",
            kind.danish_name()
        ),
        StepProblem::AmountOutOfRange(amount) => {
            format!("et officielt beløb skal være over 0 kr og højst 400,00 kr, men er {amount}.")
        }
        StepProblem::NoSource => {
            "skriv, hvor tallet kommer fra (den offentliggjorte honorarliste).".to_owned()
        }
    }
}

/// A fee table row as the Danish messages name it, e.g. `række 2 (0131
/// individuel videokonsultation, sp. 51, 01.01.2024–01.04.2025)`.
fn row_danish(row: &RowRef) -> String {
    let until = row.valid_until.map(danish_date).unwrap_or_default();
    format!(
        "række {} ({} {}, sp. {}, {}–{until})",
        row.row,
        row.service_number,
        row.kind.danish_name(),
        row.speciale,
        danish_date(row.valid_from),
    )
}

/// One problem of a fee table in Danish (the English is its `Display`).
fn fee_table_problem_danish(problem: &FeeTableProblem) -> String {
    match problem {
        FeeTableProblem::NoRows => "tabellen har ingen rækker.".to_owned(),
        FeeTableProblem::Malformed { .. } => {
            "tabellen har ikke den rigtige form: den skal være en liste af rækker (rows)."
                .to_owned()
        }
        FeeTableProblem::UnknownTopLevelField { field } => {
            format!("feltet \"{field}\" kendes ikke (kun \"rows\" er tilladt).")
        }
        FeeTableProblem::RowNotATable { row } => {
            format!("række {row} er ikke en række med felter.")
        }
        FeeTableProblem::MissingField { row, field } => {
            format!("række {row}: feltet \"{field}\" mangler.")
        }
        FeeTableProblem::UnknownField { row, field } => {
            format!("række {row}: feltet \"{field}\" kendes ikke.")
        }
        FeeTableProblem::InvalidField { row, field, .. } => {
            format!("række {row}: feltet \"{field}\" har en ugyldig værdi.")
        }
        FeeTableProblem::UnknownSpeciale { row, code } => {
            format!("række {row}: speciale {code} kendes ikke (kun 51 og 62).")
        }
        FeeTableProblem::NonPositiveFee { row, fee } => format!(
            "{}: honoraret skal være over 0 kr, men er {fee}.",
            row_danish(row)
        ),
        FeeTableProblem::FeeAboveLimit { row, fee } => format!(
            "{}: honoraret må højst være 400,00 kr, men er {fee}.",
            row_danish(row)
        ),
        FeeTableProblem::EmptyPeriod { row } => format!(
            "{}: slutdatoen (valid_until) skal ligge efter startdatoen (valid_from).",
            row_danish(row)
        ),
        FeeTableProblem::Overlap { first, second } => format!(
            "{} og {} gælder begge på samme dag.",
            row_danish(first),
            row_danish(second)
        ),
        FeeTableProblem::Gap { before, after } => format!(
            "der mangler et honorar fra {} til {} mellem {} og {}.",
            before.valid_until.map(danish_date).unwrap_or_default(),
            danish_date(after.valid_from),
            row_danish(before),
            row_danish(after)
        ),
    }
}

/// 422 `invalid_fee_table`: every problem of a fee table that was not
/// loaded, one item each, in both languages.
pub(crate) fn bad_fee_table(error: &FeeTableError) -> ApiError {
    let item = |da: String, en: String| ProblemItem {
        code: "invalid_fee_table".into(),
        da: format!("Honorartabellen er ikke gyldig: {da}"),
        en: format!("The fee table is not valid: {en}"),
    };
    let items = match error {
        FeeTableError::Syntax { format, .. } => vec![item(
            format!("teksten kan ikke læses som {format}."),
            error.to_string(),
        )],
        FeeTableError::Invalid(problems) => problems
            .iter()
            .map(|p| item(fee_table_problem_danish(p), p.to_string()))
            .collect(),
    };
    ApiError::Rule {
        code: "invalid_fee_table",
        title: "The fee table was not loaded".into(),
        items,
    }
}

fn speciale(code: u16) -> ApiResult<Speciale> {
    Speciale::try_from(code).map_err(|_| unknown_speciale(code))
}

/// Records a regulation step (admin), or replaces the clinic's own step of
/// that speciale and date. Lines whose fee the step changes or confirms are
/// re-priced (a reversal and a new line, posted today) and consultations
/// without a valid fee are decided again, in the same transaction.
#[utoipa::path(post, path = "/api/fees/steps", tag = "fees", request_body = StepRequest,
    responses((status = 200, body = ScheduleEffectsDto), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn record_step(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(req): ApiJson<StepRequest>,
) -> ApiResult<Json<ScheduleEffectsDto>> {
    let change = match (req.percent.as_deref(), req.amounts_ore) {
        (Some(percent), None) => StepChange::Percent {
            ppm: parse_percent(percent).map_err(|en| {
                bad_step(vec![step_item(
                    "skriv procenten som fx \"1,06\" eller \"-0,84\" med højst 4 decimaler, \
                     inden for ±20 %.",
                    en,
                )])
            })?,
        },
        (None, Some(amounts)) => {
            let mut fees = BTreeMap::new();
            for (kind, ore) in amounts {
                let kind: ServiceKind = kind.parse().map_err(|_| {
                    bad_step(vec![step_item(
                        format!(
                            "ydelsen \"{kind}\" kendes ikke (individual_video eller hold_video)."
                        ),
                        format!("unknown service {kind:?} (individual_video or hold_video)"),
                    )])
                })?;
                if ore <= 0 || ore > MAX_FEE.ore() {
                    let fee = Money::from_ore(ore);
                    return Err(bad_step(vec![step_item(
                        format!(
                            "{fee} er ikke et honorar: det skal være over 0 kr og højst 400,00 kr."
                        ),
                        format!("{fee} is not a fee: above 0 kr and at most 400,00 kr"),
                    )]));
                }
                fees.insert(kind, Money::from_ore(ore));
            }
            StepChange::Amounts { fees }
        }
        _ => {
            return Err(bad_step(vec![step_item(
                "angiv enten en procent eller de officielle beløb.",
                "give either a percentage or the official amounts",
            )]))
        }
    };
    let step = RegulationStep {
        speciale: speciale(req.speciale)?,
        effective_from: req.effective_from,
        change,
        source: req.source.trim().to_owned(),
    };
    if step.source.chars().count() > 300 {
        return Err(bad_step(vec![step_item(
            "kilden må højst have 300 tegn.",
            "the source can be at most 300 characters",
        )]));
    }
    let problems = step.problems();
    if !problems.is_empty() {
        return Err(bad_step(
            problems
                .iter()
                .map(|p| step_item(step_problem_danish(p), p))
                .collect(),
        ));
    }
    let effects = state
        .store
        .record_fee_step(admin.0.clinic, admin.0.therapist, &step, state.clock.now())
        .await?;
    tracing::info!(
        speciale = %step.speciale,
        from = %step.effective_from,
        repriced = effects.repriced.len(),
        "fee regulation step recorded"
    );
    Ok(Json(effects.into()))
}

/// Removes a regulation step the clinic recorded (admin), e.g. one entered by
/// mistake; lines it priced are re-priced again.
#[utoipa::path(delete, path = "/api/fees/steps/{speciale}/{effective_from}", tag = "fees",
    params(("speciale" = u16, Path), ("effective_from" = NaiveDate, Path)),
    responses((status = 200, body = ScheduleEffectsDto), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_step(
    State(state): State<AppState>,
    admin: Admin,
    Path((code, day)): Path<(String, String)>,
) -> ApiResult<Json<ScheduleEffectsDto>> {
    let code: u16 = code.parse().map_err(|_| ApiError::NotFound("fee step"))?;
    let effective_from: NaiveDate = day.parse().map_err(|_| ApiError::NotFound("fee step"))?;
    let effects = state
        .store
        .remove_fee_step(
            admin.0.clinic,
            admin.0.therapist,
            speciale(code)?,
            effective_from,
            state.clock.now(),
        )
        .await?;
    Ok(Json(effects.into()))
}
