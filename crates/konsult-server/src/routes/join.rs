//! The public side of a join link: what the patient's first screen shows.
//! No login; the token is the only key, and only its hash is stored.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use konsult_domain::{
    danish_day, ClinicId, ConsultationState, PatientPayment, ServiceKind, Speciale,
};
use konsult_store::consultations::{Consultation, LinkStatus};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::account::ClientAddress;
use crate::state::AppState;

/// How fast one client may use the join-link endpoints: a person opens the
/// page a few times; a script that tries links or reloads in a loop gets 429.
pub const JOIN_RATE: crate::rate_limit::Rate = crate::rate_limit::Rate {
    burst: 20,
    per_minute: 30,
};

/// A patient's opening of the link is audited at most once in this window.
const OPEN_AUDIT_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

pub(crate) fn limit(state: &AppState, client: &ClientAddress) -> ApiResult<()> {
    state
        .join_limiter
        .check(client.0)
        .map_err(|retry_after| ApiError::Throttled { retry_after })
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join_info))
        .routes(routes!(ice_servers))
}

/// What a join link leads to.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinInfo {
    /// `valid`, `not_yet_open`, `expired`, `ended` (the consultation's call
    /// is over), `revoked` or `unknown`.
    pub status: &'static str,
    /// When the link opens (for `not_yet_open`).
    pub opens_at: Option<DateTime<Utc>>,
    /// The clinic's name.
    pub clinic_name: Option<String>,
    /// The clinic's phone number for patients, when it has set one (also
    /// for links that no longer work: whom to call).
    pub clinic_phone: Option<String>,
    /// The therapist's name.
    pub therapist_name: Option<String>,
    /// Scheduled start.
    pub start: Option<DateTime<Utc>>,
    /// Planned length.
    pub length_minutes: Option<u32>,
    /// What the patient pays for this consultation (for `valid` and `not_yet_open`).
    pub payment: Option<PaymentDto>,
    /// For `expired`: how the clinic closed the consultation without a call
    /// (`cancelled`, `no_show`, `technical_failure`), if it did.
    pub closed_as: Option<&'static str>,
    /// For `valid` and `not_yet_open`: the consultation's id, for the
    /// WebSocket's optional `room` query (`/ws?room=…`), on which a
    /// cluster's load balancer sends both participants of a consultation to
    /// the same node (docs/protocol.md, section 1).
    pub room: Option<String>,
}

impl JoinInfo {
    /// A link's status with nothing else known.
    fn empty(status: &'static str) -> JoinInfo {
        JoinInfo {
            status,
            opens_at: None,
            clinic_name: None,
            clinic_phone: None,
            therapist_name: None,
            start: None,
            length_minutes: None,
            payment: None,
            closed_as: None,
            room: None,
        }
    }
}

/// The patient's own payment, as the join page, the invitation and the
/// calendar invite state it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentDto {
    /// `own_payment` (speciale 51), `free` (speciale 62) or `unknown` (no
    /// fee applies on the day; the clinic tells the patient).
    pub kind: &'static str,
    /// The speciale of the consultation's course: 51 or 62.
    pub speciale: u16,
    /// The patient's payment in øre (0 for `free`, absent for `unknown`).
    pub amount_ore: Option<i64>,
    /// The whole fee in øre (absent for `free` and `unknown`).
    pub fee_ore: Option<i64>,
    /// The fee awaits a regulation step: the amount may still change a little.
    pub unconfirmed: bool,
    /// One sentence for the patient, in Danish.
    pub da: String,
    /// The same sentence in English.
    pub en: String,
}

impl PaymentDto {
    /// The payment for a consultation of `speciale`.
    pub(crate) fn new(speciale: Speciale, payment: PatientPayment) -> PaymentDto {
        let (kind, amount_ore, fee_ore, unconfirmed) = match payment {
            PatientPayment::Free => ("free", Some(0), None, false),
            PatientPayment::OwnPayment {
                amount,
                fee,
                unconfirmed,
            } => (
                "own_payment",
                Some(amount.ore()),
                Some(fee.ore()),
                unconfirmed,
            ),
            PatientPayment::Unknown => ("unknown", None, None, false),
        };
        PaymentDto {
            kind,
            speciale: speciale.code(),
            amount_ore,
            fee_ore,
            unconfirmed,
            da: payment.danish(),
            en: payment.english(),
        }
    }
}

/// What the patient of consultation `c` pays, by the clinic's fee schedule
/// on the consultation's Danish day.
pub(crate) async fn payment_for(
    state: &AppState,
    clinic: ClinicId,
    c: &Consultation,
) -> ApiResult<PaymentDto> {
    let schedule = state.store.fee_schedule(clinic).await?;
    let payment = PatientPayment::on(
        &schedule,
        ServiceKind::IndividualVideo,
        c.speciale,
        danish_day(c.scheduled_start),
    );
    Ok(PaymentDto::new(c.speciale, payment))
}

/// What the patient's join page shows for a link.
#[utoipa::path(get, path = "/api/join/{token}", tag = "join",
    params(("token" = String, Path)),
    responses((status = 200, body = JoinInfo), (status = 400, body = Problem), (status = 429, body = Problem)))]
async fn join_info(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(token): Path<String>,
) -> ApiResult<Json<JoinInfo>> {
    limit(&state, &client)?;
    let now = state.clock.now();
    let empty = JoinInfo::empty;
    if token.len() > 128 {
        return Ok(Json(empty("unknown")));
    }
    let (status, clinic, consultation, opens_at) =
        match state.store.link_status(&token, now).await? {
            LinkStatus::Unknown => return Ok(Json(empty("unknown"))),
            LinkStatus::Expired => return dead_link(&state, &token, "expired").await,
            LinkStatus::Ended => return dead_link(&state, &token, "ended").await,
            LinkStatus::Revoked => return dead_link(&state, &token, "revoked").await,
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
        .consultation_for_link(clinic, consultation, OPEN_AUDIT_WINDOW, now)
        .await?;
    let therapist = state.store.therapist(clinic, c.therapist).await?;
    let payment = payment_for(&state, clinic, &c).await?;
    let clinic = state.store.clinic(clinic).await?;
    Ok(Json(JoinInfo {
        status,
        opens_at,
        clinic_name: Some(clinic.name),
        clinic_phone: clinic.phone,
        therapist_name: Some(therapist.name),
        start: Some(c.scheduled_start),
        length_minutes: Some(c.length_minutes),
        payment: Some(payment),
        closed_as: None,
        room: Some(consultation.to_string()),
    }))
}

/// A link that no longer works still names its clinic (whom to call) and,
/// when the clinic closed the consultation without a call, how.
async fn dead_link(
    state: &AppState,
    token: &str,
    status: &'static str,
) -> ApiResult<Json<JoinInfo>> {
    let mut info = JoinInfo::empty(status);
    if let Some((clinic, consultation)) = state.store.link_owner(token).await? {
        let clinic = state.store.clinic(clinic).await?;
        info.clinic_name = Some(clinic.name);
        info.clinic_phone = clinic.phone;
        if status == "expired" {
            info.closed_as = match consultation {
                ConsultationState::Cancelled
                | ConsultationState::NoShow
                | ConsultationState::TechnicalFailure => Some(consultation.code()),
                _ => None,
            };
        }
    }
    Ok(Json(info))
}

/// TURN servers with short-lived credentials for the patient's connection
/// check.
#[derive(Debug, Serialize, ToSchema)]
pub struct IceServersDto {
    /// RTCIceServer entries (`urls`, `username`, `credential`).
    #[schema(value_type = Vec<crate::routes::openapi::IceServerSchema>)]
    pub ice_servers: Vec<konsult_protocol::IceServer>,
}

/// How long the connection check's TURN credentials live.
const CHECK_CREDENTIAL_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The relay to test reachability against before joining: only while the
/// link works, relay URLs only, with credentials that live five minutes.
#[utoipa::path(get, path = "/api/join/{token}/ice-servers", tag = "join",
    params(("token" = String, Path)),
    responses((status = 200, body = IceServersDto), (status = 404, body = Problem), (status = 429, body = Problem)))]
async fn ice_servers(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(token): Path<String>,
) -> ApiResult<Json<IceServersDto>> {
    limit(&state, &client)?;
    let now = state.clock.now();
    if token.len() > 128 {
        return Err(ApiError::NotFound("link"));
    }
    let LinkStatus::Valid {
        consultation, link, ..
    } = state.store.link_status(&token, now).await?
    else {
        return Err(ApiError::NotFound("link"));
    };
    let servers = state.signaling.turn().ice_servers(
        consultation.as_uuid(),
        crate::relay::Participant::Patient { link: &link },
        konsult_protocol::CandidatePolicy::RelayOnly,
        now.into(),
        CHECK_CREDENTIAL_TTL,
    );
    Ok(Json(IceServersDto {
        ice_servers: servers,
    }))
}
