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

use crate::auth::{Auth, Clinician};
use crate::error::{ApiError, ApiResult, OnConflict, Problem, ProblemItem};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::input;
use crate::state::AppState;

/// The Danish text of a consultation whose state no longer allows the
/// step (it was completed, cancelled or admitted in the meantime; the
/// English names the state).
const CONSULTATION_STATE_DA: &str = "Konsultationen er ændret i mellemtiden (den er måske \
     allerede afsluttet, aflyst eller i gang), så det kan ikke lade sig gøre nu. Intet er \
     ændret. Opdater siden for at se, hvordan den står.";

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_consultations, schedule))
        .routes(routes!(day_activity))
        .routes(routes!(day_activity_events))
        .routes(routes!(get_consultation))
        .routes(routes!(cancel))
        .routes(routes!(no_show))
        .routes(routes!(technical_failure))
        .routes(routes!(current_link, reissue_link, revoke_link))
        .routes(routes!(safety))
        .routes(routes!(complete))
        .routes(routes!(decide_again))
        .routes(routes!(decisions))
        .routes(routes!(journal))
        .routes(routes!(patient_history))
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
    /// Therapist's name (day view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub therapist_name: Option<String>,
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
    /// What the evidence of two-way media rests on: `client_reported` or
    /// `relay_observed` (the strongest so far), if any.
    pub two_way_evidence: Option<String>,
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
            therapist_name: None,
            start: c.scheduled_start,
            length_minutes: c.length_minutes,
            state: c.state.code().into(),
            relay_only: c.relay_only,
            started_at: c.started_at,
            two_way_at: c.two_way_at,
            two_way_evidence: c.two_way_evidence.map(|e| e.code().to_owned()),
            ended_at: c.ended_at,
            completed_at: c.completed_at,
        }
    }
}

/// The day to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// A Danish calendar day, `YYYY-MM-DD`; default today.
    pub day: Option<NaiveDate>,
}

/// One consultation's state, without patient data.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityItem {
    /// Consultation.
    pub id: uuid::Uuid,
    /// Its therapist.
    pub therapist_id: uuid::Uuid,
    /// Lifecycle state.
    pub state: String,
}

/// What changed on a day, cheaply: the dashboard polls this every few
/// seconds and reloads the full list (which is audited) only when it
/// changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayActivity {
    /// Patients waiting now, clinic-wide.
    pub waiting: usize,
    /// Patients waiting for the caller's own consultations.
    pub waiting_mine: usize,
    /// Each consultation of the day with its state.
    pub consultations: Vec<ActivityItem>,
}

/// The states of a day's consultations and who is waiting, without patient
/// data (not audited).
#[utoipa::path(get, path = "/api/consultations/activity", tag = "consultations", params(DayQuery),
    responses((status = 200, body = DayActivity), (status = 401, body = Problem)))]
async fn day_activity(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> ApiResult<Json<DayActivity>> {
    Ok(Json(activity_of(&state, &auth.0, q.day).await?))
}

/// The day's activity as `session` sees it (today's Danish day when `day`
/// is `None`).
async fn activity_of(
    state: &AppState,
    session: &konsult_store::therapists::Session,
    day: Option<NaiveDate>,
) -> ApiResult<DayActivity> {
    let now = state.clock.now();
    let (from, to) = day_bounds_utc(day.unwrap_or_else(|| danish_day(now)));
    let list = state
        .store
        .consultation_states_between(session.clinic, from, to)
        .await?;
    let waiting = |mine: bool| {
        list.iter()
            .filter(|(_, t, s)| {
                *s == konsult_domain::ConsultationState::Waiting
                    && (!mine || *t == session.therapist)
            })
            .count()
    };
    Ok(DayActivity {
        waiting: waiting(false),
        waiting_mine: waiting(true),
        consultations: list
            .iter()
            .map(|(id, therapist, s)| ActivityItem {
                id: id.as_uuid(),
                therapist_id: therapist.as_uuid(),
                state: s.code().into(),
            })
            .collect(),
    })
}

/// How often a pushed activity stream re-reads the day and the session
/// without a change notice: changes made by another node, a session that
/// was logged out or expired, and the Danish day turning.
const ACTIVITY_RECHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// [`day_activity`], pushed as server-sent events: an `activity` event with
/// the same JSON at once and again within moments of every change (a
/// patient arrives, is admitted, a consultation is booked or closed). A
/// comment line every 15 s keeps proxies from closing the stream; the
/// stream ends when the session does or the server shuts down, and the
/// browser's `EventSource` reconnects by itself.
#[utoipa::path(get, path = "/api/consultations/activity/events", tag = "consultations", params(DayQuery),
    responses(
        (status = 200, description = "`text/event-stream`: `activity` events, each a DayActivity",
            content_type = "text/event-stream", body = String),
        (status = 401, body = Problem)))]
async fn day_activity_events(
    State(state): State<AppState>,
    auth: Auth,
    headers: axum::http::HeaderMap,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> ApiResult<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;

    struct Push {
        state: AppState,
        session: konsult_store::therapists::Session,
        token: String,
        day: Option<NaiveDate>,
        changes: tokio::sync::broadcast::Receiver<konsult_domain::ClinicId>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        last: Option<String>,
        started: bool,
    }

    let token = crate::auth::session_token_in(&headers, &state).ok_or(ApiError::Unauthorized)?;
    let push = Push {
        changes: state.store.subscribe_changes(),
        shutdown: state.signaling.shutdown_signal(),
        state,
        session: auth.0,
        token,
        day: q.day,
        last: None,
        started: false,
    };
    let stream = futures_util::stream::unfold(push, |mut p| async move {
        loop {
            if p.started {
                tokio::select! {
                    changed = p.changes.recv() => match changed {
                        Ok(clinic) if clinic != p.session.clinic => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    },
                    () = async {
                        let _ = p.shutdown.wait_for(|closing| *closing).await;
                    } => return None,
                    () = tokio::time::sleep(ACTIVITY_RECHECK) => {
                        let now = p.state.clock.now();
                        match p.state.store.session(&p.token, now).await {
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => return None,
                        }
                    }
                }
            }
            p.started = true;
            let Ok(activity) = activity_of(&p.state, &p.session, p.day).await else {
                // The database is away: end, and let the browser come back.
                return None;
            };
            let json = serde_json::to_string(&activity).expect("activity serialises");
            if p.last.as_deref() == Some(json.as_str()) {
                continue;
            }
            p.last = Some(json.clone());
            return Some((Ok(Event::default().event("activity").data(json)), p));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(ACTIVITY_RECHECK)))
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
    // Colleagues by name, for a day view of the whole clinic.
    let names = therapist_names(&state, auth.0.clinic).await?;
    Ok(Json(
        list.into_iter()
            .map(|(c, name)| {
                let therapist_name = names.get(&c.therapist).cloned();
                ConsultationDto {
                    therapist_name,
                    ..ConsultationDto::new(c, Some(name))
                }
            })
            .collect(),
    ))
}

/// The clinic's accounts by name, to name a consultation's therapist.
async fn therapist_names(
    state: &AppState,
    clinic: konsult_domain::ClinicId,
) -> ApiResult<std::collections::HashMap<TherapistId, String>> {
    Ok(state
        .store
        .therapists(clinic)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
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
    /// Schedule it even if the patient has another consultation that is not
    /// over at an overlapping time; default false: such a request is
    /// refused with 409 `overlapping_consultation`.
    pub allow_overlap: Option<bool>,
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
    /// What the patient pays for the consultation.
    pub payment: crate::routes::join::PaymentDto,
    /// The invitation to send the patient, in Danish: with whom, when,
    /// the own payment, and the link.
    pub invitation_da: String,
    /// The same invitation in English.
    pub invitation_en: String,
}

fn join_url(state: &AppState, link: &IssuedLink) -> String {
    format!("{}/join/{}", state.public_url, link.token)
}

/// Schedules a consultation if the patient is eligible at its start;
/// otherwise 422 naming every failed criterion.
#[utoipa::path(post, path = "/api/consultations", tag = "consultations",
    request_body = ScheduleRequest,
    responses((status = 201, body = ScheduledDto), (status = 422, body = Problem), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "overlapping_consultation: the patient has another consultation then (send allow_overlap to schedule anyway); patient_inactive; speciale_not_offered", body = Problem)))]
async fn schedule(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> ApiResult<(StatusCode, Json<ScheduledDto>)> {
    let now = state.clock.now();
    if !(5..=180).contains(&req.length_minutes) {
        return Err(ApiError::bad_request(
            "invalid_length",
            "En konsultation skal vare mellem 5 og 180 minutter.",
            "length_minutes must be 5–180",
        ));
    }
    if req.start < now - chrono::Duration::hours(1) {
        return Err(ApiError::bad_request(
            "scheduled_in_past",
            "En konsultation kan ikke planlægges i fortiden.",
            "a consultation cannot be scheduled in the past",
        ));
    }
    let clinic = state.store.clinic(auth.0.clinic).await?;
    // Whoever books, a clinician runs it: a secretary names one.
    let therapist = match req.therapist_id {
        Some(id) => TherapistId::from_uuid(id),
        None if auth.0.role.is_clinical() => auth.0.therapist,
        None => {
            return Err(ApiError::bad_request(
                "therapist_required",
                "Vælg den behandler, der skal holde konsultationen.",
                "choose the therapist who runs the consultation (therapist_id)",
            ))
        }
    };
    if !state
        .store
        .therapist(auth.0.clinic, therapist)
        .await?
        .role
        .is_clinical()
    {
        return Err(ApiError::bad_request(
            "not_a_clinician",
            "En sekretær kan ikke holde en videokonsultation. Vælg en behandler.",
            "a secretary cannot run a video consultation; choose a therapist",
        ));
    }
    let new = NewConsultation {
        patient: PatientId::from_uuid(req.patient_id),
        course: CourseId::from_uuid(req.course_id),
        therapist,
        start: req.start,
        length_minutes: req.length_minutes,
        relay_only: req.relay_only.unwrap_or(clinic.relay_only_default),
        allow_overlap: req.allow_overlap.unwrap_or(false),
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
            let payment =
                crate::routes::join::payment_for(&state, auth.0.clinic, &consultation).await?;
            let invitation = Invitation::new(&state, &clinic.name, &consultation, &link, &payment);
            tracing::info!(consultation = %consultation.id, "consultation scheduled");
            Ok((
                StatusCode::CREATED,
                Json(ScheduledDto {
                    consultation: ConsultationDto::new(consultation, None),
                    join_url: invitation.join_url,
                    link_opens_at: invitation.link_opens_at,
                    link_closes_at: invitation.link_closes_at,
                    invite_ics: invitation.invite_ics,
                    payment,
                    invitation_da: invitation.invitation_da,
                    invitation_en: invitation.invitation_en,
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
    let id = ConsultationId::from_uuid(id);
    let c = state
        .store
        .close_without_call(
            auth.0.clinic,
            auth.0.therapist,
            id,
            closure,
            state.clock.now(),
        )
        .await
        .on_conflict("consultation_state", CONSULTATION_STATE_DA)?;
    // Committed: now everyone still connected hears it, and relayed media
    // stops.
    state.signaling.consultation_closed(id).await;
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

/// A join link with what to send the patient: the same as scheduling
/// gives, for a link that already exists.
#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    /// The join URL.
    pub join_url: String,
    /// When the link starts to work.
    pub link_opens_at: DateTime<Utc>,
    /// When it stops working.
    pub link_closes_at: DateTime<Utc>,
    /// An iCalendar invite with the link, for e-mail.
    pub invite_ics: String,
    /// The invitation to send the patient, in Danish.
    pub invitation_da: String,
    /// The same invitation in English.
    pub invitation_en: String,
}

impl Invitation {
    fn new(
        state: &AppState,
        clinic_name: &str,
        consultation: &Consultation,
        link: &IssuedLink,
        payment: &crate::routes::join::PaymentDto,
    ) -> Self {
        let url = join_url(state, link);
        let rehearsal = format!("{}{}", state.public_url, crate::web::REHEARSAL_PATH);
        let links = crate::ics::PatientLinks {
            join: &url,
            rehearsal: &rehearsal,
        };
        let invite_ics = crate::ics::invite(
            consultation.id,
            clinic_name,
            links,
            consultation.scheduled_start,
            consultation.length_minutes,
            payment,
            state.clock.now(),
        );
        let (invitation_da, invitation_en) =
            crate::ics::invitation_text(clinic_name, links, consultation.scheduled_start, payment);
        Self {
            join_url: url,
            link_opens_at: link.opens_at,
            link_closes_at: link.closes_at,
            invite_ics,
            invitation_da,
            invitation_en,
        }
    }
}

/// The consultation's join link that works now or will, with the
/// invitation to send again; the link stays as it is (audited as
/// `consultation.link.read`). 404 when it has none: closed, revoked, or
/// issued before links were kept (then `POST …/link` makes a new one).
#[utoipa::path(get, path = "/api/consultations/{id}/link", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = Invitation), (status = 404, body = Problem)))]
async fn current_link(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<Invitation>> {
    let id = ConsultationId::from_uuid(id);
    let now = state.clock.now();
    let (consultation, link) = state
        .store
        .current_link(auth.0.clinic, auth.actor(), id, now)
        .await?
        .ok_or(ApiError::NotFound("join link"))?;
    let payment = crate::routes::join::payment_for(&state, auth.0.clinic, &consultation).await?;
    let clinic = state.store.clinic(auth.0.clinic).await?;
    Ok(Json(Invitation::new(
        &state,
        &clinic.name,
        &consultation,
        &link,
        &payment,
    )))
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
    let id = ConsultationId::from_uuid(id);
    let (link, revoked) = state
        .store
        .reissue_link(
            auth.0.clinic,
            auth.0.therapist,
            id,
            state.settings.link_window(),
            state.clock.now(),
        )
        .await
        .on_conflict("consultation_state", CONSULTATION_STATE_DA)?;
    // Whoever holds an old link is turned away at once.
    state.signaling.links_revoked(id, &revoked).await;
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
    let id = ConsultationId::from_uuid(id);
    let revoked = state
        .store
        .revoke_links(auth.0.clinic, auth.0.therapist, id, state.clock.now())
        .await?;
    state.signaling.links_revoked(id, &revoked).await;
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
    auth: Clinician,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<SafetyRequest>,
) -> ApiResult<StatusCode> {
    let confirmation = SafetyConfirmation {
        patient_location: input::name(
            &req.patient_location,
            "patient_location",
            "Patientens opholdssted",
        )?,
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
        .await
        .on_conflict("consultation_state", CONSULTATION_STATE_DA)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Completion: the journal note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The journal note in the structure of the service description.
    #[schema(value_type = crate::routes::openapi::JournalNoteSchema)]
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
    /// How the fee was derived (level, regulation steps, missing steps), e.g.
    /// `30795@2022-10-01;2023-04-01+1.06%;2024-04-01+2.77%`.
    pub fee_reference: String,
    /// A regulation step up to the day was not recorded: the fee is the best known one and is
    /// re-priced when the step is recorded.
    pub fee_unconfirmed: bool,
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

/// A stored decision as a completion's result (never `repeated`).
impl From<konsult_store::billing::DecisionRecord> for CompletionDto {
    fn from(r: konsult_store::billing::DecisionRecord) -> Self {
        Completion {
            decision: r.decision,
            line_id: r.line_id,
            repeated: false,
        }
        .into()
    }
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
                    fee_reference: line.fee_reference,
                    fee_unconfirmed: line.fee_unconfirmed,
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
/// again answers the decision in force (`repeated: true`), or a new decision
/// when something changed since (e.g. its line was reversed).
#[utoipa::path(post, path = "/api/consultations/{id}/complete", tag = "consultations",
    params(("id" = uuid::Uuid, Path)), request_body = CompleteRequest,
    responses((status = 200, body = CompletionDto), (status = 400, body = Problem), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn complete(
    State(state): State<AppState>,
    auth: Clinician,
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
        .await
        .on_conflict("consultation_state", CONSULTATION_STATE_DA)?;
    if !completion.repeated {
        state.signaling.metrics().billing_decided(
            matches!(completion.decision, BillingDecision::Billable(_)),
            completion.line_id.is_some(),
        );
    }
    // A call still open ended with the completion: end its connections.
    state.signaling.consultation_closed(id).await;
    tracing::info!(consultation = %id, billable = matches!(completion.decision, BillingDecision::Billable(_)), "consultation completed");
    Ok(Json(completion.into()))
}

/// Decides a closed consultation's billing again with today's ledger and fee
/// schedule: after its line was reversed, or when the fee table was fixed.
/// Answers the decision in force (`repeated: true`) when nothing changed.
#[utoipa::path(post, path = "/api/consultations/{id}/decision", tag = "billing",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = CompletionDto), (status = 409, body = Problem), (status = 404, body = Problem)))]
async fn decide_again(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
) -> ApiResult<Json<CompletionDto>> {
    let decided = state
        .store
        .redecide(
            auth.0.clinic,
            auth.0.therapist,
            ConsultationId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    if decided.changed {
        state.signaling.metrics().billing_decided(
            matches!(decided.decision, BillingDecision::Billable(_)),
            decided.line_id.is_some(),
        );
    }
    Ok(Json(
        Completion {
            decision: decided.decision,
            line_id: decided.line_id,
            repeated: !decided.changed,
        }
        .into(),
    ))
}

/// One decision of a consultation's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionRecordDto {
    /// 1 for the first decision, one more for each later one.
    pub generation: i64,
    /// When.
    pub decided_at: DateTime<Utc>,
    /// Why: `completed`, `completed_again`, `decided_again`, `reversed`,
    /// `fee_schedule_changed`, `repriced`, `in_clinic_visit`, `closed`, `patient_merged`.
    pub cause: String,
    /// The decision.
    pub result: CompletionDto,
}

/// Every billing decision the consultation had, oldest first (the last is in force).
#[utoipa::path(get, path = "/api/consultations/{id}/decisions", tag = "billing",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = [DecisionRecordDto]), (status = 404, body = Problem)))]
async fn decisions(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<DecisionRecordDto>>> {
    let id = ConsultationId::from_uuid(id);
    // 404 for another clinic's consultation, like every other read.
    state
        .store
        .consultation(auth.0.clinic, auth.actor(), id, state.clock.now())
        .await?;
    let history = state.store.decision_history(auth.0.clinic, id).await?;
    Ok(Json(
        history
            .into_iter()
            .map(|r| DecisionRecordDto {
                generation: r.generation,
                decided_at: r.decided_at,
                cause: r.cause.clone(),
                result: r.into(),
            })
            .collect(),
    ))
}

/// One consultation in a patient's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    /// The consultation (without the patient's name).
    pub consultation: ConsultationDto,
    /// The billing decision in force, once it has one.
    pub billing: Option<CompletionDto>,
    /// Whether it has a journal note (read it with `GET …/journal`).
    pub has_journal: bool,
}

/// One patient's video consultations, past and upcoming, newest first, each
/// with its state, therapist, billing decision and whether it has a journal
/// note (audited as `patient.consultations`).
#[utoipa::path(get, path = "/api/patients/{id}/consultations", tag = "consultations",
    params(("id" = uuid::Uuid, Path, description = "The patient")),
    responses((status = 200, body = [HistoryItem]), (status = 404, body = Problem)))]
async fn patient_history(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<HistoryItem>>> {
    let list = state
        .store
        .patient_consultations(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    let names = therapist_names(&state, auth.0.clinic).await?;
    let mut items = Vec::with_capacity(list.len());
    for (c, has_journal) in list {
        let billing = state
            .store
            .decision_history(auth.0.clinic, c.id)
            .await?
            .pop()
            .map(CompletionDto::from);
        let therapist_name = names.get(&c.therapist).cloned();
        items.push(HistoryItem {
            consultation: ConsultationDto {
                therapist_name,
                ..ConsultationDto::new(c, None)
            },
            billing,
            has_journal,
        });
    }
    crate::alerts::after_patient_opened(&state, &auth.0).await;
    Ok(Json(items))
}

/// The journal note of a completed consultation.
#[utoipa::path(get, path = "/api/consultations/{id}/journal", tag = "consultations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = crate::routes::openapi::JournalNoteSchema), (status = 404, body = Problem)))]
async fn journal(
    State(state): State<AppState>,
    auth: Clinician,
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
    crate::alerts::after_patient_opened(&state, &auth.0).await;
    Ok(Json(note.into()))
}
