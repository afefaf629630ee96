//! Data protection in the API: the patient's access log (sundhedsloven
//! § 42 a) as JSON and as a file to hand over, the rectification history
//! (GDPR art. 16), the privacy notice of the join page (art. 13) and its
//! clinic settings, the records of processing (art. 30), and the export of
//! access and login events for a breach investigation (art. 33).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{day_bounds_utc, PatientId};
use konsult_store::access_log::{AccessEntry, Accessor, ClinicAccessEntry, LoginEvent};
use konsult_store::clinics::PrivacyText;
use konsult_store::patients::Revision;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Auth, Clinician};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::privacy::PrivacyNotice;
use crate::records::{RecordsOfProcessing, Texts};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(access_log))
        .routes(routes!(access_log_csv))
        .routes(routes!(history))
        .routes(routes!(join_privacy))
        .routes(routes!(
            get_privacy_notice,
            put_privacy_notice,
            delete_privacy_notice
        ))
        .routes(routes!(records_of_processing))
        .routes(routes!(security_export))
}

fn texts(t: &konsult_store::access_log::Texts) -> Texts {
    Texts {
        da: t.da.clone(),
        en: t.en.clone(),
    }
}

/// Who did something.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessorDto {
    /// `admin`, `therapist`, `patient` (through the join link) or `system`.
    pub role: String,
    /// The staff member's name; absent for the patient and for Konsult.
    pub name: Option<String>,
    /// The staff account's id.
    pub account: Option<uuid::Uuid>,
    /// The role in words.
    pub role_text: Texts,
}

impl From<&Accessor> for AccessorDto {
    fn from(a: &Accessor) -> Self {
        Self {
            role: a.role.to_owned(),
            name: a.name.clone(),
            account: a.account,
            role_text: texts(&a.role_text),
        }
    }
}

/// One entry of an access log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessEntryDto {
    /// Position in the clinic's audit chain.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who, in which role.
    pub who: AccessorDto,
    /// Action code, e.g. `journal.read`.
    pub action: String,
    /// `read` or `write`.
    pub kind: String,
    /// What was done, in words.
    pub what: Texts,
    /// The record acted on (an id), when there is one.
    pub subject: Option<String>,
}

impl From<&AccessEntry> for AccessEntryDto {
    fn from(e: &AccessEntry) -> Self {
        Self {
            seq: e.seq,
            at: e.at,
            who: (&e.who).into(),
            action: e.action.clone(),
            kind: match e.kind {
                konsult_store::access_log::AccessKind::Read => "read".into(),
                konsult_store::access_log::AccessKind::Write => "write".into(),
            },
            what: texts(&e.what),
            subject: e.subject.clone(),
        }
    }
}

/// A patient's access log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLogDto {
    /// The patient.
    pub patient_id: uuid::Uuid,
    /// The patient's pseudonym.
    pub patient_ref: String,
    /// When this copy was made.
    pub generated_at: DateTime<Utc>,
    /// Every read and change of the patient's data, oldest first.
    pub entries: Vec<AccessEntryDto>,
}

async fn load_access_log(
    state: &AppState,
    auth: &Clinician,
    id: uuid::Uuid,
) -> ApiResult<AccessLogDto> {
    let now = state.clock.now();
    let log = state
        .store
        .access_log(auth.0.clinic, auth.actor(), PatientId::from_uuid(id), now)
        .await?;
    Ok(AccessLogDto {
        patient_id: log.patient.as_uuid(),
        patient_ref: log.pseudonym,
        generated_at: now,
        entries: log.entries.iter().map(Into::into).collect(),
    })
}

/// Who has read or changed the patient's record, when, in which role and
/// what (sundhedsloven § 42 a), staff by name. Reading it is audited.
#[utoipa::path(get, path = "/api/patients/{id}/access-log", tag = "privacy",
    params(("id" = uuid::Uuid, Path, description = "The patient")),
    responses((status = 200, body = AccessLogDto), (status = 404, body = Problem)))]
async fn access_log(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
) -> ApiResult<Json<AccessLogDto>> {
    Ok(Json(load_access_log(&state, &auth, id).await?))
}

/// The language of a file for the patient.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LangQuery {
    /// `da` (default) or `en`.
    pub lang: Option<String>,
}

impl LangQuery {
    fn lang(&self) -> ApiResult<&str> {
        match self.lang.as_deref() {
            None | Some("da") => Ok("da"),
            Some("en") => Ok("en"),
            Some(_) => Err(ApiError::bad_request(
                "invalid_lang",
                "Sproget skal være da (dansk) eller en (engelsk).",
                "lang must be da or en",
            )),
        }
    }
}

/// A CSV field: quoted when it holds a separator, quote or line break, and
/// never read as a formula by a spreadsheet.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// An instant as Danish wall-clock time.
fn copenhagen(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono_tz::Europe::Copenhagen)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The access log as a semicolon-separated file for the patient.
pub fn access_log_csv_text(entries: &[AccessEntryDto], lang: &str) -> String {
    let header = if lang == "en" {
        "time (Danish time);who;role;action;what"
    } else {
        "tidspunkt (dansk tid);hvem;rolle;handling;hvad"
    };
    let mut out = String::from(header);
    out.push_str("\r\n");
    for e in entries {
        let pick = |t: &Texts| {
            if lang == "en" {
                t.en.clone()
            } else {
                t.da.clone()
            }
        };
        let who = e.who.name.clone().unwrap_or_else(|| pick(&e.who.role_text));
        let kind = match (e.kind.as_str(), lang) {
            ("write", "en") => "change",
            ("write", _) => "ændring",
            (_, "en") => "read",
            _ => "læsning",
        };
        let row = [
            copenhagen(e.at),
            who,
            pick(&e.who.role_text),
            kind.to_owned(),
            pick(&e.what),
        ];
        out.push_str(
            &row.iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(";"),
        );
        out.push_str("\r\n");
    }
    out
}

/// The access log as a file to hand to the patient (CSV, Danish or English).
#[utoipa::path(get, path = "/api/patients/{id}/access-log.csv", tag = "privacy",
    params(("id" = uuid::Uuid, Path, description = "The patient"), LangQuery),
    responses(
        (status = 200, description = "Semicolon-separated, UTF-8", content_type = "text/csv", body = String),
        (status = 404, body = Problem)))]
async fn access_log_csv(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<LangQuery>,
) -> ApiResult<impl IntoResponse> {
    let lang = q.lang()?.to_owned();
    let log = load_access_log(&state, &auth, id).await?;
    let disposition = format!(
        "attachment; filename=\"konsult-adgangslog-{}.csv\"",
        log.patient_ref
    );
    // A byte-order mark, so spreadsheets read the file as UTF-8.
    let body = format!("\u{feff}{}", access_log_csv_text(&log.entries, &lang));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    ))
}

/// A patient's personal data at one time.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientDataDto {
    /// Name.
    pub name: String,
    /// CPR number.
    pub cpr: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

/// One rectification.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionDto {
    /// Its id (the subject of its `patient.rectify` audit entry).
    pub id: uuid::Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// Who made it.
    pub by: AccessorDto,
    /// Which fields changed (`name`, `cpr`, `phone`, `email`).
    pub fields: Vec<String>,
    /// The values before the change.
    pub previous: PatientDataDto,
}

impl From<Revision> for RevisionDto {
    fn from(r: Revision) -> Self {
        Self {
            id: r.id,
            at: r.at,
            by: (&r.by).into(),
            fields: r.fields,
            previous: PatientDataDto {
                name: r.previous.name,
                cpr: r.previous.cpr,
                phone: r.previous.phone,
                email: r.previous.email,
            },
        }
    }
}

/// Every rectification of the patient's personal data (made with
/// `PUT /api/patients/{id}`), oldest first, with the values it replaced.
#[utoipa::path(get, path = "/api/patients/{id}/history", tag = "privacy",
    params(("id" = uuid::Uuid, Path, description = "The patient")),
    responses((status = 200, body = [RevisionDto]), (status = 404, body = Problem)))]
async fn history(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<RevisionDto>>> {
    let revisions = state
        .store
        .patient_history(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    crate::alerts::after_patient_opened(&state, &auth.0).await;
    Ok(Json(revisions.into_iter().map(Into::into).collect()))
}

/// The privacy notice for the patient holding a join link: the clinic's
/// own text or the default filled in from its settings; for an unknown
/// link, the default without the clinic's name. Works before, during and
/// after the consultation. Rate-limited like the other join-link endpoints
/// (it tells a real link from an unknown one by naming its clinic).
#[utoipa::path(get, path = "/api/join/{token}/privacy", tag = "join",
    params(("token" = String, Path, description = "The join link's token")),
    responses((status = 200, body = PrivacyNotice)))]
async fn join_privacy(
    State(state): State<AppState>,
    client: crate::routes::account::ClientAddress,
    Path(token): Path<String>,
) -> ApiResult<Json<PrivacyNotice>> {
    crate::routes::join::limit(&state, &client)?;
    let clinic = if token.len() > 128 {
        None
    } else {
        match state.store.clinic_of_link(&token).await? {
            Some(id) => Some(state.store.clinic(id).await?),
            None => None,
        }
    };
    Ok(Json(crate::privacy::notice(clinic.as_ref())))
}

/// The clinic's privacy information as set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyTextDto {
    /// Address, phone or e-mail for questions about personal data (1–500
    /// characters).
    pub contact: String,
    /// The clinic's own notice in Danish (paragraphs separated by a blank
    /// line, at most 5000 characters); absent: the default text.
    pub text_da: Option<String>,
    /// The same in English.
    pub text_en: Option<String>,
}

impl TryFrom<PrivacyTextDto> for PrivacyText {
    type Error = ApiError;

    fn try_from(r: PrivacyTextDto) -> Result<Self, ApiError> {
        let contact = r.contact.trim().to_owned();
        if contact.is_empty() || contact.chars().count() > 500 {
            return Err(ApiError::bad_request(
                "invalid_contact",
                "Skriv, hvordan patienter kontakter klinikken om deres oplysninger (højst 500 tegn).",
                "contact must be 1–500 characters",
            ));
        }
        let text = |t: Option<String>, name: &str| -> ApiResult<Option<String>> {
            match t.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) {
                Some(t) if t.chars().count() > 5000 => Err(ApiError::bad_request(
                    "text_too_long",
                    "Teksten må højst have 5000 tegn.",
                    format!("{name} can be at most 5000 characters"),
                )),
                other => Ok(other),
            }
        };
        Ok(PrivacyText {
            contact,
            text_da: text(r.text_da, "text_da")?,
            text_en: text(r.text_en, "text_en")?,
        })
    }
}

/// The clinic's privacy settings and the notice patients see.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrivacySettingsDto {
    /// What the clinic has set; absent: nothing (the default notice).
    pub settings: Option<PrivacyTextDto>,
    /// The notice as patients see it.
    pub notice: PrivacyNotice,
}

async fn privacy_settings(
    state: &AppState,
    clinic: konsult_domain::ClinicId,
) -> ApiResult<PrivacySettingsDto> {
    let clinic = state.store.clinic(clinic).await?;
    Ok(PrivacySettingsDto {
        settings: clinic.privacy.clone().map(|p| PrivacyTextDto {
            contact: p.contact,
            text_da: p.text_da,
            text_en: p.text_en,
        }),
        notice: crate::privacy::notice(Some(&clinic)),
    })
}

/// The clinic's privacy notice for patients, and what it is made from.
#[utoipa::path(get, path = "/api/clinic/privacy-notice", tag = "privacy",
    responses((status = 200, body = PrivacySettingsDto)))]
async fn get_privacy_notice(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<PrivacySettingsDto>> {
    Ok(Json(privacy_settings(&state, auth.0.clinic).await?))
}

/// Sets the clinic's contact for data-protection questions and, if it
/// wants, its own notice text (admin).
#[utoipa::path(put, path = "/api/clinic/privacy-notice", tag = "privacy",
    request_body = PrivacyTextDto,
    responses((status = 200, body = PrivacySettingsDto), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn put_privacy_notice(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(req): ApiJson<PrivacyTextDto>,
) -> ApiResult<Json<PrivacySettingsDto>> {
    let text = PrivacyText::try_from(req)?;
    state
        .store
        .set_privacy_text(
            admin.0.clinic,
            admin.0.therapist,
            Some(&text),
            state.clock.now(),
        )
        .await?;
    Ok(Json(privacy_settings(&state, admin.0.clinic).await?))
}

/// Goes back to the default notice without a clinic contact (admin).
#[utoipa::path(delete, path = "/api/clinic/privacy-notice", tag = "privacy",
    responses((status = 204), (status = 403, body = Problem)))]
async fn delete_privacy_notice(
    State(state): State<AppState>,
    admin: Admin,
) -> ApiResult<StatusCode> {
    state
        .store
        .set_privacy_text(admin.0.clinic, admin.0.therapist, None, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The clinic's records of processing activities (GDPR art. 30),
/// generated from its settings and this installation's (admin).
#[utoipa::path(get, path = "/api/clinic/records-of-processing", tag = "privacy",
    responses((status = 200, body = RecordsOfProcessing), (status = 403, body = Problem)))]
async fn records_of_processing(
    State(state): State<AppState>,
    admin: Admin,
) -> ApiResult<impl IntoResponse> {
    let now = state.clock.now();
    let clinic = state.store.clinic(admin.0.clinic).await?;
    // Settings only, no personal data of patients: not an audited read.
    let records = crate::records::records(&clinic, &state.settings, state.signaling.turn(), now);
    let disposition = format!(
        "inline; filename=\"konsult-fortegnelse-{}.json\"",
        clinic.ydernummer
    );
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(records)))
}

/// A period of Danish calendar days, both ends included.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SecurityPeriod {
    /// First day, `YYYY-MM-DD`.
    pub from: NaiveDate,
    /// Last day, `YYYY-MM-DD` (at most 400 days after `from`).
    pub to: NaiveDate,
}

/// One entry of the clinic-wide access export.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClinicAccessEntryDto {
    /// The entry.
    #[serde(flatten)]
    pub entry: AccessEntryDto,
    /// The patient concerned, if any (id).
    pub patient: Option<uuid::Uuid>,
    /// The patient's pseudonym, if any (never the name).
    pub patient_ref: Option<String>,
}

impl From<&ClinicAccessEntry> for ClinicAccessEntryDto {
    fn from(e: &ClinicAccessEntry) -> Self {
        Self {
            entry: (&e.entry).into(),
            patient: e.patient,
            patient_ref: e.patient_ref.clone(),
        }
    }
}

/// One login event.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginEventDto {
    /// When.
    pub at: DateTime<Utc>,
    /// Whose account.
    pub who: AccessorDto,
    /// `success`, `failure` (wrong password), `throttled` (too many
    /// failures) or `logout`.
    pub outcome: String,
}

impl From<&LoginEvent> for LoginEventDto {
    fn from(e: &LoginEvent) -> Self {
        Self {
            at: e.at,
            who: (&e.who).into(),
            outcome: e.outcome.code().to_owned(),
        }
    }
}

/// Access and login events of a period.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityExportDto {
    /// Start (inclusive): midnight in Copenhagen of `from`.
    pub from: DateTime<Utc>,
    /// End (exclusive): midnight in Copenhagen after `to`.
    pub to: DateTime<Utc>,
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// Every audit entry of the period, oldest first.
    pub access: Vec<ClinicAccessEntryDto>,
    /// Every login event of the period, oldest first.
    pub logins: Vec<LoginEventDto>,
}

/// Every access to personal data and every login of a period, for a
/// breach investigation (admin; audited).
#[utoipa::path(get, path = "/api/security/export", tag = "privacy", params(SecurityPeriod),
    responses((status = 200, body = SecurityExportDto), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn security_export(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(p): ApiQuery<SecurityPeriod>,
) -> ApiResult<impl IntoResponse> {
    if p.to < p.from || (p.to - p.from).num_days() > 400 {
        return Err(ApiError::bad_request(
            "invalid_period",
            "Slutdatoen skal ligge på eller efter startdatoen og højst 400 dage senere.",
            "`to` must be on or after `from`, at most 400 days later",
        ));
    }
    let now = state.clock.now();
    let (from, _) = day_bounds_utc(p.from);
    let (_, to) = day_bounds_utc(p.to);
    let export = state
        .store
        .security_export(admin.0.clinic, admin.0.therapist, from, to, now)
        .await?;
    let disposition = format!(
        "attachment; filename=\"konsult-sikkerhedslog-{}-{}.json\"",
        p.from, p.to
    );
    Ok((
        [(header::CONTENT_DISPOSITION, disposition)],
        Json(SecurityExportDto {
            from: export.from,
            to: export.to,
            generated_at: now,
            access: export.access.iter().map(Into::into).collect(),
            logins: export.logins.iter().map(Into::into).collect(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("Mette Fysio"), "Mette Fysio");
        assert_eq!(csv_field("a;b"), "\"a;b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1"), "'-1");
    }

    #[test]
    fn times_are_danish_wall_clock() {
        use chrono::TimeZone;
        let winter = Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap();
        assert_eq!(copenhagen(winter), "2026-11-25 09:00:00");
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 8, 0, 0).unwrap();
        assert_eq!(copenhagen(summer), "2026-07-01 10:00:00");
    }
}
