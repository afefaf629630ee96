//! The clinical facts behind eligibility: in-clinic visits, courses and
//! assessments, plus the catalogue the forms offer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{
    danish_day, AssessmentCriteria, AssessmentId, Course, CourseId, DiagnosisGroup, PatientId,
    Speciale, StructuredCourse,
};
use konsult_store::clinical::CourseRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Auth, Clinician};
use crate::error::{ApiError, ApiResult, OnConflict, Problem, ProblemItem};
use crate::extract::{ApiJson, IdPath};
use crate::routes::account::unknown_speciale;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(catalogue))
        .routes(routes!(list_visits, create_visit))
        .routes(routes!(list_courses, create_course))
        .routes(routes!(list_assessments, create_assessment))
        .routes(routes!(revoke_assessment))
}

/// A named code with Danish and English names.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogueItem {
    /// Stable code.
    pub code: String,
    /// Danish name.
    pub da: String,
    /// English name.
    pub en: String,
    /// The speciale it belongs to, where it has one.
    pub speciale: Option<u16>,
    /// From when it can be used, where it has such a date.
    pub available_from: Option<NaiveDate>,
}

/// What the forms offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Catalogue {
    /// Specialer (51, 62).
    pub specialer: Vec<CatalogueItem>,
    /// The four main diagnosis groups of vederlagsfri fysioterapi.
    pub diagnosis_groups: Vec<CatalogueItem>,
    /// Structured course types.
    pub structured_courses: Vec<CatalogueItem>,
}

/// Specialer, diagnosis groups and structured courses, with names.
#[utoipa::path(get, path = "/api/catalogue", tag = "clinical",
    responses((status = 200, body = Catalogue), (status = 401, body = Problem)))]
async fn catalogue(_auth: Auth) -> Json<Catalogue> {
    Json(Catalogue {
        specialer: Speciale::ALL
            .iter()
            .map(|s| CatalogueItem {
                code: s.code().to_string(),
                da: s.danish_name().into(),
                en: s.english_name().into(),
                speciale: Some(s.code()),
                available_from: None,
            })
            .collect(),
        diagnosis_groups: DiagnosisGroup::ALL
            .iter()
            .map(|g| CatalogueItem {
                code: g.code().into(),
                da: g.danish_name().into(),
                en: g.english_name().into(),
                speciale: Some(Speciale::Vederlagsfri.code()),
                available_from: None,
            })
            .collect(),
        structured_courses: StructuredCourse::ALL
            .iter()
            .map(|c| CatalogueItem {
                code: c.code().into(),
                da: c.danish_name().into(),
                en: c.english_name().into(),
                speciale: Some(c.speciale().code()),
                available_from: Some(c.available_from()),
            })
            .collect(),
    })
}

/// An in-clinic visit.
#[derive(Debug, Serialize, ToSchema)]
pub struct VisitDto {
    /// Id.
    pub id: uuid::Uuid,
    /// When the patient was seen in the clinic.
    pub at: DateTime<Utc>,
    /// Video lines of the patient on the visit's Danish day, reversed when the visit was
    /// recorded: the agreement allows one consultation per patient per calendar day. Only in
    /// the answer to recording the visit; empty in lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reversed_video_lines: Vec<VisitConflictDto>,
}

/// A video line reversed because of an in-clinic visit the same day, told to the therapist.
#[derive(Debug, Serialize, ToSchema)]
pub struct VisitConflictDto {
    /// The video consultation.
    pub consultation_id: uuid::Uuid,
    /// Its line, now reversed.
    pub line_id: uuid::Uuid,
    /// The reversing line (posted today).
    pub reversal_id: uuid::Uuid,
    /// The Danish day.
    pub day: chrono::NaiveDate,
    /// What happened, in Danish.
    pub da: String,
    /// What happened, in English.
    pub en: String,
}

impl From<konsult_store::billing::VisitConflict> for VisitConflictDto {
    fn from(c: konsult_store::billing::VisitConflict) -> Self {
        Self {
            consultation_id: c.consultation.as_uuid(),
            line_id: c.line.as_uuid(),
            reversal_id: c.reversal.as_uuid(),
            day: c.day,
            da: format!(
                "Patienten har nu både en videokonsultation og en konsultation i klinikken den {}. \
                 Der kan kun afregnes 1 konsultation pr. kalenderdag, så videokonsultationens \
                 afregningslinje er tilbageført.",
                c.day.format("%d.%m.%Y")
            ),
            en: format!(
                "The patient now has both a video consultation and an in-clinic consultation on \
                 {}. Only one consultation per calendar day can be billed, so the video \
                 consultation's billing line was reversed.",
                c.day
            ),
        }
    }
}

/// An in-clinic visit to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitRequest {
    /// When the patient was seen in the clinic (not in the future).
    pub at: DateTime<Utc>,
}

/// The patient's in-clinic visits.
#[utoipa::path(get, path = "/api/patients/{id}/visits", tag = "clinical",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = [VisitDto]), (status = 404, body = Problem)))]
async fn list_visits(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<VisitDto>>> {
    let visits = state
        .store
        .visits(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    Ok(Json(
        visits
            .into_iter()
            .map(|v| VisitDto {
                id: v.id.as_uuid(),
                at: v.at,
                reversed_video_lines: Vec::new(),
            })
            .collect(),
    ))
}

/// Records that the patient was seen in the clinic (not in the future).
#[utoipa::path(post, path = "/api/patients/{id}/visits", tag = "clinical",
    params(("id" = uuid::Uuid, Path)), request_body = VisitRequest,
    responses((status = 201, body = VisitDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn create_visit(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<VisitRequest>,
) -> ApiResult<(StatusCode, Json<VisitDto>)> {
    let now = state.clock.now();
    if req.at > now + chrono::Duration::minutes(5) {
        return Err(ApiError::bad_request(
            "visit_in_future",
            "Et besøg i klinikken kan ikke registreres i fremtiden.",
            "an in-clinic visit cannot be in the future",
        ));
    }
    let (v, conflicts) = state
        .store
        .record_visit(
            auth.0.clinic,
            auth.0.therapist,
            PatientId::from_uuid(id),
            req.at,
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(VisitDto {
            id: v.id.as_uuid(),
            at: v.at,
            reversed_video_lines: conflicts.into_iter().map(Into::into).collect(),
        }),
    ))
}

/// A course of treatment (forløb).
#[derive(Debug, Serialize, ToSchema)]
pub struct CourseDto {
    /// Id.
    pub id: uuid::Uuid,
    /// Patient.
    pub patient_id: uuid::Uuid,
    /// Speciale (51, 62).
    pub speciale: u16,
    /// Diagnosis group code (sp. 62).
    pub diagnosis_group: Option<String>,
    /// Structured course code.
    pub structured: Option<String>,
    /// Referral date.
    pub referral_date: NaiveDate,
    /// Opened on.
    pub opened_on: NaiveDate,
}

impl From<CourseRecord> for CourseDto {
    fn from(c: CourseRecord) -> Self {
        Self {
            id: c.id.as_uuid(),
            patient_id: c.patient.as_uuid(),
            speciale: c.speciale.code(),
            diagnosis_group: c.diagnosis_group.map(|g| g.code().into()),
            structured: c.structured.map(|s| s.code().into()),
            referral_date: c.referral_date,
            opened_on: c.opened_on,
        }
    }
}

/// A new course.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CourseRequest {
    /// Speciale (51 or 62).
    pub speciale: u16,
    /// Diagnosis group code (required for 62, not allowed for 51).
    pub diagnosis_group: Option<String>,
    /// Structured course code, if any.
    pub structured: Option<String>,
    /// Date of the referral.
    pub referral_date: NaiveDate,
}

/// The patient's courses.
#[utoipa::path(get, path = "/api/patients/{id}/courses", tag = "clinical",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = [CourseDto]), (status = 404, body = Problem)))]
async fn list_courses(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<CourseDto>>> {
    let list = state
        .store
        .courses(
            auth.0.clinic,
            auth.actor(),
            PatientId::from_uuid(id),
            state.clock.now(),
        )
        .await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

fn rule(code: &str, da: String, en: String) -> ApiError {
    ApiError::Rule {
        code: "course_refused",
        title: "The course was not opened".into(),
        items: vec![ProblemItem {
            code: code.into(),
            da,
            en,
        }],
    }
}

/// Opens a course: a structured course only under its speciale and from its
/// start date; sp. 62 needs a diagnosis group.
#[utoipa::path(post, path = "/api/patients/{id}/courses", tag = "clinical",
    params(("id" = uuid::Uuid, Path)), request_body = CourseRequest,
    responses((status = 201, body = CourseDto), (status = 400, body = Problem), (status = 422, body = Problem), (status = 404, body = Problem)))]
async fn create_course(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<CourseRequest>,
) -> ApiResult<(StatusCode, Json<CourseDto>)> {
    let now = state.clock.now();
    let speciale = Speciale::try_from(req.speciale).map_err(|_| unknown_speciale(req.speciale))?;
    let diagnosis_group = req
        .diagnosis_group
        .as_deref()
        .map(|c| {
            c.parse::<DiagnosisGroup>().map_err(|_| {
                ApiError::bad_request(
                    "unknown_diagnosis_group",
                    "Diagnosegruppen kendes ikke. Vælg en af listens grupper.",
                    format!("unknown diagnosis group {c:?}"),
                )
            })
        })
        .transpose()?;
    let structured = req
        .structured
        .as_deref()
        .map(|c| {
            c.parse::<StructuredCourse>().map_err(|_| {
                ApiError::bad_request(
                    "unknown_structured_course",
                    "Det strukturerede forløb kendes ikke. Vælg et af listens forløb.",
                    format!("unknown structured course {c:?}"),
                )
            })
        })
        .transpose()?;
    let course = Course::open(
        CourseId::from_uuid(uuid::Uuid::new_v4()),
        PatientId::from_uuid(id),
        speciale,
        diagnosis_group,
        structured,
        req.referral_date,
        danish_day(now),
    )
    .map_err(|e| {
        rule(
            "course_rule",
            format!("Forløbet kan ikke oprettes: {e}"),
            e.to_string(),
        )
    })?;
    let record = CourseRecord::from(&course);
    state
        .store
        .open_course(auth.0.clinic, auth.actor(), &record, now)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// The therapist's assessment of the patient for video.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentRequest {
    /// Cognitively able to benefit from video.
    pub cognitively_able: bool,
    /// Technically able to use video.
    pub technically_able: bool,
    /// Video is clinically relevant for the current problem.
    pub clinically_relevant: bool,
    /// Video is patient-safe for the current problem.
    pub patient_safe: bool,
    /// The patient prefers video.
    pub patient_prefers_video: bool,
}

/// A recorded assessment.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssessmentDto {
    /// Id.
    pub id: uuid::Uuid,
    /// Course.
    pub course_id: uuid::Uuid,
    /// Who made it.
    pub made_by: uuid::Uuid,
    /// When.
    pub made_at: DateTime<Utc>,
    /// The criteria.
    pub criteria: AssessmentRequest,
    /// When revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn assessment_dto(course: CourseId, a: konsult_domain::Assessment) -> AssessmentDto {
    AssessmentDto {
        id: a.id.as_uuid(),
        course_id: course.as_uuid(),
        made_by: a.made_by.as_uuid(),
        made_at: a.made_at,
        criteria: AssessmentRequest {
            cognitively_able: a.criteria.cognitively_able,
            technically_able: a.criteria.technically_able,
            clinically_relevant: a.criteria.clinically_relevant,
            patient_safe: a.criteria.patient_safe,
            patient_prefers_video: a.criteria.patient_prefers_video,
        },
        revoked_at: a.revoked_at,
    }
}

/// The course's assessments, oldest first.
#[utoipa::path(get, path = "/api/courses/{id}/assessments", tag = "clinical",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = [AssessmentDto]), (status = 404, body = Problem)))]
async fn list_assessments(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<AssessmentDto>>> {
    let course = CourseId::from_uuid(id);
    let (_, list) = state
        .store
        .assessments(auth.0.clinic, auth.actor(), course, state.clock.now())
        .await?;
    Ok(Json(
        list.into_iter()
            .map(|a| assessment_dto(course, a))
            .collect(),
    ))
}

/// Records the therapist's assessment for the course.
#[utoipa::path(post, path = "/api/courses/{id}/assessments", tag = "clinical",
    params(("id" = uuid::Uuid, Path)), request_body = AssessmentRequest,
    responses((status = 201, body = AssessmentDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
async fn create_assessment(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<AssessmentRequest>,
) -> ApiResult<(StatusCode, Json<AssessmentDto>)> {
    let course = CourseId::from_uuid(id);
    let criteria = AssessmentCriteria {
        cognitively_able: req.cognitively_able,
        technically_able: req.technically_able,
        clinically_relevant: req.clinically_relevant,
        patient_safe: req.patient_safe,
        patient_prefers_video: req.patient_prefers_video,
    };
    let (_, a) = state
        .store
        .record_assessment(
            auth.0.clinic,
            auth.0.therapist,
            course,
            criteria,
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(assessment_dto(course, a))))
}

/// Revokes the assessment (and every other standing one of its course);
/// new consultations are refused until a new assessment is recorded.
#[utoipa::path(post, path = "/api/assessments/{id}/revoke", tag = "clinical",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn revoke_assessment(
    State(state): State<AppState>,
    auth: Clinician,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    state
        .store
        .revoke_assessment(
            auth.0.clinic,
            auth.0.therapist,
            AssessmentId::from_uuid(id),
            state.clock.now(),
        )
        .await
        .on_conflict(
            "already_revoked",
            "Vurderingen er allerede trukket tilbage.",
        )?;
    Ok(StatusCode::NO_CONTENT)
}
