//! Setup of a new installation, login, logout and "who am I".

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use konsult_domain::Speciale;
use konsult_store::clinics::NewClinic;
use konsult_store::therapists::{NewTherapist, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{self, Auth, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::input;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(setup))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// The first clinic and its admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token printed at first start.
    pub setup_token: String,
    /// Clinic name.
    pub clinic_name: String,
    /// Six-digit ydernummer.
    pub ydernummer: String,
    /// Specialer (51, 62).
    pub specialer: Vec<u16>,
    /// The admin's name.
    pub admin_name: String,
    /// The admin's login e-mail.
    pub admin_email: String,
    /// The admin's password (at least 10 characters).
    pub admin_password: String,
}

/// Ids created by setup.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetupResponse {
    /// The clinic.
    pub clinic_id: uuid::Uuid,
    /// The admin.
    pub admin_id: uuid::Uuid,
}

pub(crate) fn parse_specialer(codes: &[u16]) -> ApiResult<Vec<Speciale>> {
    if codes.is_empty() {
        return Err(ApiError::BadRequest(
            "at least one speciale (51 or 62) is needed".into(),
        ));
    }
    let mut out = Vec::new();
    for c in codes {
        let s = Speciale::try_from(*c)
            .map_err(|_| ApiError::BadRequest(format!("unknown speciale {c}; use 51 or 62")))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Creates the first clinic and its admin with the one-time setup token.
#[utoipa::path(post, path = "/api/setup", tag = "account",
    request_body = SetupRequest,
    responses((status = 201, body = SetupResponse), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn setup(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, Json<SetupResponse>)> {
    let clinic = NewClinic {
        name: input::name(&req.clinic_name, "clinic_name")?,
        ydernummer: input::ydernummer(&req.ydernummer)?,
        specialer: parse_specialer(&req.specialer)?,
    };
    auth::check_new_password(&req.admin_password)?;
    let admin = NewTherapist {
        name: input::name(&req.admin_name, "admin_name")?,
        email: input::email(&req.admin_email)?,
        password_hash: auth::hash_password(&req.admin_password)?,
        role: Role::Admin,
    };
    let (clinic_id, admin_id) = state
        .store
        .setup_first_clinic(&req.setup_token, clinic, admin, state.clock.now())
        .await?;
    tracing::info!(clinic = %clinic_id, "clinic set up");
    Ok((
        StatusCode::CREATED,
        Json(SetupResponse {
            clinic_id: clinic_id.as_uuid(),
            admin_id: admin_id.as_uuid(),
        }),
    ))
}

/// Login form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login e-mail.
    pub email: String,
    /// Password.
    pub password: String,
}

/// The logged-in therapist and the token to echo in `x-csrf-token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// Therapist id.
    pub therapist_id: uuid::Uuid,
    /// Name.
    pub name: String,
    /// Role (`admin` or `therapist`).
    pub role: String,
    /// Clinic id.
    pub clinic_id: uuid::Uuid,
    /// Clinic name.
    pub clinic_name: String,
    /// Echo this in the `x-csrf-token` header of every state-changing request.
    pub csrf_token: String,
}

async fn me_response(
    state: &AppState,
    session: &konsult_store::therapists::Session,
) -> ApiResult<MeResponse> {
    let therapist = state
        .store
        .therapist(session.clinic, session.therapist)
        .await?;
    let clinic = state.store.clinic(session.clinic).await?;
    Ok(MeResponse {
        therapist_id: therapist.id.as_uuid(),
        name: therapist.name,
        role: serde_json::to_value(therapist.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        clinic_id: clinic.id.as_uuid(),
        clinic_name: clinic.name,
        csrf_token: session.csrf_token.clone(),
    })
}

/// Logs in; sets the session cookie (HttpOnly, SameSite=Strict, Secure under TLS).
#[utoipa::path(post, path = "/api/login", tag = "account",
    request_body = LoginRequest,
    responses((status = 200, body = MeResponse), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<(CookieJar, Json<MeResponse>)> {
    let key = format!("login:{}", req.email.trim().to_lowercase());
    if !state.login_limiter.allowed(&key) {
        return Err(ApiError::TooManyRequests);
    }
    let candidate = state.store.login_candidate(&req.email).await?;
    let password = req.password.clone();
    let hash = candidate
        .as_ref()
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_owned());
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let therapist = match (ok, candidate) {
        (true, Some((t, _))) => t,
        _ => {
            state.login_limiter.failed(&key);
            tracing::info!("login refused");
            return Err(ApiError::Unauthorized);
        }
    };
    state.login_limiter.succeeded(&key);
    let ttl = chrono::Duration::hours(i64::from(state.settings.session_hours));
    let (token, session) = state
        .store
        .create_session(&therapist, state.clock.now(), ttl)
        .await?;
    tracing::info!(therapist = %therapist.id, "logged in");
    let cookie = Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookies)
        .path("/")
        .max_age(time_duration(ttl))
        .build();
    Ok((jar.add(cookie), Json(me_response(&state, &session).await?)))
}

fn time_duration(d: chrono::Duration) -> time::Duration {
    time::Duration::seconds(d.num_seconds())
}

/// Logs out.
#[utoipa::path(post, path = "/api/logout", tag = "account",
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(
    State(state): State<AppState>,
    _auth: Auth,
    jar: CookieJar,
) -> ApiResult<(CookieJar, StatusCode)> {
    if let Some(c) = jar.get(SESSION_COOKIE) {
        state.store.delete_session(c.value()).await?;
    }
    Ok((
        jar.remove(Cookie::build(SESSION_COOKIE).path("/")),
        StatusCode::NO_CONTENT,
    ))
}

/// The logged-in therapist, clinic and CSRF token.
#[utoipa::path(get, path = "/api/me", tag = "account",
    responses((status = 200, body = MeResponse), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, Auth(session): Auth) -> ApiResult<Json<MeResponse>> {
    Ok(Json(me_response(&state, &session).await?))
}
