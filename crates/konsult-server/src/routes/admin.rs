//! Clinic administration: settings, accounts, fee table, audit log.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use konsult_domain::{FeeTable, TherapistId};
use konsult_store::audit::{AuditEntry, ChainStatus};
use konsult_store::clinics::{ClinicUpdate, Retention};
use konsult_store::therapists::{NewTherapist, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Auth};
use crate::error::{ApiError, ApiResult, OnConflict, Problem};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::input;
use crate::passwords::NewPassword;
use crate::routes::account::parse_specialer;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_clinic, update_clinic))
        .routes(routes!(get_fee_table, put_fee_table))
        .routes(routes!(list_therapists, create_therapist))
        .routes(routes!(list_clinicians))
        .routes(routes!(reset_password))
        .routes(routes!(deactivate_therapist))
        .routes(routes!(reactivate_therapist))
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
    /// Which evidence of two-way media bills: `client_reported` (relay-
    /// observed where media passed Konsult's relay, else consistent client
    /// reports) or `relay_observed` (only media Konsult's relay observed;
    /// every consultation is then relay-only).
    #[schema(value_type = String, example = "client_reported")]
    pub evidence_policy: konsult_domain::EvidencePolicy,
    /// Retention periods.
    #[schema(value_type = crate::routes::openapi::RetentionSchema)]
    pub retention: Retention,
    /// The phone number patients are told to call, if set.
    pub phone: Option<String>,
}

impl From<konsult_store::clinics::Clinic> for ClinicDto {
    fn from(c: konsult_store::clinics::Clinic) -> Self {
        Self {
            id: c.id.as_uuid(),
            name: c.name,
            ydernummer: c.ydernummer,
            specialer: c.specialer.iter().map(|s| s.code()).collect(),
            relay_only_default: c.relay_only_default,
            evidence_policy: c.evidence_policy,
            retention: c.retention,
            phone: c.phone,
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
    /// Evidence policy: `client_reported` or `relay_observed`.
    #[schema(value_type = Option<String>)]
    pub evidence_policy: Option<konsult_domain::EvidencePolicy>,
    /// Retention periods.
    #[schema(value_type = Option<crate::routes::openapi::RetentionSchema>)]
    pub retention: Option<Retention>,
    /// The phone number patients are told to call (at least 8 digits,
    /// spaces and a leading `+` allowed); `""` removes it.
    pub phone: Option<String>,
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
        r.validate().map_err(|en| {
            ApiError::bad_request(
                "invalid_retention",
                "Opbevaringstiderne er for korte: journaler skal gemmes i mindst 5 år, \
                 afregning i mindst 2 år og hændelser i mindst 1 dag.",
                en,
            )
        })?;
    }
    let update = ClinicUpdate {
        name: req
            .name
            .as_deref()
            .map(|n| input::name(n, "name", "Klinikkens navn"))
            .transpose()?,
        ydernummer: req
            .ydernummer
            .as_deref()
            .map(input::ydernummer)
            .transpose()?,
        specialer: req.specialer.as_deref().map(parse_specialer).transpose()?,
        relay_only_default: req.relay_only_default,
        evidence_policy: req.evidence_policy,
        retention: req.retention,
        phone: req
            .phone
            .as_deref()
            .map(|p| match p.trim() {
                "" => Ok(None),
                p => input::phone(p).map(Some),
            })
            .transpose()?,
    };
    let clinic = state
        .store
        .update_clinic(admin.0.clinic, admin.0.therapist, update, state.clock.now())
        .await?;
    Ok(Json(clinic.into()))
}

/// The fee table in force (the clinic's own or the shipped default), as TOML.
#[utoipa::path(get, path = "/api/clinic/fee-table", tag = "admin",
    responses((status = 200, description = "TOML fee table", content_type = "application/toml", body = String)))]
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
    request_body(description = "The fee table as TOML, or as JSON with Content-Type application/json (docs/domain.md, \"File format\")",
        content((String = "application/toml"), (String = "application/json"))),
    responses((status = 204), (status = 422, body = Problem), (status = 403, body = Problem)))]
async fn put_fee_table(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::bad_request(
            "fee_table_not_text",
            "Honorartabellen skal være tekst (UTF-8).",
            "the fee table must be UTF-8 text",
        )
    })?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = if is_json {
        FeeTable::from_json_str(text)
    } else {
        FeeTable::from_toml_str(text)
    };
    let table = parsed.map_err(|e| crate::routes::fees::bad_fee_table(&e))?;
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
    /// `admin`, `therapist` or `secretary`.
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
            role: t.role.code().into(),
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

/// A clinician of the clinic, as the booking form names them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClinicianDto {
    /// Id (the `therapist_id` of a booking).
    pub id: uuid::Uuid,
    /// Name.
    pub name: String,
}

/// The clinic's active therapists and admins, who can run a consultation
/// (any account: a secretary books for them). Names only.
#[utoipa::path(get, path = "/api/clinicians", tag = "admin",
    responses((status = 200, body = [ClinicianDto]), (status = 401, body = Problem)))]
async fn list_clinicians(
    State(state): State<AppState>,
    Auth(session): Auth,
) -> ApiResult<Json<Vec<ClinicianDto>>> {
    let list = state.store.therapists(session.clinic).await?;
    Ok(Json(
        list.into_iter()
            .filter(|t| t.active && t.role.is_clinical())
            .map(|t| ClinicianDto {
                id: t.id.as_uuid(),
                name: t.name,
            })
            .collect(),
    ))
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTherapistRequest {
    /// Name.
    pub name: String,
    /// Login e-mail.
    pub email: String,
    /// Initial password (12–256 characters, not a common password).
    pub password: String,
    /// `admin`, `therapist` or `secretary` (books and sees the day; no
    /// journal notes, assessments or calls).
    #[schema(value_type = String)]
    pub role: Role,
}

/// Creates an account in the admin's clinic. A login e-mail is unique
/// within the clinic (409 when an account of the clinic has it); an
/// account with the same address in another clinic neither prevents it
/// nor shows.
#[utoipa::path(post, path = "/api/therapists", tag = "admin",
    request_body = NewTherapistRequest,
    responses((status = 201, body = TherapistDto), (status = 409, body = Problem), (status = 403, body = Problem),
        (status = 422, description = "`weak_password`", body = Problem)))]
async fn create_therapist(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(req): ApiJson<NewTherapistRequest>,
) -> ApiResult<(StatusCode, Json<TherapistDto>)> {
    let name = input::name(&req.name, "name", "Navnet")?;
    let email = input::email(&req.email)?;
    let password = NewPassword::parse(&req.password)?;
    let new = NewTherapist {
        name,
        email,
        password_hash: password.hash()?,
        role: req.role,
    };
    let id = state
        .store
        .create_therapist(admin.0.clinic, admin.0.therapist, new, state.clock.now())
        .await
        .on_conflict(
            "email_taken",
            "Der findes allerede en bruger med denne e-mailadresse i klinikken.",
        )?;
    let t = state.store.therapist(admin.0.clinic, id).await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// A new password an admin sets for an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The new password (12–256 characters, not a common password).
    pub new_password: String,
}

/// Sets a new password for another account of the clinic (admin): every
/// session of that account ends at once, with its signaling connections.
/// Audited. An admin changes their own password with the current one
/// (`POST /api/account/password`), not here (409 `own_account`).
#[utoipa::path(post, path = "/api/therapists/{id}/password", tag = "admin",
    params(("id" = uuid::Uuid, Path)), request_body = PasswordReset,
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, description = "`weak_password`", body = Problem)))]
async fn reset_password(
    State(state): State<AppState>,
    admin: Admin,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<PasswordReset>,
) -> ApiResult<StatusCode> {
    let therapist = TherapistId::from_uuid(id);
    if therapist == admin.0.therapist {
        return Err(ApiError::coded_conflict(
            "own_account",
            "Skift din egen adgangskode under Min konto.",
            "change your own password with the current one (POST /api/account/password)",
        ));
    }
    let password = NewPassword::parse(&req.new_password)?;
    let ended = state
        .store
        .reset_password(
            admin.0.clinic,
            admin.0.therapist,
            therapist,
            &password.hash()?,
            state.clock.now(),
        )
        .await?;
    state.signaling.sessions_ended(ended).await;
    tracing::info!(%therapist, "password reset by an admin");
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivates an account of the clinic (admin): it can no longer log in,
/// and every session and signaling connection of it ends at once. The
/// clinic's last active admin cannot be deactivated (409 `last_admin`).
/// Audited.
#[utoipa::path(post, path = "/api/therapists/{id}/deactivate", tag = "admin",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = TherapistDto), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`last_admin`", body = Problem)))]
async fn deactivate_therapist(
    State(state): State<AppState>,
    admin: Admin,
    IdPath(id): IdPath,
) -> ApiResult<Json<TherapistDto>> {
    let therapist = TherapistId::from_uuid(id);
    let ended = state
        .store
        .deactivate_therapist(
            admin.0.clinic,
            admin.0.therapist,
            therapist,
            state.clock.now(),
        )
        .await?;
    state.signaling.sessions_ended(ended).await;
    tracing::info!(%therapist, "account deactivated");
    Ok(Json(
        state
            .store
            .therapist(admin.0.clinic, therapist)
            .await?
            .into(),
    ))
}

/// Reactivates an account of the clinic (admin): it can log in again with
/// its password (reset it too if it may be known to others). Audited.
#[utoipa::path(post, path = "/api/therapists/{id}/reactivate", tag = "admin",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = TherapistDto), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn reactivate_therapist(
    State(state): State<AppState>,
    admin: Admin,
    IdPath(id): IdPath,
) -> ApiResult<Json<TherapistDto>> {
    let therapist = TherapistId::from_uuid(id);
    state
        .store
        .reactivate_therapist(
            admin.0.clinic,
            admin.0.therapist,
            therapist,
            state.clock.now(),
        )
        .await?;
    tracing::info!(%therapist, "account reactivated");
    Ok(Json(
        state
            .store
            .therapist(admin.0.clinic, therapist)
            .await?
            .into(),
    ))
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    #[schema(value_type = Vec<crate::routes::openapi::AuditEntrySchema>)]
    pub entries: Vec<AuditEntry>,
    /// Whether the whole chain verifies.
    #[schema(value_type = crate::routes::openapi::ChainStatusSchema)]
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
        return Err(ApiError::bad_request(
            "invalid_limit",
            "Der kan hentes mellem 1 og 1000 poster ad gangen.",
            "limit must be 1–1000",
        ));
    }
    let entries = state
        .store
        .audit_entries(admin.0.clinic, q.after, limit)
        .await?;
    let chain = state.store.verify_audit_chain(admin.0.clinic).await?;
    Ok(Json(AuditPage { entries, chain }))
}
