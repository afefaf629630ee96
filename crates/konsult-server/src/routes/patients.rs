//! Patients: create, read, rectify; export of all their data.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use konsult_domain::PatientId;
use konsult_store::patients::{Patient, PatientData};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Auth, Clinician};
use crate::error::{ApiResult, OnConflict, Problem};
use crate::extract::{ApiJson, IdPath};
use crate::input::{self, Cpr};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patients, create_patient))
        .routes(routes!(get_patient, update_patient, erase_patient))
        .routes(routes!(export_patient))
        .routes(routes!(merge_patient))
}

/// A patient's personal data as entered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientRequest {
    /// Full name.
    pub name: String,
    /// CPR number (DDMMYY-SSSS), optional.
    pub cpr: Option<String>,
    /// Phone to call if the video drops.
    pub phone: Option<String>,
    /// E-mail for join links.
    pub email: Option<String>,
}

impl TryFrom<PatientRequest> for PatientData {
    type Error = crate::error::ApiError;

    fn try_from(r: PatientRequest) -> Result<Self, Self::Error> {
        let blank = |o: Option<String>| o.filter(|s| !s.trim().is_empty());
        Ok(PatientData {
            name: input::name(&r.name, "name", "Navnet")?,
            cpr: blank(r.cpr)
                .map(|c| Cpr::parse(&c).map(|c| c.as_str().to_owned()))
                .transpose()?,
            phone: blank(r.phone).map(|p| input::phone(&p)).transpose()?,
            email: blank(r.email).map(|e| input::email(&e)).transpose()?,
        })
    }
}

/// A patient.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatientDto {
    /// Id.
    pub id: uuid::Uuid,
    /// Pseudonymous reference (used in billing exports).
    pub pseudonym: String,
    /// Name.
    pub name: String,
    /// CPR number.
    pub cpr: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The patient this one was merged into: it is inactive (cannot be
    /// scheduled, admitted or billed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<uuid::Uuid>,
    /// A patient created before CPR numbers were unique who has the same CPR
    /// number as this earlier patient: an admin should merge the two
    /// (`POST /api/patients/{id}/merge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<uuid::Uuid>,
    /// Whether the patient's data has been erased.
    pub erased: bool,
}

impl From<Patient> for PatientDto {
    fn from(p: Patient) -> Self {
        Self {
            id: p.id.as_uuid(),
            pseudonym: p.pseudonym,
            name: p.name,
            cpr: p.cpr,
            phone: p.phone,
            email: p.email,
            created_at: p.created_at,
            merged_into: p.merged_into.map(|m| m.as_uuid()),
            duplicate_of: p.duplicate_of.map(|d| d.as_uuid()),
            erased: p.erased_at.is_some(),
        }
    }
}

/// Which patient a duplicate is merged into.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The patient to keep.
    pub into: uuid::Uuid,
}

/// What a merge did.
#[derive(Debug, Serialize, ToSchema)]
pub struct MergeDto {
    /// The patient kept.
    pub into: uuid::Uuid,
    /// The duplicate, now inactive.
    pub merged: uuid::Uuid,
    /// Lines of the duplicate reversed (posted today) because the patient
    /// kept already had a line that Danish day.
    pub reversed_line_ids: Vec<uuid::Uuid>,
    /// Courses, consultations, visits and assessments moved.
    pub moved_records: u64,
}

/// Merges a duplicate patient (`{id}`) into another (`into`), for patients
/// created twice before CPR numbers were unique (admin). Everything of the
/// duplicate moves to the patient kept; a second line on one Danish day is
/// reversed; the duplicate becomes inactive. Audited for both patients.
#[utoipa::path(post, path = "/api/patients/{id}/merge", tag = "patients",
    params(("id" = uuid::Uuid, Path)), request_body = MergeRequest,
    responses((status = 200, body = MergeDto), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn merge_patient(
    State(state): State<AppState>,
    admin: Admin,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<MergeRequest>,
) -> ApiResult<Json<MergeDto>> {
    let report = state
        .store
        .merge_patients(
            admin.0.clinic,
            admin.0.therapist,
            PatientId::from_uuid(id),
            PatientId::from_uuid(req.into),
            state.clock.now(),
        )
        .await?;
    tracing::info!(merged = %report.merged, into = %report.into, "patients merged");
    Ok(Json(MergeDto {
        into: report.into.as_uuid(),
        merged: report.merged.as_uuid(),
        reversed_line_ids: report.reversed.iter().map(|l| l.as_uuid()).collect(),
        moved_records: report.moved_records,
    }))
}

/// The clinic's patients.
#[utoipa::path(get, path = "/api/patients", tag = "patients",
    responses((status = 200, body = [PatientDto]), (status = 401, body = Problem)))]
async fn list_patients(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Vec<PatientDto>>> {
    let list = state
        .store
        .patients(auth.0.clinic, auth.actor(), state.clock.now())
        .await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Creates a patient. A patient is unique per clinic by CPR number (with or
/// without hyphen): a second one answers 409 `duplicate_patient` with
/// `existing_patient_id`.
#[utoipa::path(post, path = "/api/patients", tag = "patients",
    request_body = PatientRequest,
    responses((status = 201, body = PatientDto), (status = 400, body = Problem), (status = 409, description = "duplicate_patient, with existing_patient_id", body = Problem)))]
async fn create_patient(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<PatientRequest>,
) -> ApiResult<(StatusCode, Json<PatientDto>)> {
    let data = PatientData::try_from(req)?;
    let p = state
        .store
        .create_patient(auth.0.clinic, auth.actor(), data, state.clock.now())
        .await?;
    tracing::info!(patient = %p.id, "patient created");
    Ok((StatusCode::CREATED, Json(p.into())))
}

/// One patient.
#[utoipa::path(get, path = "/api/patients/{id}", tag = "patients",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = PatientDto), (status = 404, body = Problem)))]
async fn get_patient(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<PatientDto>> {
    let p = state
        .store
        .patient(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    crate::alerts::after_patient_opened(&state, &auth.0).await;
    Ok(Json(p.into()))
}

/// Rectifies a patient's personal data (GDPR art. 16): the fields that
/// differ are replaced, the values they replace are kept in the history
/// (`GET /api/patients/{id}/history`) and the change is audited with the
/// names of the changed fields.
#[utoipa::path(put, path = "/api/patients/{id}", tag = "patients",
    params(("id" = uuid::Uuid, Path)),
    request_body = PatientRequest,
    responses((status = 200, body = PatientDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn update_patient(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<PatientRequest>,
) -> ApiResult<Json<PatientDto>> {
    let data = PatientData::try_from(req)?;
    let p = state
        .store
        .update_patient(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            data,
            state.clock.now(),
        )
        .await
        .on_conflict(
            "cpr_taken",
            "En anden patient i klinikken har allerede dette CPR-nummer.",
        )?;
    Ok(Json(p.into()))
}

/// Everything Konsult holds about one patient (GDPR art. 15 and 20), as
/// the versioned document `konsult.patient-export` version 1, described in
/// `docs/export-schema.md` (schema `PatientExport`).
#[utoipa::path(get, path = "/api/patients/{id}/export", tag = "patients",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "All data of the patient",
            body = inline(crate::routes::openapi::PatientExportRef)),
        (status = 404, body = Problem)))]
async fn export_patient(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
) -> ApiResult<impl IntoResponse> {
    let export = state
        .store
        .export_patient(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    crate::alerts::after_patient_opened(&state, &auth.0).await;
    let disposition = format!(
        "attachment; filename=\"konsult-patient-{}.json\"",
        export.patient.pseudonym
    );
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(export)))
}

/// Erases the patient's personal data where retention allows it (no
/// journal note that must still be kept, no open consultation); admin only.
#[utoipa::path(delete, path = "/api/patients/{id}", tag = "patients",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 409, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn erase_patient(
    State(state): State<AppState>,
    admin: Admin,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    state
        .store
        .erase_patient(
            admin.0.clinic,
            admin.0.therapist,
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await
        .on_conflict(
            "retention",
            "Patientens oplysninger kan ikke slettes endnu: journalen skal gemmes i de \
             lovpligtige år efter det sidste journalnotat, og ingen af patientens \
             konsultationer må være i gang eller mangle at blive afsluttet.",
        )?;
    Ok(StatusCode::NO_CONTENT)
}
