//! Everything Konsult holds about one patient, as one JSON document: the
//! answer to a data subject access request (GDPR art. 15) and the
//! machine-readable copy of data portability (art. 20).
//!
//! The document has a name and a version ([`FORMAT`], [`VERSION`]) and is
//! described field by field in `docs/export-schema.md` and, for machines, by
//! the JSON Schema `docs/patient-export.schema.json`, which a test checks the
//! real export against. A change of shape is a new version.

use chrono::{DateTime, NaiveDate, Utc};
use konsult_domain::{
    Assessment, ClinicId, ConsultationId, CourseId, InClinicVisit, PatientId, TherapistId,
};
use serde::Serialize;
use sqlx::Row;

use crate::access_log::{AccessEntry, Staff};
use crate::audit::{self, Actor};
use crate::billing::{line_from_row, LINE_COLUMNS};
use crate::clinical::CourseRecord;
use crate::consultations::{Consultation, SealedDoc};
use crate::patients::{Patient, Revision};
use crate::{from_ms, Result, Store};

/// The `format` of a patient export.
pub const FORMAT: &str = "konsult.patient-export";
/// The `version` of the shape built here.
pub const VERSION: u32 = 1;

/// The whole export.
#[derive(Debug, Clone, Serialize)]
pub struct PatientExport {
    /// Always [`FORMAT`].
    pub format: &'static str,
    /// Always [`VERSION`].
    pub version: u32,
    /// When it was made.
    pub exported_at: DateTime<Utc>,
    /// The data controller: the clinic.
    pub controller: Controller,
    /// The patient's personal data now.
    pub patient: Patient,
    /// Every rectification of that data, with the values it replaced.
    pub rectifications: Vec<Revision>,
    /// In-clinic visits.
    pub in_clinic_visits: Vec<InClinicVisit>,
    /// Courses of treatment with their assessments for video.
    pub courses: Vec<ExportCourse>,
    /// Video consultations with journal note, safety confirmation and the
    /// events of the call.
    pub consultations: Vec<ExportConsultation>,
    /// Billing lines, corrections included.
    pub billing_lines: Vec<ExportBillingLine>,
    /// The staff named anywhere in this export, by id.
    pub staff: Vec<StaffMember>,
    /// The audit log entries about the patient, as stored.
    pub audit: Vec<ExportAuditEntry>,
    /// The same entries in words: who, in which role, what (sundhedsloven § 42 a).
    pub access_log: Vec<AccessEntry>,
}

/// The clinic that holds the data.
#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    /// Its id.
    pub clinic_id: ClinicId,
    /// Its name.
    pub name: String,
    /// Its ydernummer.
    pub ydernummer: String,
}

/// A course and its assessments.
#[derive(Debug, Clone, Serialize)]
pub struct ExportCourse {
    /// The course.
    pub course: CourseRecord,
    /// Its assessments for video, oldest first.
    pub assessments: Vec<Assessment>,
}

/// A consultation and what belongs to it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportConsultation {
    /// The consultation.
    pub consultation: Consultation,
    /// The journal note, until it is erased by retention.
    pub journal: Option<serde_json::Value>,
    /// Where the patient was and the number to call.
    pub safety: Option<serde_json::Value>,
    /// The events of the call (no addresses are ever stored), oldest first.
    pub call_events: Vec<CallEventRecord>,
}

/// One stored event of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallEventRecord {
    /// `patient_waiting`, `patient_left_waiting`, `admitted`,
    /// `two_way_established`, `patient_left`, `therapist_left`, `ended`, …
    /// as signaling recorded it (`konsult_domain::CallEvent::code`).
    pub kind: String,
    /// The evidence of `two_way_established` or the reason of `ended`
    /// (`konsult_domain::CallEvent::detail`), if any.
    pub detail: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A billing line in the export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportBillingLine {
    /// Line id.
    pub id: uuid::Uuid,
    /// The consultation billed.
    pub consultation_id: ConsultationId,
    /// `individual_video` or `hold_video`.
    pub kind: String,
    /// Service number, e.g. `0131`.
    pub service_number: String,
    /// Speciale, 51 or 62.
    pub speciale: u16,
    /// Fee in øre (negative on a correction).
    pub fee_ore: i64,
    /// The region's share in øre.
    pub region_share_ore: i64,
    /// The patient's own share in øre.
    pub patient_share_ore: i64,
    /// The Danish calendar day.
    pub calendar_day: NaiveDate,
    /// The line this one reverses, for a correction.
    pub correction_of: Option<uuid::Uuid>,
    /// Why a correction was made.
    pub note: Option<String>,
    /// When first exported to the practice system.
    pub exported_at: Option<DateTime<Utc>>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

/// A staff member named in the export.
#[derive(Debug, Clone, Serialize)]
pub struct StaffMember {
    /// Account id.
    pub id: TherapistId,
    /// Name.
    pub name: String,
    /// `admin` or `therapist`.
    pub role: crate::therapists::Role,
}

/// An audit entry as stored (ids and codes).
#[derive(Debug, Clone, Serialize)]
pub struct ExportAuditEntry {
    /// Position in the clinic's chain.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// `therapist:<id>`, `patient-link:<consultation>` or `system`.
    pub actor: String,
    /// Action code.
    pub action: String,
    /// The record acted on.
    pub subject: Option<String>,
}

impl Store {
    /// Everything Konsult holds about one patient (see the module docs).
    /// The export is audited (`patient.export`) after it is read.
    pub async fn export_patient(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: PatientId,
        now: DateTime<Utc>,
    ) -> Result<PatientExport> {
        let clinic_row = self.clinic(clinic).await?;
        let staff_list = self.therapists(clinic).await?;
        let mut tx = self.begin().await?;
        let patient = self.patient_in(&mut tx, clinic, id).await?;
        let access_log = self.access_entries_in(&mut tx, clinic, id).await?;
        let names = Staff::from_list(&staff_list);
        let rectifications = self.revisions_in(&mut tx, clinic, id, &names).await?;
        let in_clinic_visits = self.visits_in(&mut tx, clinic, id).await?;

        let course_ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM courses WHERE clinic_id = $1 AND patient_id = $2 ORDER BY created_at, id",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        let mut courses = Vec::new();
        for cid in &course_ids {
            let course_id = CourseId::from_uuid(crate::parse_uuid(cid)?);
            courses.push(ExportCourse {
                course: self.course_in(&mut tx, clinic, course_id).await?,
                assessments: self.assessments_in(&mut tx, clinic, course_id).await?,
            });
        }

        let consultation_ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM consultations WHERE clinic_id = $1 AND patient_id = $2 ORDER BY scheduled_start, id",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        let mut consultations = Vec::new();
        for cid in &consultation_ids {
            let consultation_id = ConsultationId::from_uuid(crate::parse_uuid(cid)?);
            // Explicit columns: the table may grow columns of its own.
            let events = sqlx::query(
                "SELECT kind, detail, at FROM consultation_events
                 WHERE clinic_id = $1 AND consultation_id = $2 ORDER BY at, id",
            )
            .bind(clinic.to_string())
            .bind(cid)
            .fetch_all(tx.conn())
            .await?
            .iter()
            .map(|r| {
                Ok(CallEventRecord {
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                    at: from_ms(r.try_get("at")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            consultations.push(ExportConsultation {
                consultation: self
                    .consultation_in(&mut tx, clinic, consultation_id)
                    .await?,
                journal: self
                    .open_doc(&mut tx, SealedDoc::Journal, consultation_id)
                    .await?,
                safety: self
                    .open_doc(&mut tx, SealedDoc::Safety, consultation_id)
                    .await?,
                call_events: events,
            });
        }

        let billing_lines = sqlx::query(&format!(
            "SELECT {LINE_COLUMNS} FROM billing_lines b WHERE b.clinic_id = $1 AND b.patient_id = $2
             ORDER BY b.calendar_day, b.created_at, CASE WHEN b.correction_of IS NULL THEN 0 ELSE 1 END, b.id"
        ))
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?
        .iter()
        .map(|r| {
            let s = line_from_row(r)?;
            Ok(ExportBillingLine {
                id: s.id.as_uuid(),
                consultation_id: s.line.consultation,
                kind: s.line.kind.code().to_owned(),
                service_number: s.line.service_number.to_string(),
                speciale: s.line.speciale.code(),
                fee_ore: s.line.fee.ore(),
                region_share_ore: s.line.shares.region.ore(),
                patient_share_ore: s.line.shares.patient.ore(),
                calendar_day: s.line.calendar_day,
                correction_of: s.correction_of.map(|c| c.as_uuid()),
                note: s.note,
                exported_at: s.exported_at,
                created_at: s.created_at,
            })
        })
        .collect::<Result<Vec<_>>>()?;

        let audit = sqlx::query(
            "SELECT seq, at, actor, action, subject FROM audit_log
             WHERE clinic_id = $1 AND patient_id = $2 ORDER BY seq",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?
        .iter()
        .map(|r| {
            Ok(ExportAuditEntry {
                seq: r.try_get("seq")?,
                at: from_ms(r.try_get("at")?)?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                subject: r.try_get("subject")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;

        // Staff named by id anywhere in the document.
        let mut named: Vec<TherapistId> = consultations
            .iter()
            .map(|c: &ExportConsultation| c.consultation.therapist)
            .chain(
                courses
                    .iter()
                    .flat_map(|c: &ExportCourse| c.assessments.iter().map(|a| a.made_by)),
            )
            .chain(audit.iter().filter_map(|e| match Actor::parse(&e.actor) {
                Some(Actor::Therapist(t)) => Some(t),
                _ => None,
            }))
            .collect();
        named.sort_by_key(|t| t.as_uuid());
        named.dedup();
        let staff = named
            .into_iter()
            .filter_map(|t| staff_list.iter().find(|s| s.id == t))
            .map(|s| StaffMember {
                id: s.id,
                name: s.name.clone(),
                role: s.role,
            })
            .collect();

        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "patient.export",
            Some(id),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(PatientExport {
            format: FORMAT,
            version: VERSION,
            exported_at: now,
            controller: Controller {
                clinic_id: clinic,
                name: clinic_row.name,
                ydernummer: clinic_row.ydernummer,
            },
            patient,
            rectifications,
            in_clinic_visits,
            courses,
            consultations,
            billing_lines,
            staff,
            audit,
            access_log,
        })
    }
}
