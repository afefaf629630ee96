//! The audit log in words: who read or changed a patient's record, when,
//! in which role, and what — for the patient's right to know who has
//! accessed their electronic record (sundhedsloven § 42 a) — and the
//! period exports of access and login events an admin needs when a breach
//! is suspected (GDPR art. 33).
//!
//! The audit log itself stores ids and action codes only (no personal data
//! in clear); this module resolves staff ids to their (sealed) names and
//! action codes to Danish and English sentences, through one catalogue
//! ([`describe_action`]). A test keeps the catalogue complete: every action
//! the store writes has words.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use konsult_domain::{ClinicId, PatientId, TherapistId};
use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::therapists::Role;
use crate::{from_ms, ms, Result, Store, StoreError};

/// Whether an action read data or changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    /// Looked at data.
    Read,
    /// Created, changed or deleted data.
    Write,
}

/// A text in Danish and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Texts {
    /// Danish.
    pub da: String,
    /// English.
    pub en: String,
}

impl Texts {
    fn new(da: &str, en: &str) -> Self {
        Self {
            da: da.to_owned(),
            en: en.to_owned(),
        }
    }

    /// The text in `lang` (`"en"`, anything else is Danish).
    pub fn get(&self, lang: &str) -> &str {
        if lang == "en" {
            &self.en
        } else {
            &self.da
        }
    }
}

/// What an action code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionText {
    /// Read or write.
    pub kind: AccessKind,
    /// Danish sentence (what the person did).
    pub da: &'static str,
    /// English sentence.
    pub en: &'static str,
}

use AccessKind::{Read, Write};

/// Every action code the store writes to the audit log, with its words.
const ACTIONS: &[(&str, AccessKind, &str, &str)] = &[
    // The patient record.
    (
        "patient.create",
        Write,
        "Oprettede patienten",
        "Created the patient record",
    ),
    (
        "patient.read",
        Read,
        "Så patientens personoplysninger",
        "Viewed the patient's personal details",
    ),
    (
        "patient.list",
        Read,
        "Så patienten i patientlisten",
        "Saw the patient in the patient list",
    ),
    (
        "patient.update",
        Write,
        "Ændrede patientens personoplysninger",
        "Changed the patient's personal details",
    ),
    (
        "patient.rectify",
        Write,
        "Rettede patientens personoplysninger",
        "Corrected the patient's personal details",
    ),
    (
        "patient.history",
        Read,
        "Så rettelseshistorikken for patientens oplysninger",
        "Viewed the correction history of the patient's details",
    ),
    (
        "patient.export",
        Read,
        "Udleverede alle patientens data (indsigt)",
        "Exported all of the patient's data (access request)",
    ),
    (
        "patient.access_log",
        Read,
        "Så, hvem der har haft adgang til patientens oplysninger",
        "Viewed who has accessed the patient's record",
    ),
    (
        "patient.erase",
        Write,
        "Slettede patientens personoplysninger",
        "Erased the patient's personal details",
    ),
    (
        "patient.merge",
        Write,
        "Lagde to registreringer af samme patient sammen",
        "Merged two records of the same patient",
    ),
    // Clinical facts behind eligibility.
    (
        "course.create",
        Write,
        "Åbnede et forløb",
        "Opened a course of treatment",
    ),
    (
        "course.list",
        Read,
        "Så patientens forløb",
        "Viewed the patient's courses of treatment",
    ),
    (
        "visit.create",
        Write,
        "Registrerede et besøg i klinikken",
        "Recorded an in-clinic visit",
    ),
    (
        "visit.list",
        Read,
        "Så patientens besøg i klinikken",
        "Viewed the patient's in-clinic visits",
    ),
    (
        "assessment.create",
        Write,
        "Registrerede en vurdering af video",
        "Recorded an assessment for video",
    ),
    (
        "assessment.revoke",
        Write,
        "Tilbagekaldte en vurdering af video",
        "Revoked an assessment for video",
    ),
    (
        "assessment.list",
        Read,
        "Så vurderingerne af video",
        "Viewed the assessments for video",
    ),
    // Consultations.
    (
        "consultation.refused",
        Read,
        "Forsøgte at planlægge en videokonsultation (afvist)",
        "Tried to schedule a video consultation (refused)",
    ),
    (
        "consultation.create",
        Write,
        "Planlagde en videokonsultation",
        "Scheduled a video consultation",
    ),
    (
        "consultation.read",
        Read,
        "Så en videokonsultation",
        "Viewed a video consultation",
    ),
    (
        "consultation.list",
        Read,
        "Så videokonsultationen i dagsoversigten",
        "Saw the video consultation in the day view",
    ),
    (
        "consultation.safety",
        Write,
        "Registrerede hvor patienten er og et telefonnummer",
        "Recorded where the patient is and a phone number",
    ),
    (
        "patient.consultations",
        Read,
        "Så patientens videokonsultationer",
        "Viewed the patient's video consultations",
    ),
    (
        "consultation.link.read",
        Read,
        "Så patientens mødelink igen",
        "Viewed the patient's join link again",
    ),
    (
        "consultation.safety.read",
        Read,
        "Så hvor patienten var og telefonnummeret",
        "Viewed where the patient was and the phone number",
    ),
    (
        "consultation.complete",
        Write,
        "Skrev journalnotatet og afsluttede konsultationen",
        "Wrote the journal note and completed the consultation",
    ),
    (
        "cancel",
        Write,
        "Aflyste en videokonsultation",
        "Cancelled a video consultation",
    ),
    (
        "mark_no_show",
        Write,
        "Registrerede at patienten ikke kom",
        "Recorded that the patient did not come",
    ),
    (
        "mark_technical_failure",
        Write,
        "Registrerede en teknisk fejl ved samtalen",
        "Recorded a technical failure of the call",
    ),
    (
        "link.reissue",
        Write,
        "Lavede et nyt mødelink",
        "Made a new join link",
    ),
    (
        "link.revoke",
        Write,
        "Tilbagekaldte mødelinket",
        "Revoked the join link",
    ),
    (
        "journal.read",
        Read,
        "Læste et journalnotat",
        "Read a journal note",
    ),
    // Billing.
    (
        "billing.correct",
        Write,
        "Rettede en afregningslinje",
        "Corrected a billing line",
    ),
    (
        "billing.export",
        Read,
        "Eksporterede afregningslinjer",
        "Exported billing lines",
    ),
    (
        "billing.reverse",
        Write,
        "Tilbageførte en afregningslinje",
        "Reversed a billing line",
    ),
    (
        "billing.decide",
        Write,
        "Afgjorde afregningen af en konsultation",
        "Decided the billing of a consultation",
    ),
    (
        "billing.redecide",
        Write,
        "Bad om at få afregningen af en konsultation afgjort igen",
        "Asked for the billing of a consultation to be decided again",
    ),
    (
        "billing.list",
        Read,
        "Så afregningslinjer",
        "Viewed billing lines",
    ),
    // The call, as Konsult recorded it.
    (
        "call.admitted",
        Write,
        "Registrerede at patienten blev lukket ind i videokonsultationen",
        "Recorded that the patient was let into the video consultation",
    ),
    (
        "call.two_way",
        Write,
        "Registrerede at lyd og billede gik begge veje",
        "Recorded that sound and picture went both ways",
    ),
    (
        "call.ended",
        Write,
        "Registrerede at videokonsultationen sluttede",
        "Recorded that the video consultation ended",
    ),
    // The audit log itself.
    (
        "audit.rekeyed",
        Write,
        "Sikrede revisionsloggen med en nøgle",
        "Secured the audit log with a key",
    ),
    // Retention.
    (
        "retention.journal_erased",
        Write,
        "Slettede journalnotater efter opbevaringsperioden",
        "Erased journal notes after the retention period",
    ),
    (
        "retention.billing_deleted",
        Write,
        "Slettede afregningslinjer efter opbevaringsperioden",
        "Deleted billing lines after the retention period",
    ),
    // The clinic (no patient).
    (
        "clinic.create",
        Write,
        "Oprettede klinikken",
        "Created the clinic",
    ),
    (
        "clinic.update",
        Write,
        "Ændrede klinikkens indstillinger",
        "Changed the clinic's settings",
    ),
    (
        "clinic.fee_table",
        Write,
        "Indlæste en honorartabel",
        "Loaded a fee table",
    ),
    (
        "fees.step",
        Write,
        "Registrerede en regulering af honorarerne",
        "Recorded a fee regulation step",
    ),
    (
        "fees.step_removed",
        Write,
        "Fjernede en registreret regulering af honorarerne",
        "Removed a recorded fee regulation step",
    ),
    (
        "clinic.privacy_notice",
        Write,
        "Ændrede klinikkens privatlivsoplysning",
        "Changed the clinic's privacy notice",
    ),
    (
        "therapist.create",
        Write,
        "Oprettede en brugerkonto",
        "Created a user account",
    ),
    (
        "therapist.password_change",
        Write,
        "Skiftede sin adgangskode (andre logins afsluttet)",
        "Changed their own password (other logins ended)",
    ),
    (
        "therapist.password_reset",
        Write,
        "Satte en ny adgangskode for en brugerkonto (dens logins afsluttet)",
        "Set a new password for a user account (its logins ended)",
    ),
    (
        "therapist.deactivate",
        Write,
        "Deaktiverede en brugerkonto (dens logins afsluttet)",
        "Deactivated a user account (its logins ended)",
    ),
    (
        "therapist.reactivate",
        Write,
        "Genaktiverede en brugerkonto",
        "Reactivated a user account",
    ),
    (
        "therapist.sessions_revoked",
        Write,
        "Loggede ud alle steder",
        "Logged out everywhere",
    ),
    (
        "clinic.create_by_operator",
        Write,
        "Driften oprettede klinikken (kommandolinjen)",
        "The operator created the clinic (command line)",
    ),
    (
        "clinic.first_admin",
        Write,
        "Oprettede klinikkens første administrator med opsætningslinket",
        "Created the clinic's first administrator with the setup link",
    ),
    (
        "security.export",
        Read,
        "Eksporterede adgangs- og login-log",
        "Exported the access and login log",
    ),
];

/// The words of an action code, or `None` for a code without any.
pub fn describe_action(code: &str) -> Option<ActionText> {
    ACTIONS
        .iter()
        .find(|(c, ..)| *c == code)
        .map(|&(_, kind, da, en)| ActionText { kind, da, en })
}

/// Who did something, as a person reading the log understands it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accessor {
    /// `admin`, `therapist`, `patient` (through the join link) or `system`.
    pub role: &'static str,
    /// The staff member's name; `None` for the patient and for Konsult.
    pub name: Option<String>,
    /// The staff account's id, when it was one.
    pub account: Option<uuid::Uuid>,
    /// The role in words.
    pub role_text: Texts,
}

impl Accessor {
    /// The name, or the role in words when there is no name.
    pub fn who(&self, lang: &str) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => self.role_text.get(lang).to_owned(),
        }
    }
}

/// One line of a patient's access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// Position in the clinic's audit chain.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who, in which role.
    pub who: Accessor,
    /// The stored action code, e.g. `journal.read`.
    pub action: String,
    /// Read or write.
    pub kind: AccessKind,
    /// What was done, in words.
    pub what: Texts,
    /// The record acted on (a consultation, course, … id), when there is one.
    pub subject: Option<String>,
}

/// A patient's access log.
#[derive(Debug, Clone, Serialize)]
pub struct PatientAccessLog {
    /// Whose.
    pub patient: PatientId,
    /// The patient's pseudonym (for file names and hand-over).
    pub pseudonym: String,
    /// The entries, oldest first.
    pub entries: Vec<AccessEntry>,
}

/// One line of the clinic-wide access export: an access entry and, when it
/// concerns a patient, which one (id and pseudonym; never the name).
#[derive(Debug, Clone, Serialize)]
pub struct ClinicAccessEntry {
    /// The entry.
    #[serde(flatten)]
    pub entry: AccessEntry,
    /// The patient's id.
    pub patient: Option<uuid::Uuid>,
    /// The patient's pseudonym.
    pub patient_ref: Option<String>,
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginOutcome {
    /// Logged in.
    Success,
    /// Wrong password for an existing account.
    Failure,
    /// Refused without checking: too many failures in a short time.
    Throttled,
    /// Logged out.
    Logout,
}

impl LoginOutcome {
    /// The stored code: `success`, `failure`, `throttled`, `logout`.
    pub fn code(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::Failure => "failure",
            LoginOutcome::Throttled => "throttled",
            LoginOutcome::Logout => "logout",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "success" => LoginOutcome::Success,
            "failure" => LoginOutcome::Failure,
            "throttled" => LoginOutcome::Throttled,
            "logout" => LoginOutcome::Logout,
            other => return Err(StoreError::Corrupt(format!("login outcome {other:?}"))),
        })
    }
}

/// One login event.
#[derive(Debug, Clone, Serialize)]
pub struct LoginEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// Whose account.
    pub who: Accessor,
    /// How it ended.
    pub outcome: LoginOutcome,
}

/// Everything an admin hands to whoever investigates a suspected breach:
/// every access to personal data and every login of a period.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityExport {
    /// Start of the period (inclusive).
    pub from: DateTime<Utc>,
    /// End of the period (exclusive).
    pub to: DateTime<Utc>,
    /// Audit entries of the period, oldest first.
    pub access: Vec<ClinicAccessEntry>,
    /// Login events of the period, oldest first.
    pub logins: Vec<LoginEvent>,
}

fn role_texts(role: &'static str) -> Texts {
    match role {
        "admin" => Texts::new("Klinikadministrator", "Clinic administrator"),
        "therapist" => Texts::new("Fysioterapeut", "Physiotherapist"),
        "secretary" => Texts::new("Sekretær", "Secretary"),
        "patient" => Texts::new(
            "Patienten selv (via mødelinket)",
            "The patient (through the join link)",
        ),
        _ => Texts::new("Konsult (automatisk)", "Konsult (automatic)"),
    }
}

/// The clinic's staff by id: name and role.
pub(crate) struct Staff(HashMap<TherapistId, (String, Role)>);

impl Staff {
    /// From the clinic's accounts.
    pub(crate) fn from_list(list: &[crate::therapists::Therapist]) -> Self {
        Staff(
            list.iter()
                .map(|t| (t.id, (t.name.clone(), t.role)))
                .collect(),
        )
    }

    /// Who a stored actor is.
    pub(crate) fn accessor(&self, stored: &str) -> Accessor {
        match Actor::parse(stored) {
            Some(Actor::Therapist(id)) => match self.0.get(&id) {
                Some((name, role)) => {
                    let role = role.code();
                    Accessor {
                        role,
                        name: Some(name.clone()),
                        account: Some(id.as_uuid()),
                        role_text: role_texts(role),
                    }
                }
                None => Accessor {
                    role: "therapist",
                    name: None,
                    account: Some(id.as_uuid()),
                    role_text: Texts::new("Ukendt konto", "Unknown account"),
                },
            },
            Some(Actor::PatientLink(_)) => Accessor {
                role: "patient",
                name: None,
                account: None,
                role_text: role_texts("patient"),
            },
            Some(Actor::System) | None => Accessor {
                role: "system",
                name: None,
                account: None,
                role_text: role_texts("system"),
            },
        }
    }
}

fn entry(staff: &Staff, r: &sqlx::any::AnyRow) -> Result<AccessEntry> {
    let action: String = r.try_get("action")?;
    let (kind, what) = match describe_action(&action) {
        Some(text) => (text.kind, Texts::new(text.da, text.en)),
        // Never hide an entry for want of words: show its code.
        None => (AccessKind::Read, Texts::new(&action, &action)),
    };
    Ok(AccessEntry {
        seq: r.try_get("seq")?,
        at: from_ms(r.try_get("at")?)?,
        who: staff.accessor(&r.try_get::<String, _>("actor")?),
        action,
        kind,
        what,
        subject: r.try_get("subject")?,
    })
}

impl Store {
    async fn staff(&self, clinic: ClinicId) -> Result<Staff> {
        Ok(Staff::from_list(&self.therapists(clinic).await?))
    }

    /// Every entry of the audit log about one patient, in words, oldest
    /// first (read inside the caller's transaction).
    pub(crate) async fn access_entries_in(
        &self,
        tx: &mut crate::Tx,
        clinic: ClinicId,
        patient: PatientId,
    ) -> Result<Vec<AccessEntry>> {
        let staff = self.staff(clinic).await?;
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject FROM audit_log
             WHERE clinic_id = $1 AND patient_id = $2 ORDER BY seq",
        )
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter().map(|r| entry(&staff, r)).collect()
    }

    /// The patient's access log (sundhedsloven § 42 a): who has read or
    /// changed their record, when, in which role and what, with staff by
    /// name. Reading it is itself audited (`patient.access_log`), after the
    /// entries are read, so the log shows who looked before this reader.
    pub async fn access_log(
        &self,
        clinic: ClinicId,
        actor: Actor,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<PatientAccessLog> {
        let mut tx = self.begin().await?;
        // Also for an erased patient: the log outlives the personal data.
        let pseudonym = self.patient_in(&mut tx, clinic, patient).await?.pseudonym;
        let entries = self.access_entries_in(&mut tx, clinic, patient).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "patient.access_log",
            Some(patient),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(PatientAccessLog {
            patient,
            pseudonym,
            entries,
        })
    }

    /// Records a login event of an account (no address, no client details).
    pub async fn record_login(
        &self,
        clinic: ClinicId,
        therapist: TherapistId,
        outcome: LoginOutcome,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO login_events (clinic_id, therapist_id, at, outcome) VALUES ($1, $2, $3, $4)",
        )
        .bind(clinic.to_string())
        .bind(therapist.to_string())
        .bind(ms(at))
        .bind(outcome.code())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Every access to personal data and every login of `[from, to)`, for
    /// a breach investigation; the export itself is audited.
    pub async fn security_export(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<SecurityExport> {
        let staff = self.staff(clinic).await?;
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT a.seq, a.at, a.actor, a.action, a.subject, a.patient_id, p.pseudonym
             FROM audit_log a LEFT JOIN patients p ON p.id = a.patient_id
             WHERE a.clinic_id = $1 AND a.at >= $2 AND a.at < $3 ORDER BY a.seq",
        )
        .bind(clinic.to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(tx.conn())
        .await?;
        let access = rows
            .iter()
            .map(|r| {
                Ok(ClinicAccessEntry {
                    entry: entry(&staff, r)?,
                    patient: r
                        .try_get::<Option<String>, _>("patient_id")?
                        .map(|p| crate::parse_uuid(&p))
                        .transpose()?,
                    patient_ref: r.try_get("pseudonym")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT therapist_id, at, outcome FROM login_events
             WHERE clinic_id = $1 AND at >= $2 AND at < $3 ORDER BY at, id",
        )
        .bind(clinic.to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(tx.conn())
        .await?;
        let logins = rows
            .iter()
            .map(|r| {
                let account: String = r.try_get("therapist_id")?;
                Ok(LoginEvent {
                    at: from_ms(r.try_get("at")?)?,
                    who: staff.accessor(&format!("therapist:{account}")),
                    outcome: LoginOutcome::parse(&r.try_get::<String, _>("outcome")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "security.export",
            None,
            Some(&format!("{}..{}", from.to_rfc3339(), to.to_rfc3339())),
        )
        .await?;
        tx.commit().await?;
        Ok(SecurityExport {
            from,
            to,
            access,
            logins,
        })
    }

    /// How many distinct patients `actor` opened one by one (details,
    /// journal notes, safety confirmations, exports) since `since`: the
    /// measure behind the unusual-access alert. Lists are not counted.
    pub async fn patients_opened_since(
        &self,
        clinic: ClinicId,
        actor: Actor,
        since: DateTime<Utc>,
    ) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT patient_id) FROM audit_log
             WHERE clinic_id = $1 AND actor = $2 AND at >= $3 AND patient_id IS NOT NULL
             AND action IN ('patient.read', 'journal.read', 'consultation.safety.read', 'patient.export', 'patient.history')",
        )
        .bind(clinic.to_string())
        .bind(actor.as_stored())
        .bind(ms(since))
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first string literal of every `audit::append(…)` call in the
    /// store's sources: the action codes written as literals.
    fn literal_actions() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Calls only: lines that start with the call (not comments,
            // not this test's own strings).
            let starts = text.match_indices('\n').map(|(i, _)| i + 1);
            for i in std::iter::once(0).chain(starts) {
                let line = &text[i..];
                let indent = line.len() - line.trim_start().len();
                if !line[indent..].starts_with("audit::append(") {
                    continue;
                }
                let call = &line[indent..];
                let end = call.find(".await").unwrap_or(call.len());
                let call = &call[..end];
                if let Some(start) = call.find('"') {
                    let rest = &call[start + 1..];
                    let action = &rest[..rest.find('"').unwrap()];
                    found.push((path.display().to_string(), action.to_owned()));
                }
            }
        }
        found
    }

    #[test]
    fn every_audited_action_has_words() {
        let actions = literal_actions();
        assert!(actions.len() > 30, "found only {actions:?}");
        for (file, action) in &actions {
            assert!(
                describe_action(action).is_some(),
                "{file} audits {action:?}, which has no words in the access log"
            );
        }
        // `close_without_call` audits the lifecycle event's code.
        use konsult_domain::ConsultationEvent as E;
        for event in [E::Cancel, E::MarkNoShow, E::MarkTechnicalFailure] {
            assert!(describe_action(event.code()).is_some(), "{}", event.code());
        }
        // Every code is listed once, with both languages.
        for (i, (code, _, da, en)) in ACTIONS.iter().enumerate() {
            assert!(!da.is_empty() && !en.is_empty() && da != en, "{code}");
            assert!(
                ACTIONS[i + 1..].iter().all(|(c, ..)| c != code),
                "{code} twice"
            );
        }
    }

    #[test]
    fn actors_read_back_as_people_and_roles() {
        let id = TherapistId::from_uuid(uuid::Uuid::new_v4());
        let staff = Staff(HashMap::from([(
            id,
            ("Mette Fysio".to_owned(), Role::Admin),
        )]));
        let mette = staff.accessor(&Actor::Therapist(id).as_stored());
        assert_eq!(mette.who("da"), "Mette Fysio");
        assert_eq!(mette.role, "admin");
        assert_eq!(mette.role_text.en, "Clinic administrator");
        let link = konsult_domain::ConsultationId::from_uuid(uuid::Uuid::new_v4());
        let patient = staff.accessor(&Actor::PatientLink(link).as_stored());
        assert_eq!(patient.role, "patient");
        assert_eq!(patient.who("en"), "The patient (through the join link)");
        assert_eq!(staff.accessor("system").role, "system");
        assert_eq!(staff.accessor("garbage").role, "system");
    }
}
