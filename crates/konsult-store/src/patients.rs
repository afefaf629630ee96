//! Patients: personal data sealed at rest, every read and write audited.

use chrono::{DateTime, Utc};
use konsult_domain::{ClinicId, PatientId};
use rand::Rng;
use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::consultations::SealedDoc;
use crate::{from_ms, get_uuid, ms, opt_from_ms, Result, ResultExt, Store, StoreError, Tx};

/// A patient's personal data, as entered (already validated by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientData {
    /// Full name.
    pub name: String,
    /// CPR number, normalised `DDMMYY-SSSS`.
    pub cpr: Option<String>,
    /// Phone number to call if the video connection drops.
    pub phone: Option<String>,
    /// E-mail for the join link.
    pub email: Option<String>,
}

/// A patient as the clinic sees them.
#[derive(Debug, Clone, Serialize)]
pub struct Patient {
    /// Id.
    pub id: PatientId,
    /// A pseudonymous reference for exports (no personal data).
    pub pseudonym: String,
    /// Name (empty once erased).
    pub name: String,
    /// CPR number.
    pub cpr: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When the personal data was erased, if it was.
    pub erased_at: Option<DateTime<Utc>>,
}

fn new_pseudonym() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    let body: String = (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("P-{body}")
}

impl Store {
    fn seal_patient(&self, id: PatientId, data: &PatientData) -> [Option<Vec<u8>>; 4] {
        let c = self.cipher();
        [
            Some(c.seal(&format!("patients.name:{id}"), &data.name)),
            c.seal_opt(&format!("patients.cpr:{id}"), data.cpr.as_deref()),
            c.seal_opt(&format!("patients.phone:{id}"), data.phone.as_deref()),
            c.seal_opt(&format!("patients.email:{id}"), data.email.as_deref()),
        ]
    }

    fn patient_from_row(&self, r: &sqlx::any::AnyRow) -> Result<Patient> {
        let id = PatientId::from_uuid(get_uuid(r, "id")?);
        let c = self.cipher();
        let open = |col: &str, field: &str| -> Result<Option<String>> {
            let sealed: Option<Vec<u8>> = r.try_get(col)?;
            Ok(c.open_opt(&format!("patients.{field}:{id}"), sealed.as_deref())?)
        };
        Ok(Patient {
            id,
            pseudonym: r.try_get("pseudonym")?,
            name: open("name_enc", "name")?.unwrap_or_default(),
            cpr: open("cpr_enc", "cpr")?,
            phone: open("phone_enc", "phone")?,
            email: open("email_enc", "email")?,
            created_at: from_ms(r.try_get("created_at")?)?,
            erased_at: opt_from_ms(r.try_get("erased_at")?)?,
        })
    }

    /// Creates a patient.
    pub async fn create_patient(
        &self,
        clinic: ClinicId,
        actor: Actor,
        data: PatientData,
        now: DateTime<Utc>,
    ) -> Result<Patient> {
        let id = PatientId::from_uuid(uuid::Uuid::new_v4());
        let [name, cpr, phone, email] = self.seal_patient(id, &data);
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO patients (id, clinic_id, pseudonym, name_enc, cpr_enc, phone_enc, email_enc, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(new_pseudonym())
        .bind(name)
        .bind(cpr)
        .bind(phone)
        .bind(email)
        .bind(ms(now))
        .execute(tx.conn())
        .await
        .on_unique("pseudonym collision, try again")?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "patient.create",
            Some(id),
            None,
        )
        .await?;
        let patient = self.patient_in(&mut tx, clinic, id).await?;
        tx.commit().await?;
        Ok(patient)
    }

    pub(crate) async fn patient_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        id: PatientId,
    ) -> Result<Patient> {
        let row = sqlx::query(
            "SELECT id, pseudonym, name_enc, cpr_enc, phone_enc, email_enc, created_at, erased_at
             FROM patients WHERE clinic_id = $1 AND id = $2",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound("patient"))?;
        self.patient_from_row(&row)
    }

    /// Reads one patient (audited as a read).
    pub async fn patient(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Patient> {
        let mut tx = self.begin().await?;
        let patient = self.patient_in(&mut tx, clinic, id).await?;
        audit::append(&mut tx, clinic, now, actor, "patient.read", Some(id), None).await?;
        tx.commit().await?;
        Ok(patient)
    }

    /// Lists the clinic's patients (each one audited as read).
    pub async fn patients(
        &self,
        clinic: ClinicId,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<Patient>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT id, pseudonym, name_enc, cpr_enc, phone_enc, email_enc, created_at, erased_at
             FROM patients WHERE clinic_id = $1 ORDER BY created_at",
        )
        .bind(clinic.to_string())
        .fetch_all(tx.conn())
        .await?;
        let patients = rows
            .iter()
            .map(|r| self.patient_from_row(r))
            .collect::<Result<Vec<_>>>()?;
        for p in &patients {
            audit::append(
                &mut tx,
                clinic,
                now,
                actor,
                "patient.list",
                Some(p.id),
                None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(patients)
    }

    /// Replaces a patient's personal data.
    pub async fn update_patient(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: PatientId,
        data: PatientData,
        now: DateTime<Utc>,
    ) -> Result<Patient> {
        let [name, cpr, phone, email] = self.seal_patient(id, &data);
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE patients SET name_enc = $1, cpr_enc = $2, phone_enc = $3, email_enc = $4
             WHERE clinic_id = $5 AND id = $6 AND erased_at IS NULL",
        )
        .bind(name)
        .bind(cpr)
        .bind(phone)
        .bind(email)
        .bind(clinic.to_string())
        .bind(id.to_string())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::NotFound("patient"));
        }
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "patient.update",
            Some(id),
            None,
        )
        .await?;
        let patient = self.patient_in(&mut tx, clinic, id).await?;
        tx.commit().await?;
        Ok(patient)
    }
}

impl Store {
    /// Everything Konsult holds about one patient, for a data subject
    /// access request (GDPR art. 15): personal data, visits, courses and
    /// assessments, consultations with journal notes and safety
    /// confirmations, billing lines and the audit entries about them.
    pub async fn export_patient(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: PatientId,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value> {
        use serde_json::json;
        let mut tx = self.begin().await?;
        let patient = self.patient_in(&mut tx, clinic, id).await?;
        let visits = self.visits_in(&mut tx, clinic, id).await?;
        let course_ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM courses WHERE clinic_id = $1 AND patient_id = $2 ORDER BY created_at",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        let mut courses = Vec::new();
        for cid in &course_ids {
            let course_id = konsult_domain::CourseId::from_uuid(crate::parse_uuid(cid)?);
            let course = self.course_in(&mut tx, clinic, course_id).await?;
            let assessments = self.assessments_in(&mut tx, clinic, course_id).await?;
            courses.push(json!({"course": course, "assessments": assessments}));
        }
        let consultation_ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM consultations WHERE clinic_id = $1 AND patient_id = $2 ORDER BY scheduled_start",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        let mut consultations = Vec::new();
        for cid in &consultation_ids {
            let consultation_id =
                konsult_domain::ConsultationId::from_uuid(crate::parse_uuid(cid)?);
            let c = self
                .consultation_in(&mut tx, clinic, consultation_id)
                .await?;
            consultations.push(json!({
                "consultation": c,
                "journal": self.open_doc::<serde_json::Value>(&mut tx, SealedDoc::Journal, consultation_id).await?,
                "safety": self.open_doc::<serde_json::Value>(&mut tx, SealedDoc::Safety, consultation_id).await?,
            }));
        }
        let lines = self.billing_lines_of_patient(&mut tx, clinic, id).await?;
        let audit_rows = sqlx::query(
            "SELECT seq, at, actor, action, subject FROM audit_log WHERE clinic_id = $1 AND patient_id = $2 ORDER BY seq",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        let audit = audit_rows
            .iter()
            .map(|r| {
                Ok(json!({
                    "seq": r.try_get::<i64, _>("seq")?,
                    "at": from_ms(r.try_get("at")?)?,
                    "actor": r.try_get::<String, _>("actor")?,
                    "action": r.try_get::<String, _>("action")?,
                    "subject": r.try_get::<Option<String>, _>("subject")?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
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
        Ok(json!({
            "exported_at": now,
            "patient": patient,
            "in_clinic_visits": visits,
            "courses": courses,
            "consultations": consultations,
            "billing_lines": lines,
            "audit": audit,
        }))
    }
}
