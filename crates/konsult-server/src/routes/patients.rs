//! Patients: create, read, change; export of all their data.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use konsult_domain::PatientId;
use konsult_store::patients::{Patient, PatientData};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Auth};
use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, IdPath};
use crate::input::{self, Cpr};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patients, create_patient))
        .routes(routes!(get_patient, update_patient, erase_patient))
        .routes(routes!(export_patient))
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
            name: input::name(&r.name, "name")?,
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
        }
    }
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

/// Creates a patient.
#[utoipa::path(post, path = "/api/patients", tag = "patients",
    request_body = PatientRequest,
    responses((status = 201, body = PatientDto), (status = 400, body = Problem)))]
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
    Ok(Json(p.into()))
}

/// Replaces a patient's personal data.
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
        .await?;
    Ok(Json(p.into()))
}

/// Everything Konsult holds about one patient (data subject access, JSON).
#[utoipa::path(get, path = "/api/patients/{id}/export", tag = "patients",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "All data of the patient", body = Object), (status = 404, body = Problem)))]
async fn export_patient(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<serde_json::Value>> {
    let export = state
        .store
        .export_patient(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    Ok(Json(export))
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
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
