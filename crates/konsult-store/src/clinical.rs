//! The clinical facts behind eligibility: courses, in-clinic visits and the
//! therapist's assessments.

use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{
    Assessment, AssessmentCriteria, AssessmentId, ClinicId, CourseId, DiagnosisGroup,
    InClinicVisit, PatientId, Speciale, StructuredCourse, TherapistId, VisitId,
};
use serde::{de::DeserializeOwned, Serialize};
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::billing::VisitConflict;
use crate::{get_flag, get_uuid, ms, opt_from_ms, parse_day, Result, Store, StoreError, Tx};

/// A stored course of treatment (forløb), validated by the domain before
/// it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CourseRecord {
    /// Id.
    pub id: CourseId,
    /// Patient.
    pub patient: PatientId,
    /// Billing specialty.
    pub speciale: Speciale,
    /// Main diagnosis group (vederlagsfri fysioterapi).
    pub diagnosis_group: Option<DiagnosisGroup>,
    /// Structured course type, if any.
    pub structured: Option<StructuredCourse>,
    /// Date of the referral (henvisning).
    pub referral_date: NaiveDate,
    /// When the course was opened.
    pub opened_on: NaiveDate,
}

/// The stable text code of a serde enum (its JSON string).
pub(crate) fn code<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => panic!("domain enums serialise: {e}"),
    }
}

/// Parses a stable text code back into its serde enum.
pub(crate) fn from_code<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("{what} {text:?}")))
}

impl From<&konsult_domain::Course> for CourseRecord {
    fn from(c: &konsult_domain::Course) -> Self {
        Self {
            id: c.id(),
            patient: c.patient(),
            speciale: c.speciale(),
            diagnosis_group: c.diagnosis_group(),
            structured: c.structured(),
            referral_date: c.referral_date(),
            opened_on: c.opened_on(),
        }
    }
}

impl Store {
    /// Checks that the patient exists in the clinic and is active: an erased patient, or a
    /// duplicate merged into another, cannot get courses, visits, assessments or consultations.
    pub(crate) async fn require_patient(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        patient: PatientId,
    ) -> Result<()> {
        let patient = self.patient_in(tx, clinic, patient).await?;
        refuse_inactive(patient.erased_at.is_some(), patient.merged_into)
    }

    /// Stores a course that the domain has validated.
    pub async fn open_course(
        &self,
        clinic: ClinicId,
        actor: Actor,
        course: &CourseRecord,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.require_patient(&mut tx, clinic, course.patient)
            .await?;
        let offered = Self::clinic_in(&mut tx, clinic).await?.specialer;
        if !offered.contains(&course.speciale) {
            return Err(StoreError::Refused {
                code: "speciale_not_offered",
                message: format!(
                    "the clinic does not work under speciale {} (its specialer: {})",
                    course.speciale,
                    offered
                        .iter()
                        .map(|s| s.code().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        sqlx::query(
            "INSERT INTO courses (id, clinic_id, patient_id, speciale, diagnosis_group, structured, referral_date, opened_on, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(course.id.to_string())
        .bind(clinic.to_string())
        .bind(course.patient.to_string())
        .bind(i64::from(course.speciale.code()))
        .bind(course.diagnosis_group.as_ref().map(code))
        .bind(course.structured.as_ref().map(code))
        .bind(course.referral_date.to_string())
        .bind(course.opened_on.to_string())
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "course.create",
            Some(course.patient),
            Some(&course.id.to_string()),
        )
        .await?;
        tx.commit().await
    }

    fn course_from_row(row: &sqlx::any::AnyRow) -> Result<CourseRecord> {
        Ok(CourseRecord {
            id: CourseId::from_uuid(get_uuid(row, "id")?),
            patient: PatientId::from_uuid(get_uuid(row, "patient_id")?),
            speciale: crate::get_speciale(row, "speciale")?,
            diagnosis_group: row
                .try_get::<Option<String>, _>("diagnosis_group")?
                .map(|c| from_code(&c, "diagnosis group"))
                .transpose()?,
            structured: row
                .try_get::<Option<String>, _>("structured")?
                .map(|c| from_code(&c, "structured course"))
                .transpose()?,
            referral_date: parse_day(&row.try_get::<String, _>("referral_date")?)?,
            opened_on: parse_day(&row.try_get::<String, _>("opened_on")?)?,
        })
    }

    pub(crate) async fn course_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        id: CourseId,
    ) -> Result<CourseRecord> {
        let row = sqlx::query(
            "SELECT id, patient_id, speciale, diagnosis_group, structured, referral_date, opened_on
             FROM courses WHERE clinic_id = $1 AND id = $2",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound("course"))?;
        Self::course_from_row(&row)
    }

    /// A patient's courses.
    pub async fn courses(
        &self,
        clinic: ClinicId,
        actor: Actor,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<CourseRecord>> {
        let mut tx = self.begin().await?;
        self.require_patient(&mut tx, clinic, patient).await?;
        let rows = sqlx::query(
            "SELECT id, patient_id, speciale, diagnosis_group, structured, referral_date, opened_on
             FROM courses WHERE clinic_id = $1 AND patient_id = $2 ORDER BY created_at",
        )
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_all(tx.conn())
        .await?;
        let courses = rows
            .iter()
            .map(Self::course_from_row)
            .collect::<Result<Vec<_>>>()?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "course.list",
            Some(patient),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(courses)
    }

    /// Records that the patient was seen in the clinic at `at`. A video line of the patient on
    /// the same Danish day is reversed (one consultation per patient per calendar day, whatever
    /// the order of entry); the reversals are returned so the therapist is told.
    pub async fn record_visit(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        patient: PatientId,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(InClinicVisit, Vec<VisitConflict>)> {
        let id = VisitId::from_uuid(uuid::Uuid::new_v4());
        let mut tx = self.begin().await?;
        self.require_patient(&mut tx, clinic, patient).await?;
        sqlx::query(
            "INSERT INTO visits (id, clinic_id, patient_id, at, recorded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .bind(ms(at))
        .bind(by.to_string())
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "visit.create",
            Some(patient),
            Some(&id.to_string()),
        )
        .await?;
        let visit = InClinicVisit { id, patient, at };
        let conflicts = self
            .apply_visit_in(&mut tx, clinic, Actor::Therapist(by), &visit, now)
            .await?;
        tx.commit().await?;
        Ok((visit, conflicts))
    }

    pub(crate) async fn visits_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        patient: PatientId,
    ) -> Result<Vec<InClinicVisit>> {
        let rows = sqlx::query(
            "SELECT id, at FROM visits WHERE clinic_id = $1 AND patient_id = $2 ORDER BY at",
        )
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InClinicVisit {
                    id: VisitId::from_uuid(get_uuid(r, "id")?),
                    patient,
                    at: crate::from_ms(r.try_get("at")?)?,
                })
            })
            .collect()
    }

    /// A patient's in-clinic visits.
    pub async fn visits(
        &self,
        clinic: ClinicId,
        actor: Actor,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<InClinicVisit>> {
        let mut tx = self.begin().await?;
        self.require_patient(&mut tx, clinic, patient).await?;
        let visits = self.visits_in(&mut tx, clinic, patient).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "visit.list",
            Some(patient),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(visits)
    }

    /// Records the therapist's assessment for a course.
    pub async fn record_assessment(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        course: CourseId,
        criteria: AssessmentCriteria,
        now: DateTime<Utc>,
    ) -> Result<(PatientId, Assessment)> {
        let id = AssessmentId::from_uuid(uuid::Uuid::new_v4());
        let mut tx = self.begin().await?;
        let c = self.course_in(&mut tx, clinic, course).await?;
        self.require_patient(&mut tx, clinic, c.patient).await?;
        sqlx::query(
            "INSERT INTO assessments (id, clinic_id, patient_id, course_id, made_by, made_at, cognitively_able,
                technically_able, clinically_relevant, patient_safe, patient_prefers_video)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(c.patient.to_string())
        .bind(course.to_string())
        .bind(by.to_string())
        .bind(ms(now))
        .bind(i64::from(criteria.cognitively_able))
        .bind(i64::from(criteria.technically_able))
        .bind(i64::from(criteria.clinically_relevant))
        .bind(i64::from(criteria.patient_safe))
        .bind(i64::from(criteria.patient_prefers_video))
        .execute(tx.conn())
        .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "assessment.create",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok((
            c.patient,
            Assessment {
                id,
                made_at: now,
                made_by: by,
                criteria,
                revoked_at: None,
            },
        ))
    }

    /// Revokes an assessment, and with it every other standing assessment of
    /// the same course, so that revoking really blocks new consultations
    /// until a new assessment is recorded (the domain would otherwise fall
    /// back to an older standing one). Revoking twice is a conflict and
    /// changes nothing.
    pub async fn revoke_assessment(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: AssessmentId,
        now: DateTime<Utc>,
    ) -> Result<PatientId> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT patient_id, course_id, revoked_at FROM assessments WHERE clinic_id = $1 AND id = $2")
            .bind(clinic.to_string())
            .bind(id.to_string())
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound("assessment"))?;
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Err(StoreError::Conflict(
                "the assessment is already revoked".into(),
            ));
        }
        let patient = PatientId::from_uuid(get_uuid(&row, "patient_id")?);
        sqlx::query("UPDATE assessments SET revoked_at = $1, revoked_by = $2 WHERE course_id = $3 AND revoked_at IS NULL")
            .bind(ms(now))
            .bind(by.to_string())
            .bind(row.try_get::<String, _>("course_id")?)
            .execute(tx.conn())
            .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "assessment.revoke",
            Some(patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok(patient)
    }

    pub(crate) async fn assessments_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        course: CourseId,
    ) -> Result<Vec<Assessment>> {
        let rows = sqlx::query(&format!(
            "SELECT {ASSESSMENT_COLUMNS} FROM assessments a
             WHERE a.clinic_id = $1 AND a.course_id = $2 ORDER BY a.made_at"
        ))
        .bind(clinic.to_string())
        .bind(course.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter().map(assessment_of_row).collect()
    }

    /// A course's assessments, oldest first.
    pub async fn assessments(
        &self,
        clinic: ClinicId,
        actor: Actor,
        course: CourseId,
        now: DateTime<Utc>,
    ) -> Result<(PatientId, Vec<Assessment>)> {
        let mut tx = self.begin().await?;
        let c = self.course_in(&mut tx, clinic, course).await?;
        let list = self.assessments_in(&mut tx, clinic, course).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "assessment.list",
            Some(c.patient),
            Some(&course.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok((c.patient, list))
    }
}

/// An assessment's columns, from `assessments a`, each prefixed `a_` so
/// that they can stand beside other tables' in one row.
pub(crate) const ASSESSMENT_COLUMNS: &str =
    "a.id AS a_id, a.made_by AS a_made_by, a.made_at AS a_made_at,
    a.cognitively_able AS a_cognitively_able, a.technically_able AS a_technically_able,
    a.clinically_relevant AS a_clinically_relevant, a.patient_safe AS a_patient_safe,
    a.patient_prefers_video AS a_patient_prefers_video, a.revoked_at AS a_revoked_at";

/// An assessment from a row with [`ASSESSMENT_COLUMNS`].
pub(crate) fn assessment_of_row(r: &sqlx::any::AnyRow) -> Result<Assessment> {
    Ok(Assessment {
        id: AssessmentId::from_uuid(get_uuid(r, "a_id")?),
        made_by: TherapistId::from_uuid(get_uuid(r, "a_made_by")?),
        made_at: crate::from_ms(r.try_get("a_made_at")?)?,
        criteria: AssessmentCriteria {
            cognitively_able: get_flag(r, "a_cognitively_able")?,
            technically_able: get_flag(r, "a_technically_able")?,
            clinically_relevant: get_flag(r, "a_clinically_relevant")?,
            patient_safe: get_flag(r, "a_patient_safe")?,
            patient_prefers_video: get_flag(r, "a_patient_prefers_video")?,
        },
        revoked_at: opt_from_ms(r.try_get("a_revoked_at")?)?,
    })
}

/// `Refused` (`patient_inactive`) for an erased patient, or a duplicate
/// merged into another.
pub(crate) fn refuse_inactive(erased: bool, merged_into: Option<PatientId>) -> Result<()> {
    if erased {
        return Err(StoreError::Refused {
            code: "patient_inactive",
            message: "the patient's data has been erased".into(),
        });
    }
    if let Some(into) = merged_into {
        return Err(StoreError::Refused {
            code: "patient_inactive",
            message: format!("the patient was merged into patient {into}; use that patient"),
        });
    }
    Ok(())
}
