//! The public side of a join link: what the patient's first screen shows.
//! No login; the token is the only key, and only its hash is stored.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use konsult_store::audit::Actor;
use konsult_store::consultations::LinkStatus;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join_info))
        .routes(routes!(ice_servers))
}

/// What a join link leads to.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinInfo {
    /// `valid`, `not_yet_open`, `expired`, `revoked` or `unknown`.
    pub status: &'static str,
    /// When the link opens (for `not_yet_open`).
    pub opens_at: Option<DateTime<Utc>>,
    /// The clinic's name.
    pub clinic_name: Option<String>,
    /// The therapist's name.
    pub therapist_name: Option<String>,
    /// Scheduled start.
    pub start: Option<DateTime<Utc>>,
    /// Planned length.
    pub length_minutes: Option<u32>,
}

/// What the patient's join page shows for a link.
#[utoipa::path(get, path = "/api/join/{token}", tag = "join",
    params(("token" = String, Path)),
    responses((status = 200, body = JoinInfo), (status = 400, body = Problem)))]
async fn join_info(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<JoinInfo>> {
    let now = state.clock.now();
    let empty = |status| JoinInfo {
        status,
        opens_at: None,
        clinic_name: None,
        therapist_name: None,
        start: None,
        length_minutes: None,
    };
    if token.len() > 128 {
        return Ok(Json(empty("unknown")));
    }
    let (status, clinic, consultation, opens_at) =
        match state.store.link_status(&token, now).await? {
            LinkStatus::Unknown => return Ok(Json(empty("unknown"))),
            LinkStatus::Expired => return Ok(Json(empty("expired"))),
            LinkStatus::Revoked => return Ok(Json(empty("revoked"))),
            LinkStatus::NotYetOpen {
                clinic,
                consultation,
                opens_at,
            } => ("not_yet_open", clinic, consultation, Some(opens_at)),
            LinkStatus::Valid {
                clinic,
                consultation,
                ..
            } => ("valid", clinic, consultation, None),
        };
    let c = state
        .store
        .consultation(clinic, Actor::PatientLink(consultation), consultation, now)
        .await?;
    let therapist = state.store.therapist(clinic, c.therapist).await?;
    let clinic = state.store.clinic(clinic).await?;
    Ok(Json(JoinInfo {
        status,
        opens_at,
        clinic_name: Some(clinic.name),
        therapist_name: Some(therapist.name),
        start: Some(c.scheduled_start),
        length_minutes: Some(c.length_minutes),
    }))
}

/// TURN servers with short-lived credentials for the patient's connection
/// check.
#[derive(Debug, Serialize, ToSchema)]
pub struct IceServersDto {
    /// RTCIceServer entries (`urls`, `username`, `credential`).
    #[schema(value_type = Vec<Object>)]
    pub ice_servers: Vec<konsult_protocol::IceServer>,
}

/// How long the connection check's TURN credentials live.
const CHECK_CREDENTIAL_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The relay to test reachability against before joining: only while the
/// link works, relay URLs only, with credentials that live five minutes.
#[utoipa::path(get, path = "/api/join/{token}/ice-servers", tag = "join",
    params(("token" = String, Path)),
    responses((status = 200, body = IceServersDto), (status = 404, body = Problem)))]
async fn ice_servers(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<IceServersDto>> {
    let now = state.clock.now();
    if token.len() > 128 {
        return Err(ApiError::NotFound("link"));
    }
    let LinkStatus::Valid { consultation, .. } = state.store.link_status(&token, now).await? else {
        return Err(ApiError::NotFound("link"));
    };
    let servers = state.signaling.turn().ice_servers(
        consultation.as_uuid(),
        konsult_protocol::CandidatePolicy::RelayOnly,
        now.into(),
        CHECK_CREDENTIAL_TTL,
    );
    Ok(Json(IceServersDto {
        ice_servers: servers,
    }))
}
