//! Billing lines per period, export (CSV and JSON) and corrections.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::NaiveDate;
use konsult_domain::{BillingLineId, Money};
use konsult_store::billing::{ExportLine, PeriodBy};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, OnConflict, Problem};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_lines))
        .routes(routes!(export_csv))
        .routes(routes!(export_json))
        .routes(routes!(correct))
}

/// A period of Danish calendar days, both ends included. Exports are by
/// posting day (the day a line was made).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// First day, `YYYY-MM-DD`.
    pub from: NaiveDate,
    /// Last day, `YYYY-MM-DD`.
    pub to: NaiveDate,
}

/// A period to list, by posting day (default, as exported) or by service day.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListPeriod {
    /// First day, `YYYY-MM-DD`.
    pub from: NaiveDate,
    /// Last day, `YYYY-MM-DD`.
    pub to: NaiveDate,
    /// `posting` (default): lines made in the period, as exported;
    /// `service`: lines of consultations held in the period.
    #[param(value_type = Option<String>)]
    pub by: Option<By>,
}

/// Which day a period is chosen by.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// The day the line was made.
    Posting,
    /// The day of the consultation.
    Service,
}

impl Period {
    fn check(&self) -> ApiResult<()> {
        if self.to < self.from {
            return Err(ApiError::bad_request(
                "invalid_period",
                "Periodens slutdato må ikke ligge før startdatoen.",
                "`to` must not be before `from`",
            ));
        }
        if (self.to - self.from).num_days() > 400 {
            return Err(ApiError::bad_request(
                "period_too_long",
                "En periode kan højst være 400 dage.",
                "a period can be at most 400 days",
            ));
        }
        Ok(())
    }
}

/// Sums of a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct Totals {
    /// Number of lines (corrections included).
    pub lines: usize,
    /// Sum of fees in øre.
    pub fee_ore: i64,
    /// Sum of region shares in øre.
    pub region_share_ore: i64,
    /// Sum of patient shares in øre.
    pub patient_share_ore: i64,
    /// The fee sum in Danish text.
    pub fee: String,
    /// The region share sum in Danish text.
    pub region_share: String,
    /// The patient share sum in Danish text.
    pub patient_share: String,
}

/// Checked sums: every line's amounts are bounded (±400 kr) when stored, and
/// a sum that would still not fit is an error, never a wrapped number.
fn totals(lines: &[ExportLine]) -> ApiResult<Totals> {
    let sum = |amount: fn(&ExportLine) -> i64| -> ApiResult<i64> {
        lines
            .iter()
            .try_fold(0i64, |total, line| total.checked_add(amount(line)))
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("billing totals overflow")))
    };
    let fee = sum(|l| l.fee_ore)?;
    let region = sum(|l| l.region_share_ore)?;
    let patient = sum(|l| l.patient_share_ore)?;
    Ok(Totals {
        lines: lines.len(),
        fee_ore: fee,
        region_share_ore: region,
        patient_share_ore: patient,
        fee: Money::from_ore(fee).to_string(),
        region_share: Money::from_ore(region).to_string(),
        patient_share: Money::from_ore(patient).to_string(),
    })
}

/// Lines of a period and their totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingPage {
    /// Lines, by day.
    #[schema(value_type = Vec<crate::routes::openapi::ExportLineSchema>)]
    pub lines: Vec<ExportLine>,
    /// Totals.
    pub totals: Totals,
}

/// The clinic's billing lines of a period, with totals (does not export).
#[utoipa::path(get, path = "/api/billing", tag = "billing", params(ListPeriod),
    responses((status = 200, body = BillingPage), (status = 400, body = Problem)))]
async fn list_lines(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<ListPeriod>,
) -> ApiResult<Json<BillingPage>> {
    Period {
        from: p.from,
        to: p.to,
    }
    .check()?;
    let by = match p.by {
        None | Some(By::Posting) => PeriodBy::Posting,
        Some(By::Service) => PeriodBy::Service,
    };
    let lines = state
        .store
        .billing_lines(
            auth.0.clinic,
            auth.0.therapist,
            p.from,
            p.to,
            by,
            state.clock.now(),
        )
        .await?;
    let totals = totals(&lines)?;
    Ok(Json(BillingPage { lines, totals }))
}

/// The CSV columns, in order (each documented in `docs/billing-export.md`). Columns
/// added later are appended, so readers by position keep working.
pub const CSV_HEADER: &str = "line_id;ydernummer;patient_ref;service_number;speciale;calendar_day;fee_ore;region_share_ore;patient_share_ore;fee_kr;region_share_kr;patient_share_kr;consultation_id;correction_of;evidence;posting_day;therapist_id;kind;fee_reference;fee_unconfirmed";

fn kroner(ore: i64) -> String {
    // "1234,50" — Danish decimal comma, no thousands separator, no unit.
    let sign = if ore < 0 { "-" } else { "" };
    let abs = ore.unsigned_abs();
    format!("{sign}{},{:02}", abs / 100, abs % 100)
}

/// Renders lines as CSV (semicolon-separated, as Danish spreadsheets
/// expect; amounts both in øre and in kroner with a decimal comma).
pub fn to_csv(lines: &[ExportLine]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for l in lines {
        let row = [
            l.line_id.to_string(),
            l.ydernummer.clone(),
            l.patient_ref.clone(),
            l.service_number.to_string(),
            l.speciale.code().to_string(),
            l.calendar_day.to_string(),
            l.fee_ore.to_string(),
            l.region_share_ore.to_string(),
            l.patient_share_ore.to_string(),
            kroner(l.fee_ore),
            kroner(l.region_share_ore),
            kroner(l.patient_share_ore),
            l.consultation_id.to_string(),
            l.correction_of.map(|c| c.to_string()).unwrap_or_default(),
            l.evidence.code().to_string(),
            l.posting_day.to_string(),
            l.therapist_id.map(|t| t.to_string()).unwrap_or_default(),
            l.kind.code().to_string(),
            l.fee_reference.clone(),
            if l.fee_unconfirmed { "1" } else { "0" }.to_string(),
        ];
        out.push_str(&row.join(";"));
        out.push_str("\r\n");
    }
    out
}

/// Exports the lines posted in a closed period (it ended before today) as
/// CSV; exported lines become immutable. Exporting again gives the same bytes.
#[utoipa::path(get, path = "/api/billing/export.csv", tag = "billing", params(Period),
    responses((status = 200, description = "Semicolon-separated lines, columns as in CSV_HEADER", content_type = "text/csv", body = String), (status = 400, body = Problem), (status = 409, description = "period_not_closed: the period has not ended", body = Problem)))]
async fn export_csv(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Period>,
) -> ApiResult<impl IntoResponse> {
    p.check()?;
    let lines = state
        .store
        .export_billing(
            auth.0.clinic,
            auth.0.therapist,
            p.from,
            p.to,
            state.clock.now(),
        )
        .await?;
    let disposition = format!(
        "attachment; filename=\"konsult-billing-{}-{}.csv\"",
        p.from, p.to
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        to_csv(&lines),
    ))
}

/// Exports the lines posted in a closed period (it ended before today) as
/// JSON; exported lines become immutable. Exporting again gives the same bytes.
#[utoipa::path(get, path = "/api/billing/export.json", tag = "billing", params(Period),
    responses((status = 200, body = BillingPage), (status = 400, body = Problem), (status = 409, description = "period_not_closed: the period has not ended", body = Problem)))]
async fn export_json(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<Period>,
) -> ApiResult<Json<BillingPage>> {
    p.check()?;
    let lines = state
        .store
        .export_billing(
            auth.0.clinic,
            auth.0.therapist,
            p.from,
            p.to,
            state.clock.now(),
        )
        .await?;
    let totals = totals(&lines)?;
    Ok(Json(BillingPage { lines, totals }))
}

/// Why a line is corrected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionRequest {
    /// The reason, for the accountant.
    pub note: String,
}

/// The correction line made.
#[derive(Debug, Serialize, ToSchema)]
pub struct CorrectionDto {
    /// The new, reversing line.
    pub id: uuid::Uuid,
    /// The line it corrects.
    pub correction_of: uuid::Uuid,
}

/// Reverses a line with a new line (fee and shares negated) that references
/// it, posted today; the consultation can then be decided again
/// (`POST /api/consultations/{id}/decision`).
#[utoipa::path(post, path = "/api/billing/{id}/correction", tag = "billing",
    params(("id" = uuid::Uuid, Path)), request_body = CorrectionRequest,
    responses((status = 201, body = CorrectionDto), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn correct(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<CorrectionRequest>,
) -> ApiResult<(StatusCode, Json<CorrectionDto>)> {
    let note = req.note.trim();
    if note.is_empty() || note.chars().count() > 500 {
        return Err(ApiError::bad_request(
            "invalid_note",
            "Skriv en begrundelse på højst 500 tegn.",
            "the note must be 1–500 characters",
        ));
    }
    let original = BillingLineId::from_uuid(id);
    let new_id = state
        .store
        .correct_line(
            auth.0.clinic,
            auth.0.therapist,
            original,
            note,
            state.clock.now(),
        )
        .await
        .on_conflict(
            "already_reversed",
            "Linjen er allerede tilbageført eller er selv en tilbageførsel, så den kan ikke \
             tilbageføres.",
        )?;
    Ok((
        StatusCode::CREATED,
        Json(CorrectionDto {
            id: new_id.as_uuid(),
            correction_of: id,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/billing-export.md` documents every column of the export, in
    /// order: the practice systems that read the file are written from it.
    #[test]
    fn the_export_document_names_every_column_in_order() {
        let doc = include_str!("../../../../docs/billing-export.md");
        let mut documented = Vec::new();
        for row in doc.lines().filter(|l| l.starts_with("| ")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            // | # | Column | Meaning |: the first cell is a number or a range.
            if cells.len() < 4 || !cells[1].starts_with(|c: char| c.is_ascii_digit()) {
                continue;
            }
            documented.extend(
                cells[2]
                    .split(',')
                    .map(|c| c.trim().trim_matches('`').to_owned()),
            );
        }
        let header: Vec<&str> = CSV_HEADER.split(';').collect();
        assert_eq!(documented, header);
    }

    #[test]
    fn kroner_use_a_decimal_comma() {
        assert_eq!(kroner(30795), "307,95");
        assert_eq!(kroner(-12102), "-121,02");
        assert_eq!(kroner(5), "0,05");
    }
}
