//! Patients: personal data sealed at rest, every read and write audited.

use chrono::{DateTime, Utc};
use konsult_domain::{BillingLineId, ClinicId, PatientId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::{from_ms, get_uuid, ms, opt_from_ms, Result, ResultExt, Store, StoreError, Tx};

/// A patient's personal data, as entered (already validated by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl PatientData {
    /// The names of the fields whose value differs in `new`, in a fixed order.
    pub fn changed_fields(&self, new: &PatientData) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.name != new.name {
            fields.push("name");
        }
        if self.cpr != new.cpr {
            fields.push("cpr");
        }
        if self.phone != new.phone {
            fields.push("phone");
        }
        if self.email != new.email {
            fields.push("email");
        }
        fields
    }
}

/// One rectification of a patient's personal data: when, by whom, which
/// fields, and the values it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revision {
    /// The revision's id (the subject of its `patient.rectify` audit entry).
    pub id: uuid::Uuid,
    /// When the data was changed.
    pub at: DateTime<Utc>,
    /// Who changed it.
    pub by: crate::access_log::Accessor,
    /// The fields that changed: `name`, `cpr`, `phone`, `email`.
    pub fields: Vec<String>,
    /// Every field as it was before the change.
    pub previous: PatientData,
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
    /// The patient this one was merged into (a duplicate); it is then inactive.
    pub merged_into: Option<PatientId>,
    /// The patient who holds the same CPR number, for a duplicate created before CPR numbers
    /// were unique; merge the two.
    pub duplicate_of: Option<PatientId>,
}

impl Patient {
    /// Erased or merged into another patient: cannot be scheduled, admitted or billed.
    pub fn is_inactive(&self) -> bool {
        self.erased_at.is_some() || self.merged_into.is_some()
    }
}

/// What merging a duplicate into a patient did.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    /// The patient kept.
    pub into: PatientId,
    /// The duplicate, now inactive.
    pub merged: PatientId,
    /// Lines of the duplicate reversed because the patient kept already had a line that Danish
    /// day (one consultation per patient per calendar day).
    pub reversed: Vec<BillingLineId>,
    /// Courses, consultations, visits and assessments moved.
    pub moved_records: u64,
}

/// The CPR number as the lookup hash sees it: digits only, so `010170-1234`, `0101701234` and
/// `010170 1234` are one person.
pub fn cpr_key(cpr: &str) -> String {
    cpr.chars().filter(char::is_ascii_digit).collect()
}

const PATIENT_COLUMNS: &str =
    "id, pseudonym, name_enc, cpr_enc, phone_enc, email_enc, created_at, erased_at, merged_into, duplicate_of";

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
            merged_into: opt_patient(r, "merged_into")?,
            duplicate_of: opt_patient(r, "duplicate_of")?,
        })
    }

    fn cpr_lookup(&self, cpr: Option<&str>) -> Option<String> {
        cpr.map(|cpr| self.cipher().lookup_hash("patient.cpr", &cpr_key(cpr)))
    }

    /// The active patient of the clinic holding the CPR lookup, other than `except`.
    async fn cpr_holder(
        tx: &mut Tx,
        clinic: ClinicId,
        lookup: &str,
        except: Option<PatientId>,
    ) -> Result<Option<PatientId>> {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 AND cpr_lookup = $2")
                .bind(clinic.to_string())
                .bind(lookup)
                .fetch_optional(tx.conn())
                .await?;
        let holder = holder
            .map(|h| crate::parse_uuid(&h).map(PatientId::from_uuid))
            .transpose()?;
        Ok(holder.filter(|h| Some(*h) != except))
    }

    /// Whether the patient is erased or merged away (inactive).
    pub(crate) async fn patient_inactive_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        id: PatientId,
    ) -> Result<bool> {
        Ok(self.patient_in(tx, clinic, id).await?.is_inactive())
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
        let lookup = self.cpr_lookup(data.cpr.as_deref());
        let mut tx = self.begin().await?;
        if let Some(lookup) = &lookup {
            if let Some(existing) = Self::cpr_holder(&mut tx, clinic, lookup, None).await? {
                return Err(StoreError::DuplicatePatient { existing });
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO patients (id, clinic_id, pseudonym, name_enc, cpr_enc, phone_enc, email_enc, created_at, cpr_lookup)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(new_pseudonym())
        .bind(name)
        .bind(cpr)
        .bind(phone)
        .bind(email)
        .bind(ms(now))
        .bind(lookup.clone())
        .execute(tx.conn())
        .await;
        if let Err(sqlx::Error::Database(db)) = &inserted {
            if db.is_unique_violation() && lookup.is_some() {
                // Another request created the same person first.
                drop(tx);
                let mut tx = self.begin().await?;
                let lookup = lookup.as_deref().unwrap_or_default();
                return match Self::cpr_holder(&mut tx, clinic, lookup, None).await? {
                    Some(existing) => Err(StoreError::DuplicatePatient { existing }),
                    None => Err(StoreError::Conflict(
                        "pseudonym collision, try again".into(),
                    )),
                };
            }
        }
        inserted.on_unique("pseudonym collision, try again")?;
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
        let row = sqlx::query(&format!(
            "SELECT {PATIENT_COLUMNS} FROM patients WHERE clinic_id = $1 AND id = $2"
        ))
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
        let rows = sqlx::query(&format!(
            "SELECT {PATIENT_COLUMNS} FROM patients WHERE clinic_id = $1 ORDER BY created_at"
        ))
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

    /// Rectifies a patient's personal data (GDPR art. 16): replaces the
    /// fields that differ, keeps the values they replace (sealed) as a
    /// revision, and audits `patient.rectify` with the revision and the
    /// names of the changed fields. When nothing differs, no revision is
    /// made and the call is audited as the read it then is.
    pub async fn update_patient(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: PatientId,
        data: PatientData,
        now: DateTime<Utc>,
    ) -> Result<Patient> {
        let mut tx = self.begin().await?;
        let before = self.patient_in(&mut tx, clinic, id).await?;
        if before.erased_at.is_some() {
            return Err(StoreError::NotFound("patient"));
        }
        if let Some(into) = before.merged_into {
            return Err(StoreError::Refused {
                code: "patient_inactive",
                message: format!("the patient was merged into patient {into}"),
            });
        }
        let lookup = self.cpr_lookup(data.cpr.as_deref());
        if data.cpr != before.cpr {
            if let Some(lookup) = &lookup {
                if let Some(existing) = Self::cpr_holder(&mut tx, clinic, lookup, Some(id)).await? {
                    return Err(StoreError::DuplicatePatient { existing });
                }
            }
        }
        let previous = PatientData {
            name: before.name.clone(),
            cpr: before.cpr.clone(),
            phone: before.phone.clone(),
            email: before.email.clone(),
        };
        let fields = previous.changed_fields(&data);
        if fields.is_empty() {
            audit::append(&mut tx, clinic, now, actor, "patient.read", Some(id), None).await?;
            tx.commit().await?;
            return Ok(before);
        }
        let revision = uuid::Uuid::new_v4();
        let previous_json = serde_json::to_string(&previous).expect("patient data serialises");
        sqlx::query(
            "INSERT INTO patient_revisions (id, clinic_id, patient_id, at, actor, fields, previous_enc)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(revision.to_string())
        .bind(clinic.to_string())
        .bind(id.to_string())
        .bind(ms(now))
        .bind(actor.as_stored())
        .bind(fields.join(","))
        .bind(
            self.cipher()
                .seal(&format!("patient_revisions.previous:{revision}"), &previous_json),
        )
        .execute(tx.conn())
        .await?;
        let [name, cpr, phone, email] = self.seal_patient(id, &data);
        sqlx::query(
            "UPDATE patients SET name_enc = $1, cpr_enc = $2, phone_enc = $3, email_enc = $4,
                cpr_lookup = CASE WHEN duplicate_of IS NULL THEN $5 ELSE NULL END
             WHERE clinic_id = $6 AND id = $7 AND erased_at IS NULL",
        )
        .bind(name)
        .bind(cpr)
        .bind(phone)
        .bind(email)
        .bind(lookup)
        .bind(clinic.to_string())
        .bind(id.to_string())
        .execute(tx.conn())
        .await
        .on_unique("another patient has this CPR number")?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "patient.rectify",
            Some(id),
            Some(&format!("revision:{revision} fields:{}", fields.join(","))),
        )
        .await?;
        let patient = self.patient_in(&mut tx, clinic, id).await?;
        tx.commit().await?;
        Ok(patient)
    }

    /// The revisions of a patient's personal data in a transaction, oldest first.
    pub(crate) async fn revisions_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        id: PatientId,
        staff: &crate::access_log::Staff,
    ) -> Result<Vec<Revision>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, fields, previous_enc FROM patient_revisions
             WHERE clinic_id = $1 AND patient_id = $2 ORDER BY at, id",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let revision = get_uuid(r, "id")?;
                let sealed: Vec<u8> = r.try_get("previous_enc")?;
                let json = self
                    .cipher()
                    .open(&format!("patient_revisions.previous:{revision}"), &sealed)?;
                let previous: PatientData = serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("revision: {e}")))?;
                Ok(Revision {
                    id: revision,
                    at: from_ms(r.try_get("at")?)?,
                    by: staff.accessor(&r.try_get::<String, _>("actor")?),
                    fields: r
                        .try_get::<String, _>("fields")?
                        .split(',')
                        .filter(|f| !f.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    previous,
                })
            })
            .collect()
    }

    /// The rectification history of a patient's personal data, oldest
    /// first, with the replaced values (audited as `patient.history`).
    pub async fn patient_history(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Revision>> {
        let staff = crate::access_log::Staff::from_list(&self.therapists(clinic).await?);
        let mut tx = self.begin().await?;
        self.patient_in(&mut tx, clinic, id).await?;
        let revisions = self.revisions_in(&mut tx, clinic, id, &staff).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "patient.history",
            Some(id),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(revisions)
    }
}

pub(crate) fn opt_patient(r: &sqlx::any::AnyRow, col: &str) -> Result<Option<PatientId>> {
    r.try_get::<Option<String>, _>(col)?
        .map(|s| crate::parse_uuid(&s).map(PatientId::from_uuid))
        .transpose()
}

impl Store {
    /// Gives every patient made before CPR numbers were unique its CPR lookup hash. A patient
    /// whose CPR number an earlier patient already holds is marked as that patient's duplicate
    /// (`duplicate_of`) for an admin to merge. Runs at start-up; returns how many were marked.
    pub(crate) async fn backfill_cpr_lookups(&self) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT id, clinic_id, cpr_enc FROM patients WHERE cpr_enc IS NOT NULL AND cpr_lookup IS NULL
             AND duplicate_of IS NULL AND merged_into IS NULL AND erased_at IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut duplicates = 0;
        let mut tx = self.begin().await?;
        for r in &rows {
            let id = PatientId::from_uuid(get_uuid(r, "id")?);
            let clinic = ClinicId::from_uuid(get_uuid(r, "clinic_id")?);
            let sealed: Vec<u8> = r.try_get("cpr_enc")?;
            let cpr = self.cipher().open(&format!("patients.cpr:{id}"), &sealed)?;
            let lookup = self.cpr_lookup(Some(&cpr)).unwrap_or_default();
            match Self::cpr_holder(&mut tx, clinic, &lookup, Some(id)).await? {
                Some(holder) => {
                    duplicates += 1;
                    sqlx::query("UPDATE patients SET duplicate_of = $1 WHERE id = $2")
                        .bind(holder.to_string())
                        .bind(id.to_string())
                        .execute(tx.conn())
                        .await?;
                }
                None => {
                    sqlx::query("UPDATE patients SET cpr_lookup = $1 WHERE id = $2")
                        .bind(lookup)
                        .bind(id.to_string())
                        .execute(tx.conn())
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(duplicates)
    }

    /// Merges the duplicate `merged` into `into` (an admin's decision, audited for both): the
    /// duplicate's courses, consultations, visits, assessments and billing lines move to `into`;
    /// a line of the duplicate on a Danish day where `into` already has a line is reversed first
    /// (posted today), and any line that now falls on the day of an in-clinic visit is reversed
    /// too, so the merged patient keeps one line per day. The duplicate becomes inactive.
    pub async fn merge_patients(
        &self,
        clinic: ClinicId,
        by: konsult_domain::TherapistId,
        merged: PatientId,
        into: PatientId,
        now: DateTime<Utc>,
    ) -> Result<MergeReport> {
        if merged == into {
            return Err(StoreError::Refused {
                code: "same_patient",
                message: "a patient cannot be merged into itself".into(),
            });
        }
        let actor = Actor::Therapist(by);
        let mut tx = self.begin().await?;
        let dup = self.patient_in(&mut tx, clinic, merged).await?;
        let keep = self.patient_in(&mut tx, clinic, into).await?;
        for p in [&dup, &keep] {
            if p.is_inactive() {
                return Err(StoreError::Refused {
                    code: "patient_inactive",
                    message: format!("patient {} is erased or merged", p.id),
                });
            }
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM consultations WHERE clinic_id = $1 AND patient_id IN ($2, $3)
             AND state IN ('open', 'waiting', 'in_call')",
        )
        .bind(clinic.to_string())
        .bind(merged.to_string())
        .bind(into.to_string())
        .fetch_one(tx.conn())
        .await?;
        if open > 0 {
            return Err(StoreError::Refused {
                code: "call_in_progress",
                message: "merge the patients when no call of theirs is in progress".into(),
            });
        }
        let keep_days: Vec<chrono::NaiveDate> =
            Self::active_lines_of_patient(&mut tx, clinic, into)
                .await?
                .iter()
                .map(|s| s.line.calendar_day)
                .collect();
        let mut reversed = Vec::new();
        for line in Self::active_lines_of_patient(&mut tx, clinic, merged).await? {
            if keep_days.contains(&line.line.calendar_day) {
                Self::reverse_in(
                    &mut tx,
                    clinic,
                    actor,
                    &line,
                    crate::billing::NOTE_MERGE,
                    now,
                )
                .await?;
                self.record_reversal_decision(&mut tx, clinic, &line, "patient_merged", now)
                    .await?;
                reversed.push(line.id);
            }
        }
        let mut moved_records = 0;
        for table in [
            "courses",
            "consultations",
            "visits",
            "assessments",
            "billing_lines",
        ] {
            let done = sqlx::query(&format!(
                "UPDATE {table} SET patient_id = $1 WHERE clinic_id = $2 AND patient_id = $3"
            ))
            .bind(into.to_string())
            .bind(clinic.to_string())
            .bind(merged.to_string())
            .execute(tx.conn())
            .await?;
            if table != "billing_lines" {
                moved_records += done.rows_affected();
            }
        }
        // The duplicate's CPR lookup passes to the patient kept if it has none.
        let dup_lookup: Option<String> =
            sqlx::query_scalar("SELECT cpr_lookup FROM patients WHERE id = $1")
                .bind(merged.to_string())
                .fetch_one(tx.conn())
                .await?;
        sqlx::query(
            "UPDATE patients SET merged_into = $1, duplicate_of = NULL, cpr_lookup = NULL WHERE id = $2",
        )
        .bind(into.to_string())
        .bind(merged.to_string())
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE patients SET cpr_lookup = COALESCE(cpr_lookup, $1), duplicate_of = NULL WHERE id = $2",
        )
        .bind(dup_lookup)
        .bind(into.to_string())
        .execute(tx.conn())
        .await?;
        for visit in self.visits_in(&mut tx, clinic, into).await? {
            for conflict in self
                .apply_visit_in(&mut tx, clinic, actor, &visit, now)
                .await?
            {
                reversed.push(conflict.line);
            }
        }
        for (patient, subject) in [
            (merged, format!("into:{into}")),
            (into, format!("merged:{merged}")),
        ] {
            audit::append(
                &mut tx,
                clinic,
                now,
                actor,
                "patient.merge",
                Some(patient),
                Some(&subject),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(MergeReport {
            into,
            merged,
            reversed,
            moved_records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clinics::NewClinic;
    use crate::crypto::Cipher;
    use crate::therapists::{NewTherapist, Role};
    use konsult_domain::Speciale;

    async fn store_with_clinic(dir: &std::path::Path) -> (Store, ClinicId, Actor) {
        let url = format!("sqlite://{}", dir.join("k.db").display());
        let store = Store::connect(&url, Cipher::from_key(&[7u8; 32]).unwrap())
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let token = store.issue_setup_token(now).await.unwrap().unwrap();
        let (clinic, admin) = store
            .setup_first_clinic(
                &token,
                NewClinic {
                    name: "Klinik".into(),
                    ydernummer: "123456".into(),
                    specialer: vec![Speciale::Almen],
                },
                NewTherapist {
                    name: "Admin".into(),
                    email: "admin@example.org".into(),
                    password_hash: "x".into(),
                    role: Role::Admin,
                },
                now,
            )
            .await
            .unwrap();
        (store, clinic, Actor::Therapist(admin))
    }

    fn data(name: &str, cpr: Option<&str>) -> PatientData {
        PatientData {
            name: name.into(),
            cpr: cpr.map(str::to_owned),
            ..PatientData::default()
        }
    }

    #[tokio::test]
    async fn one_cpr_number_is_one_patient_with_or_without_hyphen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, clinic, actor) = store_with_clinic(dir.path()).await;
        let now = chrono::Utc::now();
        let first = store
            .create_patient(clinic, actor, data("A", Some("010170-1234")), now)
            .await
            .unwrap();
        for cpr in ["010170-1234", "0101701234", "010170 1234"] {
            match store
                .create_patient(clinic, actor, data("B", Some(cpr)), now)
                .await
            {
                Err(StoreError::DuplicatePatient { existing }) => assert_eq!(existing, first.id),
                other => panic!("{cpr}: expected a duplicate, got {other:?}"),
            }
        }
        // Rectifying another patient to the same CPR number is refused too.
        let other = store
            .create_patient(clinic, actor, data("C", None), now)
            .await
            .unwrap();
        assert!(matches!(
            store
                .update_patient(clinic, actor, other.id, data("C", Some("0101701234")), now)
                .await,
            Err(StoreError::DuplicatePatient { existing }) if existing == first.id
        ));
        // An erased patient's CPR number is free again (its lookup is erased with it).
        let by = match actor {
            Actor::Therapist(t) => t,
            _ => unreachable!(),
        };
        store
            .erase_patient(clinic, by, first.id, now)
            .await
            .unwrap();
        store
            .create_patient(clinic, actor, data("A again", Some("010170-1234")), now)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn duplicates_made_before_cpr_numbers_were_unique_are_found_and_merged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, clinic, actor) = store_with_clinic(dir.path()).await;
        let now = chrono::Utc::now();
        let keep = store
            .create_patient(clinic, actor, data("A", Some("010170-1234")), now)
            .await
            .unwrap();
        // Made a second later: the older record is the one kept.
        let dup = store
            .create_patient(
                clinic,
                actor,
                data("A", None),
                now + chrono::Duration::seconds(1),
            )
            .await
            .unwrap();
        // What the database held before this change: the same CPR number,
        // typed without the hyphen, and no lookup hash on either row.
        let sealed = store
            .cipher()
            .seal(&format!("patients.cpr:{}", dup.id), "0101701234");
        sqlx::query("UPDATE patients SET cpr_enc = $1 WHERE id = $2")
            .bind(sealed)
            .bind(dup.id.to_string())
            .execute(&store.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE patients SET cpr_lookup = NULL")
            .execute(&store.pool)
            .await
            .unwrap();

        assert_eq!(store.backfill_cpr_lookups().await.unwrap(), 1);
        let mut tx = store.begin().await.unwrap();
        let marked = store.patient_in(&mut tx, clinic, dup.id).await.unwrap();
        drop(tx);
        assert_eq!(marked.duplicate_of, Some(keep.id));
        // Running again finds nothing new.
        assert_eq!(store.backfill_cpr_lookups().await.unwrap(), 0);

        let by = match actor {
            Actor::Therapist(t) => t,
            _ => unreachable!(),
        };
        let report = store
            .merge_patients(clinic, by, dup.id, keep.id, now)
            .await
            .unwrap();
        assert_eq!(report.into, keep.id);
        let mut tx = store.begin().await.unwrap();
        let merged = store.patient_in(&mut tx, clinic, dup.id).await.unwrap();
        let kept = store.patient_in(&mut tx, clinic, keep.id).await.unwrap();
        drop(tx);
        assert_eq!(merged.merged_into, Some(keep.id));
        assert!(merged.is_inactive());
        assert_eq!(kept.duplicate_of, None);
        // The merged duplicate can no longer get anything new.
        assert!(matches!(
            store.record_visit(clinic, by, dup.id, now, now).await,
            Err(StoreError::Refused {
                code: "patient_inactive",
                ..
            })
        ));
        // Merging again is refused: the duplicate is inactive.
        assert!(store
            .merge_patients(clinic, by, dup.id, keep.id, now)
            .await
            .is_err());
    }
}
