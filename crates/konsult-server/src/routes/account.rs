//! Setup of a new installation (or of an added clinic's first admin),
//! login, logout (here or everywhere), the account holder's password
//! change, and "who am I".

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use konsult_domain::Speciale;
use konsult_store::access_log::LoginOutcome;
use konsult_store::clinics::NewClinic;
use konsult_store::therapists::{NewTherapist, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{self, Auth};
use crate::error::{ApiError, ApiResult, Problem, ProblemItem, Text};
use crate::extract::ApiJson;
use crate::input;
use crate::login_limits::Outcome;
use crate::passwords::NewPassword;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(setup))
        .routes(routes!(setup_status))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(logout_everywhere))
        .routes(routes!(change_password))
        .routes(routes!(me))
}

/// The first clinic and its admin, or the first admin of a clinic the
/// operator added (`konsult clinic add`), whose link needs no clinic details.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token of the setup link (after `#`).
    pub setup_token: String,
    /// Clinic name (first clinic only; ignored for an added clinic).
    pub clinic_name: Option<String>,
    /// Six-digit ydernummer (first clinic only).
    pub ydernummer: Option<String>,
    /// Specialer, 51 and/or 62 (first clinic only).
    pub specialer: Option<Vec<u16>>,
    /// The admin's name.
    pub admin_name: String,
    /// The admin's login e-mail.
    pub admin_email: String,
    /// The admin's password (12–256 characters, not a common password).
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

/// A setup token, to ask what it sets up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupStatusRequest {
    /// The one-time token of the setup link (after `#`).
    pub setup_token: String,
}

/// What a setup link sets up.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetupStatus {
    /// `first_clinic`: the installation's first clinic and its admin (the
    /// clinic's details are needed); `clinic_admin`: the first admin of a
    /// clinic the operator added.
    pub purpose: String,
    /// The added clinic's name (`clinic_admin` only).
    pub clinic_name: Option<String>,
}

/// 400 `unknown_speciale`: a speciale number other than 51 or 62.
pub(crate) fn unknown_speciale(code: u16) -> ApiError {
    ApiError::bad_request(
        "unknown_speciale",
        format!("Speciale {code} kendes ikke. Vælg 51 eller 62."),
        format!("unknown speciale {code}; use 51 or 62"),
    )
}

pub(crate) fn parse_specialer(codes: &[u16]) -> ApiResult<Vec<Speciale>> {
    if codes.is_empty() {
        return Err(ApiError::bad_request(
            "no_speciale",
            "Vælg mindst ét speciale (51 eller 62).",
            "at least one speciale (51 or 62) is needed",
        ));
    }
    let mut out = Vec::new();
    for c in codes {
        let s = Speciale::try_from(*c).map_err(|_| unknown_speciale(*c))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Creates the first clinic and its admin with the one-time setup token,
/// or the first admin of a clinic the operator added. A link older than
/// `setup_link_hours` is refused (409 `setup_link_expired`).
#[utoipa::path(post, path = "/api/setup", tag = "account",
    request_body = SetupRequest,
    responses((status = 201, body = SetupResponse), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`setup_link_expired`, or `clinic_details_missing`, or the e-mail is taken", body = Problem),
        (status = 422, description = "`weak_password`", body = Problem)))]
async fn setup(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, Json<SetupResponse>)> {
    let clinic = match (&req.clinic_name, &req.ydernummer, &req.specialer) {
        (None, None, None) => None,
        (name, ydernummer, specialer) => Some(NewClinic {
            name: input::name(
                name.as_deref().unwrap_or(""),
                "clinic_name",
                "Klinikkens navn",
            )?,
            ydernummer: input::ydernummer(ydernummer.as_deref().unwrap_or(""))?,
            specialer: parse_specialer(specialer.as_deref().unwrap_or(&[]))?,
        }),
    };
    let name = input::name(&req.admin_name, "admin_name", "Dit navn")?;
    let email = input::email(&req.admin_email)?;
    let password = NewPassword::parse(&req.admin_password)?;
    let admin = NewTherapist {
        name,
        email,
        password_hash: password.hash()?,
        role: Role::Admin,
    };
    let (clinic_id, admin_id) = state
        .store
        .setup_with_token(
            &req.setup_token,
            clinic,
            admin,
            state.settings.setup_link_max_age(),
            state.clock.now(),
        )
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

/// What a setup link sets up, before the form is filled in: 404 for an
/// unknown or used link, 409 `setup_link_expired` for an old one. The
/// token travels in the body, never in a URL.
#[utoipa::path(post, path = "/api/setup/status", tag = "account",
    request_body = SetupStatusRequest,
    responses((status = 200, body = SetupStatus), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn setup_status(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupStatusRequest>,
) -> ApiResult<Json<SetupStatus>> {
    let clinic = state
        .store
        .setup_token_clinic(
            &req.setup_token,
            state.settings.setup_link_max_age(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(match clinic {
        None => SetupStatus {
            purpose: "first_clinic".into(),
            clinic_name: None,
        },
        Some(clinic) => SetupStatus {
            purpose: "clinic_admin".into(),
            clinic_name: Some(clinic.name),
        },
    }))
}

/// Login form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login e-mail.
    pub email: String,
    /// Password.
    pub password: String,
    /// The clinic to log in to, when the e-mail and password fit accounts
    /// in more than one (after a 409 `choose_clinic`).
    pub clinic_id: Option<uuid::Uuid>,
}

/// One of the clinics a login could go to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClinicChoice {
    /// Send it back as `clinic_id`.
    pub id: uuid::Uuid,
    /// Its name.
    pub name: String,
}

/// 409 `choose_clinic`: the e-mail and password fit accounts in several
/// clinics; log in again with one of them as `clinic_id`. Only someone
/// who knows the password of each account listed gets this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChooseClinicProblem {
    /// The problem (`urn:konsult:problem:choose_clinic`).
    #[serde(flatten)]
    pub problem: Problem,
    /// The clinics to choose from.
    pub clinics: Vec<ClinicChoice>,
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
    /// On a server started with `--demo`, for the demo clinic: the demo
    /// patient's join link, to open in another browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo_join_url: Option<String>,
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
        demo_join_url: state
            .demo_link
            .get()
            .filter(|(demo, _)| *demo == clinic.id)
            .map(|(_, url)| url.clone()),
    })
}

/// Logs in; sets the session cookie (HttpOnly, SameSite=Strict; under TLS
/// `__Host-konsult_session`, Secure). A login e-mail may have an account in
/// more than one clinic: the password is checked against each, and the
/// account it fits logs in; when it fits several, 409 `choose_clinic` lists
/// them and the client sends `clinic_id`.
#[utoipa::path(post, path = "/api/login", tag = "account",
    request_body = LoginRequest,
    responses((status = 200, body = MeResponse), (status = 401, body = Problem),
        (status = 409, description = "`choose_clinic`", body = ChooseClinicProblem),
        (status = 429, body = Problem), (status = 503, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    jar: CookieJar,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    // Reserved before the password is checked, so concurrent guesses count.
    let attempt = match state.login_limiter.begin(&req.email, client) {
        Ok(attempt) => attempt,
        Err(refused) => {
            for (t, _) in state.store.login_candidates(&req.email).await? {
                state
                    .store
                    .record_login(t.clinic, t.id, LoginOutcome::Throttled, now)
                    .await?;
            }
            tracing::info!("login throttled");
            return Err(ApiError::Throttled {
                retry_after: refused.retry_after,
            });
        }
    };
    if !attempt.delay().is_zero() {
        tokio::time::sleep(attempt.delay()).await;
    }
    let candidates: Vec<_> = state
        .store
        .login_candidates(&req.email)
        .await?
        .into_iter()
        .filter(|(t, _)| req.clinic_id.is_none_or(|c| t.clinic.as_uuid() == c))
        .collect();
    // Without an account the password is checked against a dummy hash, so
    // a wrong e-mail and a wrong password take the same time. (An address
    // with accounts in several clinics takes one check per account.)
    let mut fits = Vec::new();
    let mut misses = Vec::new();
    if candidates.is_empty() {
        check(&state, req.password.clone(), auth::dummy_hash().to_owned()).await?;
    }
    for (t, hash) in candidates {
        if check(&state, req.password.clone(), hash).await? {
            fits.push(t);
        } else {
            misses.push(t);
        }
    }
    let therapist = match fits.len() {
        0 => {
            attempt.finish(Outcome::Failed);
            // A wrong password for a real account: kept for a breach
            // investigation (no address, no e-mail).
            for t in misses {
                state
                    .store
                    .record_login(t.clinic, t.id, LoginOutcome::Failure, now)
                    .await?;
            }
            tracing::info!("login refused");
            return Err(ApiError::Unauthorized);
        }
        1 => fits.remove(0),
        _ => {
            attempt.finish(Outcome::Succeeded);
            let mut clinics = Vec::new();
            for t in &fits {
                clinics.push(ClinicChoice {
                    id: t.clinic.as_uuid(),
                    name: state.store.clinic(t.clinic).await?.name,
                });
            }
            return Ok(choose_clinic(clinics));
        }
    };
    attempt.finish(Outcome::Succeeded);
    state
        .store
        .record_login(therapist.clinic, therapist.id, LoginOutcome::Success, now)
        .await?;
    let ttl = chrono::Duration::hours(i64::from(state.settings.session_hours));
    let (token, session) = state.store.create_session(&therapist, now, ttl).await?;
    tracing::info!(therapist = %therapist.id, "logged in");
    let cookie = Cookie::build((auth::session_cookie_name(state.secure_cookies), token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.secure_cookies)
        .path("/")
        .max_age(time_duration(ttl))
        .build();
    Ok((jar.add(cookie), Json(me_response(&state, &session).await?)).into_response())
}

/// One bounded password check; 503 with `Retry-After` when all are busy
/// (the attempt is then not counted: it is released on drop).
async fn check(state: &AppState, password: String, hash: String) -> ApiResult<bool> {
    state
        .password_checks
        .verify(password, hash)
        .await
        .map_err(|busy| {
            tracing::info!("login refused: password checks busy");
            ApiError::Busy {
                retry_after: busy.retry_after,
            }
        })
}

fn choose_clinic(clinics: Vec<ClinicChoice>) -> Response {
    let text = Text::new(
        "choose_clinic",
        "E-mailadressen og adgangskoden passer til brugere i flere klinikker. \
         Vælg klinikken, og log ind igen.",
        "the e-mail and password fit accounts in more than one clinic; log in again with clinic_id",
    );
    let body = ChooseClinicProblem {
        problem: Problem {
            kind: "urn:konsult:problem:choose_clinic".into(),
            title: "Choose a clinic".into(),
            status: StatusCode::CONFLICT.as_u16(),
            detail: Some(text.en.clone()),
            errors: vec![text.item()],
            existing_patient_id: None,
        },
        clinics,
    };
    (
        StatusCode::CONFLICT,
        [(header::CONTENT_TYPE, "application/problem+json")],
        Json(body),
    )
        .into_response()
}

/// The client's address for the login limiter only: never stored or
/// logged (the limiter keeps a keyed hash). From the configured proxy
/// header when there is one (`X-Forwarded-For`: its last entry, the one
/// the proxy added), else the peer; none behind a proxy without such a
/// header, where every peer is the proxy.
pub(crate) struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        let settings = &state.settings;
        let address = match &settings.http.client_address_header {
            Some(name) => parts
                .headers
                .get_all(name.as_str())
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok())
                .or(peer),
            None if settings.tls.behind_proxy => None,
            None => peer,
        };
        Ok(ClientAddress(address))
    }
}

fn time_duration(d: chrono::Duration) -> time::Duration {
    time::Duration::seconds(d.num_seconds())
}

/// Logs out: ends this session and its signaling connections.
#[utoipa::path(post, path = "/api/logout", tag = "account",
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(
    State(state): State<AppState>,
    auth: Auth,
    jar: CookieJar,
) -> ApiResult<(CookieJar, StatusCode)> {
    if let Some(c) = jar.get(auth::session_cookie_name(state.secure_cookies)) {
        let key = state.store.delete_session(c.value()).await?;
        state.signaling.sessions_ended(vec![key]).await;
    }
    state
        .store
        .record_login(
            auth.0.clinic,
            auth.0.therapist,
            LoginOutcome::Logout,
            state.clock.now(),
        )
        .await?;
    Ok((jar.remove(removal(&state)), StatusCode::NO_CONTENT))
}

/// Logs out everywhere: ends every session of the account (this one too,
/// and those on other devices) and their signaling connections. Audited.
#[utoipa::path(post, path = "/api/logout/everywhere", tag = "account",
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout_everywhere(
    State(state): State<AppState>,
    auth: Auth,
    jar: CookieJar,
) -> ApiResult<(CookieJar, StatusCode)> {
    let now = state.clock.now();
    let ended = state
        .store
        .revoke_sessions(auth.0.clinic, auth.0.therapist, now)
        .await?;
    state.signaling.sessions_ended(ended).await;
    state
        .store
        .record_login(auth.0.clinic, auth.0.therapist, LoginOutcome::Logout, now)
        .await?;
    tracing::info!(therapist = %auth.0.therapist, "logged out everywhere");
    Ok((jar.remove(removal(&state)), StatusCode::NO_CONTENT))
}

/// The cookie that clears the session cookie: under its own name and with
/// the same attributes (a `__Host-` cookie without `Secure` is ignored by
/// browsers, so it would not clear anything).
fn removal(state: &AppState) -> Cookie<'static> {
    Cookie::build(auth::session_cookie_name(state.secure_cookies))
        .path("/")
        .secure(state.secure_cookies)
        .http_only(true)
        .same_site(SameSite::Strict)
        .build()
}

/// The account holder's new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password in force now.
    pub current_password: String,
    /// The new one (12–256 characters, not a common password).
    pub new_password: String,
}

/// Changes the logged-in account's own password (the current one is
/// needed). Every other session of the account ends, with its signaling
/// connections; this one goes on. Audited. Wrong current passwords count
/// against the account like failed logins.
#[utoipa::path(post, path = "/api/account/password", tag = "account",
    request_body = PasswordChange,
    responses((status = 204), (status = 401, body = Problem),
        (status = 422, description = "`weak_password`, or `wrong_current_password`", body = Problem),
        (status = 429, body = Problem), (status = 503, body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    auth: Auth,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let session = &auth.0;
    let new = NewPassword::parse(&req.new_password)?;
    let account = state
        .store
        .therapist(session.clinic, session.therapist)
        .await?;
    let attempt = state
        .login_limiter
        .begin(&account.email, client)
        .map_err(|refused| ApiError::Throttled {
            retry_after: refused.retry_after,
        })?;
    if !attempt.delay().is_zero() {
        tokio::time::sleep(attempt.delay()).await;
    }
    let hash = state
        .store
        .password_hash(session.clinic, session.therapist)
        .await?;
    if !check(&state, req.current_password, hash).await? {
        attempt.finish(Outcome::Failed);
        return Err(ApiError::Rule {
            code: "wrong_current_password",
            title: "The password was not changed".into(),
            items: vec![ProblemItem {
                code: "wrong_current_password".into(),
                da: "Den nuværende adgangskode er forkert.".into(),
                en: "The current password is wrong.".into(),
            }],
        });
    }
    attempt.finish(Outcome::Succeeded);
    let ended = state
        .store
        .change_password(
            session.clinic,
            session.therapist,
            &new.hash()?,
            &session.key,
            state.clock.now(),
        )
        .await?;
    state.signaling.sessions_ended(ended).await;
    tracing::info!(therapist = %session.therapist, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// The logged-in therapist, clinic and CSRF token.
#[utoipa::path(get, path = "/api/me", tag = "account",
    responses((status = 200, body = MeResponse), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, Auth(session): Auth) -> ApiResult<Json<MeResponse>> {
    Ok(Json(me_response(&state, &session).await?))
}
