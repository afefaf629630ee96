//! Consultations: scheduling behind the eligibility gate, the day view,
//! join links and invites, patient-safety confirmation, closing, and
//! completion with the journal note and its billing decision.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{
    danish_day, day_bounds_utc, BillingDecision, ConsultationId, CourseId, JournalNote,
    JournalNoteDraft, PatientId, TherapistId,
};
use konsult_store::consultations::{
    Closure, Completion, Consultation, IssuedLink, NewConsultation, SafetyConfirmation,
    ScheduleOutcome,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem, ProblemItem};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::input;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_consultations, schedule))
        .routes(routes!(get_consultation))
        .routes(routes!(cancel))
        .routes(routes!(no_show))
        .routes(routes!(technical_failure))
        .routes(routes!(reissue_link, revoke_link))
        .routes(routes!(safety))
        .routes(routes!(complete))
        .routes(routes!(journal))
}

/// A consultation as the dashboard shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsultationDto {
    /// Id.
    pub id: uuid::Uuid,
    /// Patient.
    pub patient_id: uuid::Uuid,
    /// Patient's name (day view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_name: Option<String>,
    /// Course.
    pub course_id: uuid::Uuid,
    /// Speciale of the course.
    pub speciale: u16,
    /// Therapist.
    pub therapist_id: uuid::Uuid,
    /// Scheduled start.
    pub start: DateTime<Utc>,
    /// Planned length.
    pub length_minutes: u32,
    /// Lifecycle state (`scheduled`, `open`, `waiting`, `in_call`, `ended`, `completed`, …).
    pub state: String,
    /// Relay-only ICE.
    pub relay_only: bool,
    /// Actual start.
    pub started_at: Option<DateTime<Utc>>,
    /// When media first flowed both ways.
    pub two_way_at: Option<DateTime<Utc>>,
    /// When the call ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// When completed.
    pub completed_at: Option<DateTime<Utc>>,
}

impl ConsultationDto {
    fn new(c: Consultation, patient_name: Option<String>) -> Self {
        Self {
            id: c.id.as_uuid(),
            patient_id: c.patient.as_uuid(),
            patient_name,
            course_id: c.course.as_uuid(),
            speciale: c.speciale.code(),
            therapist_id: c.therapist.as_uuid(),
            start: c.scheduled_start,
            length_minutes: c.length_minutes,
            state: c.state.code().into(),
            relay_only: c.relay_only,
            started_at: c.started_at,
            two_way_at: c.two_way_at,
            ended_at: c.ended_at,
            completed_at: c.completed_at,
        }
    }
}

/// The day to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// A Danish calendar day, `YYYY-MM-DD`; default today.
    pub day: Option<NaiveDate>,
}

/// The clinic's consultations of one Danish calendar day.
#[utoipa::path(get, path = "/api/consultations", tag = "consultations", params(DayQuery),
    responses((status = 200, body = [ConsultationDto]), (status = 401, body = Problem)))]
async fn list_consultations(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> ApiResult<Json<Vec<ConsultationDto>>> {
    let now = state.clock.now();
    let (from, to) = day_bounds_utc(q.day.unwrap_or_else(|| danish_day(now)));
    let list = state
        .store
        .consultations_between(auth.0.clinic, auth.actor(), from, to, now)
        .await?;
    Ok(Json(
        list.into_iter()
            .map(|(c, name)| ConsultationDto::new(c, Some(name)))
            .collect(),
    ))
}

/// A consultation to schedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Patient.
    pub patient_id: uuid::Uuid,
    /// The patient's course it belongs to.
    pub course_id: uuid::Uuid,
    /// Scheduled start (RFC 3339).
    pub start: DateTime<Utc>,
    /// Planned length, 5–180 minutes.
    pub length_minutes: u32,
    /// Force relay-only ICE; default: the clinic's setting.
    pub relay_only: Option<bool>,
    /// The therapist who runs it; default: the caller.
    pub therapist_id: Option<uuid::Uuid>,
}

/// A scheduled consultation with its join link.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledDto {
    /// The consultation.
    pub consultation: ConsultationDto,
    /// The patient's join link (shown once; only its hash is stored).
    pub join_url: String,
    /// When the link starts to work.
    pub link_opens_at: DateTime<Utc>,
    /// When it stops working.
    pub link_closes_at: DateTime<Utc>,
    /// An iCalendar invite with the link, for e-mail.
    pub invite_ics: String,
}

fn join_url(state: &AppState, link: &IssuedLink) -> String {
    format!("{}/join/{}", state.public_url, link.token)
}

/// Schedules a consultation if the patient is eligible at its start;
/// otherwise 422 naming every failed criterion.
#[utoipa::path(post, path = "/api/consultations", tag = "consultations",
    request_body = ScheduleRequest,
    responses((status = 201, body = ScheduledDto), (status = 422, body = Problem), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn schedule(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> ApiResult<(StatusCode, Json<ScheduledDto>)> {
    let now = state.clock.now();
    if !(5..=180).contains(&req.length_minutes) {
        return Err(ApiError::BadRequest("length_minutes must be 5–180".into()));
    }
    if req.start < now - chrono::Duration::hours(1) {
        return Err(ApiError::BadRequest(
            "a consultation cannot be scheduled in the past".into(),
        ));
    }
    let clinic = state.store.clinic(auth.0.clinic).await?;
    let new = NewConsultation {
        patient: PatientId::from_uuid(req.patient_id),
        course: CourseId::from_uuid(req.course_id),
        therapist: req
            .therapist_id
            .map(TherapistId::from_uuid)
            .unwrap_or(auth.0.therapist),
        start: req.start,
        length_minutes: req.length_minutes,
        relay_only: req.relay_only.unwrap_or(clinic.relay_only_default),
    };
    match state
        .store
        .schedule(
            auth.0.clinic,
            auth.0.therapist,
            new,
            state.settings.link_window(),
            now,
        )
        .await?
    {
        ScheduleOutcome::NotEligible(failures) => Err(ApiError::Rule {
            code: "not_eligible",
            title: "The patient is not eligible for a video consultation".into(),
            items: failures
                .iter()
                .map(|f| ProblemItem {
                    code: f.code().into(),
                    da: f.danish().into(),
                    en: f.english().into(),
                })
                .collect(),
        }),
        ScheduleOutcome::Scheduled { consultation, link } => {
            let url = join_url(&state, &link);
            let ics = crate::ics::invite(
                consultation.id,
                &clinic.name,
                &url,
                consultation.scheduled_start,
                consultation.length_minutes,
                now,
            );
            tracing::info!(consultation = %consultation.id, "consultation scheduled");
            Ok((
                StatusCode::CREATED,
                Json(ScheduledDto {
                    consultation: ConsultationDto::new(consultation, None),
                    join_url: url,
                    link_opens_at: link.opens_at,
                    link_closes_at: link.closes_at,
                    invite_ics: ics,
                }),
            ))
        }
    }
}

/// One consultation.
#[utoipa::path(get, path = "/api/consultations/{id}", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ConsultationDto), (status = 404, body = Problem)))]
async fn get_consultation(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<ConsultationDto>> {
    let c = state
        .store
        .consultation(
            auth.0.clinic,
            auth.actor(),
            ConsultationId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    Ok(Json(ConsultationDto::new(c, None)))
}

async fn close(
    state: &AppState,
    auth: &Auth,
    id: uuid::Uuid,
    closure: Closure,
) -> ApiResult<Json<ConsultationDto>> {
    let c = state
        .store
        .close_without_call(
            auth.0.clinic,
            auth.0.therapist,
            ConsultationId::from_uuid(id),
            closure,
            state.clock.now(),
        )
        .await?;
    Ok(Json(ConsultationDto::new(c, None)))
}

/// Cancels a consultation that has not started (not billable).
#[utoipa::path(post, path = "/api/consultations/{id}/cancel", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ConsultationDto), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn cancel(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<ConsultationDto>> {
    close(&state, &auth, id, Closure::Cancel).await
}

/// Marks that the patient did not come (not billable).
#[utoipa::path(post, path = "/api/consultations/{id}/no-show", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ConsultationDto), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn no_show(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<ConsultationDto>> {
    close(&state, &auth, id, Closure::NoShow).await
}

/// Marks that the call failed technically (not billable).
#[utoipa::path(post, path = "/api/consultations/{id}/technical-failure", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ConsultationDto), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn technical_failure(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<ConsultationDto>> {
    close(&state, &auth, id, Closure::TechnicalFailure).await
}

/// A new join link.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkDto {
    /// The join URL.
    pub join_url: String,
    /// Opens.
    pub link_opens_at: DateTime<Utc>,
    /// Closes.
    pub link_closes_at: DateTime<Utc>,
}

/// Revokes the consultation's links and issues a new one.
#[utoipa::path(post, path = "/api/consultations/{id}/link", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = LinkDto), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn reissue_link(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<LinkDto>> {
    let link = state
        .store
        .reissue_link(
            auth.0.clinic,
            auth.0.therapist,
            ConsultationId::from_uuid(id),
            state.settings.link_window(),
            state.clock.now(),
        )
        .await?;
    Ok(Json(LinkDto {
        join_url: join_url(&state, &link),
        link_opens_at: link.opens_at,
        link_closes_at: link.closes_at,
    }))
}

/// Revokes every join link of the consultation (e.g. sent to the wrong
/// address); a new one can be issued with `POST …/link`.
#[utoipa::path(delete, path = "/api/consultations/{id}/link", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
async fn revoke_link(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    state
        .store
        .revoke_links(
            auth.0.clinic,
            auth.0.therapist,
            ConsultationId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The patient-safety confirmation at the start of the call.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SafetyRequest {
    /// Where the patient is (e.g. "hjemme, stuen").
    pub patient_location: String,
    /// A phone number to call if the video drops.
    pub callback_phone: String,
}

/// Records where the patient is and a number to call if the line drops.
#[utoipa::path(post, path = "/api/consultations/{id}/safety", tag = "consultations",
    params(("id" = uuid::Uuid, Path)), request_body = SafetyRequest,
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn safety(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<SafetyRequest>,
) -> ApiResult<StatusCode> {
    let confirmation = SafetyConfirmation {
        patient_location: input::name(&req.patient_location, "patient_location")?,
        callback_phone: input::phone(&req.callback_phone)?,
    };
    state
        .store
        .record_safety(
            auth.0.clinic,
            auth.0.therapist,
            ConsultationId::from_uuid(id),
            &confirmation,
            state.clock.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Completion: the journal note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The journal note in the structure of the service description.
    #[schema(value_type = Object)]
    pub journal: JournalNoteDraft,
}

/// A money amount, in øre and Danish text.
#[derive(Debug, Serialize, ToSchema)]
pub struct Amount {
    /// Øre.
    pub ore: i64,
    /// Danish text, e.g. "307,95 kr".
    pub text: String,
}

impl From<konsult_domain::Money> for Amount {
    fn from(m: konsult_domain::Money) -> Self {
        Self {
            ore: m.ore(),
            text: m.to_string(),
        }
    }
}

/// A billing line as shown after completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineDto {
    /// Line id.
    pub id: Option<uuid::Uuid>,
    /// Service number, e.g. "0131".
    pub service_number: String,
    /// Speciale.
    pub speciale: u16,
    /// Fee.
    pub fee: Amount,
    /// Region's share.
    pub region_share: Amount,
    /// Patient's share.
    pub patient_share: Amount,
    /// Danish calendar day.
    pub calendar_day: NaiveDate,
}

/// A reason with a stable code and messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonDto {
    /// Stable code.
    pub code: String,
    /// Danish.
    pub da: String,
    /// English.
    pub en: String,
}

/// The billing result of a completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionDto {
    /// Whether a billing line was made.
    pub billable: bool,
    /// The line, when billable.
    pub line: Option<LineDto>,
    /// Why not, when not billable.
    pub reason: Option<ReasonDto>,
    /// True when the consultation had been completed before (first result returned).
    pub repeated: bool,
}

impl From<Completion> for CompletionDto {
    fn from(c: Completion) -> Self {
        match c.decision {
            BillingDecision::Billable(line) => Self {
                billable: true,
                line: Some(LineDto {
                    id: c.line_id.map(|l| l.as_uuid()),
                    service_number: line.service_number.to_string(),
                    speciale: line.speciale.code(),
                    fee: line.fee.into(),
                    region_share: line.shares.region.into(),
                    patient_share: line.shares.patient.into(),
                    calendar_day: line.calendar_day,
                }),
                reason: None,
                repeated: c.repeated,
            },
            BillingDecision::NotBillable(reason) => Self {
                billable: false,
                line: None,
                reason: Some(ReasonDto {
                    code: reason.code().into(),
                    da: reason.danish(),
                    en: reason.english(),
                }),
                repeated: c.repeated,
            },
        }
    }
}

/// Completes an ended consultation with its journal note; answers with the
/// billing decision (fee and shares, or why it is not billable). Completing
/// again returns the first result.
#[utoipa::path(post, path = "/api/consultations/{id}/complete", tag = "consultations",
    params(("id" = uuid::Uuid, Path)), request_body = CompleteRequest,
    responses((status = 200, body = CompletionDto), (status = 400, body = Problem), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn complete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> ApiResult<Json<CompletionDto>> {
    let note = JournalNote::parse(req.journal).map_err(|e| ApiError::Rule {
        code: "journal_note_required",
        title: "A journal note is required".into(),
        items: vec![ProblemItem {
            code: "journal_note_empty".into(),
            da: "Skriv mindst ét afsnit i journalnotatet.".into(),
            en: e.to_string(),
        }],
    })?;
    let id = ConsultationId::from_uuid(id);
    let completion = state
        .store
        .complete(
            auth.0.clinic,
            auth.0.therapist,
            id,
            &note,
            state.clock.now(),
        )
        .await?;
    tracing::info!(consultation = %id, billable = matches!(completion.decision, BillingDecision::Billable(_)), "consultation completed");
    Ok(Json(completion.into()))
}

/// The journal note of a completed consultation.
#[utoipa::path(get, path = "/api/consultations/{id}/journal", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
async fn journal(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<JournalNoteDraft>> {
    let note = state
        .store
        .journal(
            auth.0.clinic,
            auth.actor(),
            ConsultationId::from_uuid(id),
            state.clock.now(),
        )
        .await?
        .ok_or(ApiError::NotFound("journal note"))?;
    Ok(Json(note.into()))
}
