//! Clinic administration: settings, accounts, fee table, audit log.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use konsult_domain::FeeTable;
use konsult_store::audit::{AuditEntry, ChainStatus};
use konsult_store::clinics::{ClinicUpdate, Retention};
use konsult_store::therapists::{NewTherapist, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{self, Admin, Auth};
use crate::error::{ApiError, ApiResult, Problem, ProblemItem};
use crate::extract::{ApiJson, ApiQuery};
use crate::input;
use crate::routes::account::parse_specialer;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_clinic, update_clinic))
        .routes(routes!(get_fee_table, put_fee_table))
        .routes(routes!(list_therapists, create_therapist))
        .routes(routes!(audit_log))
}

/// Clinic settings as shown to its staff.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClinicDto {
    /// Id.
    pub id: uuid::Uuid,
    /// Name.
    pub name: String,
    /// Ydernummer.
    pub ydernummer: String,
    /// Specialer.
    pub specialer: Vec<u16>,
    /// Relay-only default for new consultations.
    pub relay_only_default: bool,
    /// Retention periods.
    #[schema(value_type = Object)]
    pub retention: Retention,
}

impl From<konsult_store::clinics::Clinic> for ClinicDto {
    fn from(c: konsult_store::clinics::Clinic) -> Self {
        Self {
            id: c.id.as_uuid(),
            name: c.name,
            ydernummer: c.ydernummer,
            specialer: c.specialer.iter().map(|s| s.code()).collect(),
            relay_only_default: c.relay_only_default,
            retention: c.retention,
        }
    }
}

/// The caller's clinic.
#[utoipa::path(get, path = "/api/clinic", tag = "admin",
    responses((status = 200, body = ClinicDto), (status = 401, body = Problem)))]
async fn get_clinic(State(state): State<AppState>, Auth(s): Auth) -> ApiResult<Json<ClinicDto>> {
    Ok(Json(state.store.clinic(s.clinic).await?.into()))
}

/// Changes to the clinic's settings; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClinicUpdateRequest {
    /// Name.
    pub name: Option<String>,
    /// Ydernummer.
    pub ydernummer: Option<String>,
    /// Specialer.
    pub specialer: Option<Vec<u16>>,
    /// Relay-only default.
    pub relay_only_default: Option<bool>,
    /// Retention periods.
    #[schema(value_type = Option<Object>)]
    pub retention: Option<Retention>,
}

/// Changes the clinic's settings (admin).
#[utoipa::path(put, path = "/api/clinic", tag = "admin",
    request_body = ClinicUpdateRequest,
    responses((status = 200, body = ClinicDto), (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn update_clinic(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(req): ApiJson<ClinicUpdateRequest>,
) -> ApiResult<Json<ClinicDto>> {
    if let Some(r) = &req.retention {
        r.validate().map_err(ApiError::BadRequest)?;
    }
    let update = ClinicUpdate {
        name: req
            .name
            .as_deref()
            .map(|n| input::name(n, "name"))
            .transpose()?,
        ydernummer: req
            .ydernummer
            .as_deref()
            .map(input::ydernummer)
            .transpose()?,
        specialer: req.specialer.as_deref().map(parse_specialer).transpose()?,
        relay_only_default: req.relay_only_default,
        retention: req.retention,
    };
    let clinic = state
        .store
        .update_clinic(admin.0.clinic, admin.0.therapist, update, state.clock.now())
        .await?;
    Ok(Json(clinic.into()))
}

/// The fee table in force (the clinic's own or the shipped default), as TOML.
#[utoipa::path(get, path = "/api/clinic/fee-table", tag = "admin",
    responses((status = 200, description = "TOML fee table", content_type = "application/toml")))]
async fn get_fee_table(
    State(state): State<AppState>,
    Auth(s): Auth,
) -> ApiResult<impl IntoResponse> {
    let table = state.store.clinic(s.clinic).await?.fee_table()?;
    let toml = table.to_toml_string();
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        toml,
    ))
}

/// Loads a new fee table (TOML or JSON by Content-Type); every problem is
/// named by row and nothing changes when one is found.
#[utoipa::path(put, path = "/api/clinic/fee-table", tag = "admin",
    request_body(content = String, content_type = "application/toml"),
    responses((status = 204), (status = 422, body = Problem), (status = 403, body = Problem)))]
async fn put_fee_table(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the fee table must be UTF-8 text".into()))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = if is_json {
        FeeTable::from_json_str(text)
    } else {
        FeeTable::from_toml_str(text)
    };
    let table = parsed.map_err(|e| ApiError::Rule {
        code: "invalid_fee_table",
        title: "The fee table was not loaded".into(),
        items: vec![ProblemItem {
            code: "invalid_fee_table".into(),
            da: format!("Honorartabellen er ikke gyldig: {e}"),
            en: format!("The fee table is not valid: {e}"),
        }],
    })?;
    state
        .store
        .set_fee_table(admin.0.clinic, admin.0.therapist, &table, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A therapist account.
#[derive(Debug, Serialize, ToSchema)]
pub struct TherapistDto {
    /// Id.
    pub id: uuid::Uuid,
    /// Name.
    pub name: String,
    /// Login e-mail.
    pub email: String,
    /// `admin` or `therapist`.
    pub role: String,
    /// Can log in.
    pub active: bool,
}

impl From<konsult_store::therapists::Therapist> for TherapistDto {
    fn from(t: konsult_store::therapists::Therapist) -> Self {
        Self {
            id: t.id.as_uuid(),
            name: t.name,
            email: t.email,
            role: match t.role {
                Role::Admin => "admin".into(),
                Role::Therapist => "therapist".into(),
            },
            active: t.active,
        }
    }
}

/// The clinic's accounts (admin).
#[utoipa::path(get, path = "/api/therapists", tag = "admin",
    responses((status = 200, body = [TherapistDto]), (status = 403, body = Problem)))]
async fn list_therapists(
    State(state): State<AppState>,
    admin: Admin,
) -> ApiResult<Json<Vec<TherapistDto>>> {
    let list = state.store.therapists(admin.0.clinic).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTherapistRequest {
    /// Name.
    pub name: String,
    /// Login e-mail.
    pub email: String,
    /// Initial password (at least 10 characters).
    pub password: String,
    /// `admin` or `therapist`.
    #[schema(value_type = String)]
    pub role: Role,
}

/// Creates an account in the admin's clinic.
#[utoipa::path(post, path = "/api/therapists", tag = "admin",
    request_body = NewTherapistRequest,
    responses((status = 201, body = TherapistDto), (status = 409, body = Problem), (status = 403, body = Problem)))]
async fn create_therapist(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(req): ApiJson<NewTherapistRequest>,
) -> ApiResult<(StatusCode, Json<TherapistDto>)> {
    auth::check_new_password(&req.password)?;
    let new = NewTherapist {
        name: input::name(&req.name, "name")?,
        email: input::email(&req.email)?,
        password_hash: auth::hash_password(&req.password)?,
        role: req.role,
    };
    let id = state
        .store
        .create_therapist(admin.0.clinic, admin.0.therapist, new, state.clock.now())
        .await?;
    let t = state.store.therapist(admin.0.clinic, id).await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Return entries after this sequence number.
    #[serde(default)]
    pub after: i64,
    /// At most this many (1–1000, default 200).
    pub limit: Option<i64>,
}

/// A page of the audit log and the state of the chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Entries, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<AuditEntry>,
    /// Whether the whole chain verifies.
    #[schema(value_type = Object)]
    pub chain: ChainStatus,
}

/// The clinic's audit log (admin), with a check of the hash chain.
#[utoipa::path(get, path = "/api/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem)))]
async fn audit_log(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1–1000".into()));
    }
    let entries = state
        .store
        .audit_entries(admin.0.clinic, q.after, limit)
        .await?;
    let chain = state.store.verify_audit_chain(admin.0.clinic).await?;
    Ok(Json(AuditPage { entries, chain }))
}
