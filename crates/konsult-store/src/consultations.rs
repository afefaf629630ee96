//! Consultations: scheduling behind the eligibility gate, join links, the
//! call's lifecycle events, and completion with its billing decision.

use chrono::{DateTime, Duration, Utc};
use konsult_domain::{
    eligibility, BillingDecision, BillingLineId, CallFacts, ClinicId, ConsultationEvent,
    ConsultationId, ConsultationState, CourseId, Effects, Eligibility, EndReason, Evidence,
    EvidencePolicy, Failure, InClinicVisit, JournalNote, PatientId, Speciale, TherapistId, VisitId,
};

/// The events of a consultation's call: the domain's one name table.
pub use konsult_domain::CallEvent;
use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::clinical::ASSESSMENT_COLUMNS;
use crate::crypto::{new_token, token_hash};
use crate::therapists::{Session, SessionKey};
use crate::{from_ms, get_flag, get_uuid, ms, opt_from_ms, Result, Store, StoreError, Tx};

/// A consultation to schedule.
#[derive(Debug, Clone)]
pub struct NewConsultation {
    /// Patient.
    pub patient: PatientId,
    /// The course it belongs to.
    pub course: CourseId,
    /// The therapist who runs it.
    pub therapist: TherapistId,
    /// Scheduled start.
    pub start: DateTime<Utc>,
    /// Planned length in minutes.
    pub length_minutes: u32,
    /// Force relay-only ICE for this consultation.
    pub relay_only: bool,
    /// Schedule it even if the patient has another open consultation at an
    /// overlapping time (otherwise refused: `overlapping_consultation`).
    pub allow_overlap: bool,
}

/// When a consultation's join link works, relative to its schedule.
#[derive(Debug, Clone, Copy)]
pub struct LinkWindow {
    /// How long before the start the link opens (15 minutes by default).
    pub opens_before: Duration,
    /// How long after the scheduled end it still works.
    pub closes_after_end: Duration,
}

impl LinkWindow {
    fn bounds(&self, start: DateTime<Utc>, length_minutes: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            start - self.opens_before,
            start + Duration::minutes(i64::from(length_minutes)) + self.closes_after_end,
        )
    }
}

/// A consultation as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Consultation {
    /// Id.
    pub id: ConsultationId,
    /// Patient.
    pub patient: PatientId,
    /// Course.
    pub course: CourseId,
    /// Speciale of the course.
    pub speciale: Speciale,
    /// Therapist.
    pub therapist: TherapistId,
    /// Scheduled start.
    pub scheduled_start: DateTime<Utc>,
    /// Planned length.
    pub length_minutes: u32,
    /// Lifecycle state.
    pub state: ConsultationState,
    /// Relay-only ICE.
    pub relay_only: bool,
    /// When the patient was first admitted (the actual start).
    pub started_at: Option<DateTime<Utc>>,
    /// When two-way media was first established.
    pub two_way_at: Option<DateTime<Utc>>,
    /// The strongest evidence of two-way media so far.
    pub two_way_evidence: Option<Evidence>,
    /// When the call ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// When the journal note was written.
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a signaling hello reads of its consultation
/// ([`Store::patient_hello`], [`Store::therapist_hello`]).
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The consultation.
    pub consultation: Consultation,
    /// Its clinic's evidence policy.
    pub evidence_policy: EvidencePolicy,
}

/// What a therapist's hello reads ([`Store::therapist_hello`]): the login
/// session, if any, and the call context of the consultation asked for in
/// the session's clinic, if it has one.
pub type TherapistHello = Option<(Session, Option<CallContext>)>;

/// What a patient's hello reads ([`Store::patient_hello`]).
#[derive(Debug, Clone)]
pub struct PatientHello {
    /// The join link's status.
    pub link: LinkStatus,
    /// For a valid link: the call context and the eligibility gate's
    /// answer (the failed criteria) at the hello.
    pub call: Option<(CallContext, std::result::Result<(), Vec<Failure>>)>,
}

/// A join link as handed out (the token exists only here and in the link).
#[derive(Debug, Clone, Serialize)]
pub struct IssuedLink {
    /// The bearer token for `/join/<token>`.
    pub token: String,
    /// When it starts to work.
    pub opens_at: DateTime<Utc>,
    /// When it stops working.
    pub closes_at: DateTime<Utc>,
}

/// The answer to scheduling.
#[derive(Debug, Clone)]
pub enum ScheduleOutcome {
    /// Scheduled, with its join link.
    Scheduled {
        /// The consultation.
        consultation: Consultation,
        /// Its link.
        link: IssuedLink,
    },
    /// Refused by the eligibility gate; nothing was stored.
    NotEligible(Vec<Failure>),
}

/// What a join link leads to right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// Works now.
    Valid {
        /// Clinic.
        clinic: ClinicId,
        /// Consultation.
        consultation: ConsultationId,
        /// When it stops working.
        closes_at: DateTime<Utc>,
        /// The link's opaque reference ([`link_ref`]), to end its
        /// connections when it is revoked.
        link: String,
    },
    /// Not open yet.
    NotYetOpen {
        /// Clinic.
        clinic: ClinicId,
        /// Consultation.
        consultation: ConsultationId,
        /// When it opens.
        opens_at: DateTime<Utc>,
    },
    /// Its window has passed, or its consultation was closed without a call
    /// (cancelled, no-show, technical failure).
    Expired,
    /// Its consultation's call has ended (the therapist ended it, or it was
    /// completed).
    Ended,
    /// Revoked by the clinic (a newer link may exist).
    Revoked,
    /// No such link.
    Unknown,
}

/// The opaque reference of a join link: the first 16 hex digits of its
/// token hash. Names the link to signaling and relay (to end its
/// connections when it is revoked) without being a bearer credential.
pub fn link_ref(token_hash: &str) -> String {
    token_hash.chars().take(16).collect()
}

/// A join link's status at `now`, from a row with the link's columns and
/// its consultation's `state`.
/// A patient's hello from its link's rows ([`Store::patient_hellos`]):
/// none for an unknown link.
fn patient_hello_of(rows: &[sqlx::any::AnyRow], now: DateTime<Utc>) -> Result<PatientHello> {
    let Some(r) = rows.first() else {
        return Ok(PatientHello {
            link: LinkStatus::Unknown,
            call: None,
        });
    };
    let link = link_status_of(r, now)?;
    if !matches!(link, LinkStatus::Valid { .. }) {
        return Ok(PatientHello { link, call: None });
    }
    crate::clinical::refuse_inactive(
        r.try_get::<Option<i64>, _>("patient_erased_at")?.is_some(),
        crate::patients::opt_patient(r, "patient_merged_into")?,
    )?;
    let context = CallContext {
        consultation: consultation_from_row(r)?,
        evidence_policy: crate::clinics::evidence_policy_of(r)?,
    };
    let patient = context.consultation.patient;
    let first_visit = match r.try_get::<Option<String>, _>("first_visit_id")? {
        None => None,
        Some(id) => Some(InClinicVisit {
            id: VisitId::from_uuid(crate::parse_uuid(&id)?),
            patient,
            at: from_ms(r.try_get("first_visit_at")?)?,
        }),
    };
    let mut assessments = Vec::with_capacity(rows.len());
    for r in rows {
        if r.try_get::<Option<String>, _>("a_id")?.is_some() {
            assessments.push(crate::clinical::assessment_of_row(r)?);
        }
    }
    let eligibility = match eligibility(first_visit.as_slice(), &assessments, now) {
        Eligibility::Eligible => Ok(()),
        Eligibility::NotEligible(failures) => Err(failures),
    };
    Ok(PatientHello {
        link,
        call: Some((context, eligibility)),
    })
}

/// A therapist's hello from its row ([`Store::therapist_hellos`]).
fn therapist_hello_of(
    key: SessionKey,
    r: &sqlx::any::AnyRow,
) -> Result<(Session, Option<CallContext>)> {
    let session = Session::of_row(key, r)?;
    // Another clinic's consultation is as absent as none.
    let context = match r.try_get::<Option<String>, _>("id")? {
        None => None,
        Some(_) => Some(CallContext {
            consultation: consultation_from_row(r)?,
            evidence_policy: crate::clinics::evidence_policy_of(r)?,
        }),
    };
    Ok((session, context))
}

fn link_status_of(r: &sqlx::any::AnyRow, now: DateTime<Utc>) -> Result<LinkStatus> {
    let state: ConsultationState = state_of(r)?;
    // A consultation that is over shows as such to the patient, even
    // though its links were also revoked when it closed.
    if matches!(
        state,
        ConsultationState::Ended | ConsultationState::Completed
    ) {
        return Ok(LinkStatus::Ended);
    }
    if state.is_over() {
        return Ok(LinkStatus::Expired);
    }
    if r.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
        return Ok(LinkStatus::Revoked);
    }
    let consultation = ConsultationId::from_uuid(get_uuid(r, "consultation_id")?);
    let clinic = ClinicId::from_uuid(get_uuid(r, "clinic_id")?);
    let opens_at = from_ms(r.try_get("opens_at")?)?;
    let closes_at = from_ms(r.try_get("closes_at")?)?;
    if now >= closes_at || state.is_final() || state == ConsultationState::Ended {
        return Ok(LinkStatus::Expired);
    }
    if now < opens_at {
        return Ok(LinkStatus::NotYetOpen {
            clinic,
            consultation,
            opens_at,
        });
    }
    Ok(LinkStatus::Valid {
        clinic,
        consultation,
        closes_at,
        link: link_ref(&r.try_get::<String, _>("token_hash")?),
    })
}

/// What to do with a signaling room's saved record in a call write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomWrite<'a> {
    /// Leave it as it is.
    Keep,
    /// Save this record (JSON).
    Save(&'a str),
    /// The room is gone: delete it.
    Delete,
}

/// The result of a committed call write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallWrite {
    /// The consultation's state after it.
    pub state: ConsultationState,
    /// What the owner must do now (end connections, close the relay).
    pub effects: Effects,
}

/// One write of [`Store::write_calls`]: what [`Store::write_call`] takes.
#[derive(Debug, Clone, Copy)]
pub struct CallWriteRequest<'a> {
    /// The consultation's clinic.
    pub clinic: ClinicId,
    /// The consultation.
    pub id: ConsultationId,
    /// What signaling saw, in order.
    pub events: &'a [CallEvent],
    /// The room's record.
    pub room: RoomWrite<'a>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A signaling room saved before a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRoom {
    /// The clinic.
    pub clinic: ClinicId,
    /// The consultation.
    pub consultation: ConsultationId,
    /// The record (JSON, `konsult_signal::RoomRecord`).
    pub record: String,
}

/// The therapist's patient-safety confirmation at the start of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SafetyConfirmation {
    /// Where the patient is during the call.
    pub patient_location: String,
    /// A phone number to call if the video connection drops.
    pub callback_phone: String,
}

/// How a consultation was closed without a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    /// Cancelled.
    Cancel,
    /// The patient did not come.
    NoShow,
    /// The call failed technically.
    TechnicalFailure,
}

/// The result of completing a consultation.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// The billing decision.
    pub decision: BillingDecision,
    /// The stored line's id, when billable.
    pub line_id: Option<BillingLineId>,
    /// True when this consultation had been completed before and this is
    /// the first result again.
    pub repeated: bool,
}

/// A sealed JSON document kept on a consultation row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SealedDoc {
    /// The journal note (`journal_enc`).
    Journal,
    /// The patient-safety confirmation (`safety_enc`).
    Safety,
}

impl SealedDoc {
    fn column(self) -> &'static str {
        match self {
            SealedDoc::Journal => "journal_enc",
            SealedDoc::Safety => "safety_enc",
        }
    }

    /// The associated data a value of this document is sealed to.
    fn place(self, id: ConsultationId) -> String {
        match self {
            SealedDoc::Journal => format!("consultations.journal:{id}"),
            SealedDoc::Safety => format!("consultations.safety:{id}"),
        }
    }
}

/// The associated data a join link's sealed token is bound to.
fn link_place(token_hash: &str) -> String {
    format!("join_links.token:{token_hash}")
}

impl Store {
    /// Seals `value` as JSON for the consultation's `doc` column.
    pub(crate) fn seal_doc<T: Serialize>(
        &self,
        doc: SealedDoc,
        id: ConsultationId,
        value: &T,
    ) -> Vec<u8> {
        let json = serde_json::to_string(value).expect("documents serialise");
        self.cipher().seal(&doc.place(id), &json)
    }

    /// Opens the consultation's `doc`, if it has one.
    pub(crate) async fn open_doc<T: serde::de::DeserializeOwned>(
        &self,
        tx: &mut Tx,
        doc: SealedDoc,
        id: ConsultationId,
    ) -> Result<Option<T>> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(&format!(
            "SELECT {} FROM consultations WHERE id = $1",
            doc.column()
        ))
        .bind(id.to_string())
        .fetch_one(tx.conn())
        .await?;
        self.cipher()
            .open_opt(&doc.place(id), sealed.as_deref())?
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", doc.column())))
            })
            .transpose()
    }
}

/// How long a day-view listing of a patient stays audited for one viewer:
/// the list is reloaded on every change, and the access log should say
/// "saw the consultation in the day view" once per working day, not once
/// per reload.
pub const LIST_AUDIT_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(12);

const CONSULTATION_COLUMNS: &str =
    "c.id, c.patient_id, c.course_id, c.therapist_id, c.scheduled_start, c.length_minutes,
    c.state, c.relay_only, c.started_at, c.two_way_at, c.two_way_evidence, c.ended_at, c.completed_at,
    co.speciale";

/// The `state` column of a consultation row.
fn state_of(r: &sqlx::any::AnyRow) -> Result<ConsultationState> {
    let state: String = r.try_get("state")?;
    state
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("state {state:?}")))
}

fn consultation_from_row(r: &sqlx::any::AnyRow) -> Result<Consultation> {
    Ok(Consultation {
        id: ConsultationId::from_uuid(get_uuid(r, "id")?),
        patient: PatientId::from_uuid(get_uuid(r, "patient_id")?),
        course: CourseId::from_uuid(get_uuid(r, "course_id")?),
        therapist: TherapistId::from_uuid(get_uuid(r, "therapist_id")?),
        speciale: crate::get_speciale(r, "speciale")?,
        scheduled_start: from_ms(r.try_get("scheduled_start")?)?,
        length_minutes: u32::try_from(r.try_get::<i64, _>("length_minutes")?)
            .map_err(|_| StoreError::Corrupt("length".into()))?,
        state: state_of(r)?,
        relay_only: get_flag(r, "relay_only")?,
        started_at: opt_from_ms(r.try_get("started_at")?)?,
        two_way_at: opt_from_ms(r.try_get("two_way_at")?)?,
        two_way_evidence: r
            .try_get::<Option<String>, _>("two_way_evidence")?
            .map(|code| {
                Evidence::from_code(&code)
                    .ok_or_else(|| StoreError::Corrupt(format!("evidence {code:?}")))
            })
            .transpose()?,
        ended_at: opt_from_ms(r.try_get("ended_at")?)?,
        completed_at: opt_from_ms(r.try_get("completed_at")?)?,
    })
}

impl Consultation {
    /// What the lifecycle knows of the consultation's call.
    pub fn call_facts(&self) -> CallFacts {
        CallFacts {
            state: self.state,
            started: self.started_at.is_some(),
            two_way: self.two_way_evidence,
            ended: self.ended_at.is_some(),
        }
    }
}

pub(crate) fn is_retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation())
}

impl Store {
    pub(crate) async fn consultation_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        id: ConsultationId,
    ) -> Result<Consultation> {
        let row = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS} FROM consultations c JOIN courses co ON co.id = c.course_id
             WHERE c.clinic_id = $1 AND c.id = $2"
        ))
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound("consultation"))?;
        consultation_from_row(&row)
    }

    /// The eligibility gate's answer for the patient's course at `at`, from
    /// the stored in-clinic visits and assessments.
    async fn eligibility_in(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        patient: PatientId,
        course: CourseId,
        at: DateTime<Utc>,
    ) -> Result<Eligibility> {
        let visits = self.visits_in(tx, clinic, patient).await?;
        let assessments = self.assessments_in(tx, clinic, course).await?;
        Ok(eligibility(&visits, &assessments, at))
    }

    /// Schedules a consultation if the patient is eligible at its start, and
    /// issues its join link. Refusals name every failed criterion.
    pub async fn schedule(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        new: NewConsultation,
        window: LinkWindow,
        now: DateTime<Utc>,
    ) -> Result<ScheduleOutcome> {
        let mut tx = self.begin().await?;
        // An erased or merged patient is refused as such, before their (moved) courses.
        self.require_patient(&mut tx, clinic, new.patient).await?;
        let course = self.course_in(&mut tx, clinic, new.course).await?;
        if course.patient != new.patient {
            return Err(StoreError::NotFound("course"));
        }
        // The therapist must belong to the clinic.
        self.therapist(clinic, new.therapist).await?;
        let clinic_row = Self::clinic_in(&mut tx, clinic).await?;
        if !clinic_row.specialer.contains(&course.speciale) {
            return Err(StoreError::Refused {
                code: "speciale_not_offered",
                message: format!(
                    "the clinic no longer works under speciale {}, the course's speciale",
                    course.speciale
                ),
            });
        }
        let relay_only = clinic_row.relay_only(new.relay_only);
        if !new.allow_overlap {
            self.refuse_overlap(&mut tx, clinic, &new).await?;
        }
        let actor = Actor::Therapist(by);
        if let Eligibility::NotEligible(failures) = self
            .eligibility_in(&mut tx, clinic, new.patient, new.course, new.start)
            .await?
        {
            audit::append(
                &mut tx,
                clinic,
                now,
                actor,
                "consultation.refused",
                Some(new.patient),
                None,
            )
            .await?;
            tx.commit().await?;
            return Ok(ScheduleOutcome::NotEligible(failures));
        }
        let id = ConsultationId::from_uuid(uuid::Uuid::new_v4());
        tx.touch(clinic);
        sqlx::query(
            "INSERT INTO consultations (id, clinic_id, patient_id, course_id, therapist_id, scheduled_start,
                length_minutes, state, relay_only, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(new.patient.to_string())
        .bind(new.course.to_string())
        .bind(new.therapist.to_string())
        .bind(ms(new.start))
        .bind(i64::from(new.length_minutes))
        .bind(ConsultationState::Scheduled.code())
        .bind(i64::from(relay_only))
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
        let link = Self::insert_link(
            &mut tx,
            clinic,
            id,
            window.bounds(new.start, new.length_minutes),
            now,
        )
        .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "consultation.create",
            Some(new.patient),
            Some(&id.to_string()),
        )
        .await?;
        let consultation = self.consultation_in(&mut tx, clinic, id).await?;
        tx.commit().await?;
        Ok(ScheduleOutcome::Scheduled { consultation, link })
    }

    /// Refuses `new` when the patient has another consultation that is not
    /// over at an overlapping time (a second press of "Planlæg" made two).
    /// The patient's row is locked first on PostgreSQL, so two schedules at
    /// once cannot both pass (SQLite has one writer anyway).
    async fn refuse_overlap(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        new: &NewConsultation,
    ) -> Result<()> {
        if self.backend == crate::Backend::Postgres {
            sqlx::query("SELECT id FROM patients WHERE id = $1 FOR UPDATE")
                .bind(new.patient.to_string())
                .execute(tx.conn())
                .await?;
        }
        let start = ms(new.start);
        let end = ms(new.start + Duration::minutes(i64::from(new.length_minutes)));
        let other: Option<i64> = sqlx::query_scalar(
            "SELECT scheduled_start FROM consultations
             WHERE clinic_id = $1 AND patient_id = $2
               AND state NOT IN ('ended', 'completed', 'cancelled', 'no_show', 'technical_failure')
               AND scheduled_start < $3 AND scheduled_start + length_minutes * 60000 > $4
             ORDER BY scheduled_start LIMIT 1",
        )
        .bind(clinic.to_string())
        .bind(new.patient.to_string())
        .bind(end)
        .bind(start)
        .fetch_optional(tx.conn())
        .await?;
        match other {
            None => Ok(()),
            Some(at) => Err(StoreError::Refused {
                code: "overlapping_consultation",
                message: format!(
                    "the patient already has a consultation at {} (UTC) that overlaps; schedule it anyway with allow_overlap",
                    from_ms(at)?.format("%Y-%m-%d %H:%M")
                ),
            }),
        }
    }

    /// The consultation and its join link that works now or will, to show
    /// or send again (audited as `consultation.link.read`); `None` when it
    /// has none (closed, revoked, or issued before links were kept).
    pub async fn current_link(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Option<(Consultation, IssuedLink)>> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let row = sqlx::query(
            "SELECT token_hash, token_enc, opens_at, closes_at FROM join_links
             WHERE consultation_id = $1 AND clinic_id = $2 AND revoked_at IS NULL
               AND closes_at > $3 AND token_enc IS NOT NULL
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(ms(now))
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let hash: String = row.try_get("token_hash")?;
        let sealed: Vec<u8> = row.try_get("token_enc")?;
        let token = tx
            .cipher()
            .open(&link_place(&hash), &sealed)
            .map_err(|e| StoreError::Corrupt(format!("join link: {e}")))?;
        let link = IssuedLink {
            token,
            opens_at: from_ms(row.try_get("opens_at")?)?,
            closes_at: from_ms(row.try_get("closes_at")?)?,
        };
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "consultation.link.read",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok(Some((c, link)))
    }

    async fn insert_link(
        tx: &mut Tx,
        clinic: ClinicId,
        consultation: ConsultationId,
        (opens_at, closes_at): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> Result<IssuedLink> {
        let token = new_token();
        let hash = token_hash(&token);
        let sealed = tx.cipher().seal(&link_place(&hash), &token);
        sqlx::query(
            "INSERT INTO join_links (token_hash, consultation_id, clinic_id, opens_at, closes_at, created_at, token_enc)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&hash)
        .bind(consultation.to_string())
        .bind(clinic.to_string())
        .bind(ms(opens_at))
        .bind(ms(closes_at))
        .bind(ms(now))
        .bind(sealed)
        .execute(tx.conn())
        .await?;
        Ok(IssuedLink {
            token,
            opens_at,
            closes_at,
        })
    }

    /// Revokes the consultation's links and issues a new one. Returns it and
    /// the [`link_ref`]s of the revoked links (to end their connections).
    pub async fn reissue_link(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        window: LinkWindow,
        now: DateTime<Utc>,
    ) -> Result<(IssuedLink, Vec<String>)> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        if c.state.is_final() {
            return Err(StoreError::Conflict(format!(
                "the consultation is {}",
                c.state
            )));
        }
        let revoked = Self::revoke_links_in(&mut tx, id, now).await?;
        let link = Self::insert_link(
            &mut tx,
            clinic,
            id,
            window.bounds(c.scheduled_start, c.length_minutes),
            now,
        )
        .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "link.reissue",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok((link, revoked))
    }

    /// Revokes every live link of the consultation; returns their
    /// [`link_ref`]s.
    async fn revoke_links_in(
        tx: &mut Tx,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT token_hash FROM join_links WHERE consultation_id = $1 AND revoked_at IS NULL",
        )
        .bind(id.to_string())
        .fetch_all(tx.conn())
        .await?;
        sqlx::query("UPDATE join_links SET revoked_at = $1, token_enc = NULL WHERE consultation_id = $2 AND revoked_at IS NULL")
            .bind(ms(now))
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        Ok(live.iter().map(|h| link_ref(h)).collect())
    }

    /// Revokes every link of the consultation; returns their [`link_ref`]s.
    pub async fn revoke_links(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let revoked = Self::revoke_links_in(&mut tx, id, now).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "link.revoke",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// What a join link token leads to at `now`.
    pub async fn link_status(&self, token: &str, now: DateTime<Utc>) -> Result<LinkStatus> {
        let row = sqlx::query(
            "SELECT l.token_hash, l.consultation_id, l.clinic_id, l.opens_at, l.closes_at, l.revoked_at, c.state
             FROM join_links l JOIN consultations c ON c.id = l.consultation_id
             WHERE l.token_hash = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        row.map_or(Ok(LinkStatus::Unknown), |r| link_status_of(&r, now))
    }

    /// What a patient's signaling hello needs, in one read snapshot without
    /// the writer lock and without an audit entry (see
    /// [`Store::therapist_hello`]): the link's status at `now` and, for a
    /// valid link, the call context and the eligibility gate's answer.
    /// One query: the link with its consultation, clinic, patient, first
    /// visit and the course's assessments. `Refused` for an erased or
    /// merged patient.
    pub async fn patient_hello(&self, token: &str, now: DateTime<Utc>) -> Result<PatientHello> {
        self.patient_hellos(&[token], now)
            .await?
            .pop()
            .expect("one answer for one token")
    }

    /// [`Store::patient_hello`] for several join links in one statement
    /// (hellos that arrive together are read together: one round trip to
    /// the database instead of one each). The answers are in the order of
    /// `tokens`; the outer error is the statement's.
    pub async fn patient_hellos(
        &self,
        tokens: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<PatientHello>>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<String> = tokens.iter().map(|t| token_hash(t)).collect();
        let params = (1..=hashes.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        // One row per link and assessment of its course (one with none): a
        // single statement, so one snapshot without BEGIN and COMMIT. The
        // gate asks only whether a visit came before the start, which the
        // first visit answers.
        let sql = format!(
            "SELECT l.token_hash, l.consultation_id, l.clinic_id, l.opens_at, l.closes_at, l.revoked_at,
                {CONSULTATION_COLUMNS}, cl.evidence_policy,
                p.erased_at AS patient_erased_at, p.merged_into AS patient_merged_into,
                (SELECT v.id FROM visits v WHERE v.clinic_id = c.clinic_id AND v.patient_id = c.patient_id
                 ORDER BY v.at LIMIT 1) AS first_visit_id,
                (SELECT MIN(v.at) FROM visits v WHERE v.clinic_id = c.clinic_id AND v.patient_id = c.patient_id)
                 AS first_visit_at,
                {ASSESSMENT_COLUMNS}
             FROM join_links l
             JOIN consultations c ON c.id = l.consultation_id
             JOIN courses co ON co.id = c.course_id
             JOIN clinics cl ON cl.id = c.clinic_id
             JOIN patients p ON p.id = c.patient_id AND p.clinic_id = c.clinic_id
             LEFT JOIN assessments a ON a.clinic_id = c.clinic_id AND a.course_id = c.course_id
             WHERE l.token_hash IN ({params})
             ORDER BY l.token_hash, a.made_at"
        );
        let mut query = sqlx::query(&sql);
        for hash in &hashes {
            query = query.bind(hash.as_str());
        }
        let rows = query.fetch_all(self.reader()).await?;
        let mut by_link: std::collections::HashMap<String, Vec<sqlx::any::AnyRow>> =
            std::collections::HashMap::with_capacity(hashes.len());
        for r in rows {
            by_link.entry(r.try_get("token_hash")?).or_default().push(r);
        }
        Ok(hashes
            .iter()
            .map(|hash| patient_hello_of(by_link.get(hash).map_or(&[][..], Vec::as_slice), now))
            .collect())
    }

    /// What a therapist's signaling hello needs, in one query: the login
    /// session of `token` at `now` (`None` when there is none) and the
    /// call context of the consultation in the session's clinic (`None`
    /// when the clinic has no such consultation).
    ///
    /// Hellos only read, and write no audit entry: a hello's answer shows
    /// no patient data (the join page and the dashboard, which do, are
    /// audited), and a call's connections come and go with every network
    /// change, so a hello must cost a read, not a write.
    pub async fn therapist_hello(
        &self,
        token: &str,
        consultation: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<TherapistHello> {
        self.therapist_hellos(&[(token, consultation)], now)
            .await?
            .pop()
            .expect("one answer for one session")
    }

    /// [`Store::therapist_hello`] for several (session token, consultation)
    /// pairs in one statement, in their order; the outer error is the
    /// statement's.
    pub async fn therapist_hellos(
        &self,
        hellos: &[(&str, ConsultationId)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<TherapistHello>>> {
        if hellos.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<SessionKey> = hellos
            .iter()
            .map(|(t, _)| SessionKey::of_token(t))
            .collect();
        let values = (0..hellos.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH asked(i, token_hash, consultation_id) AS (VALUES {values})
             SELECT asked.i, s.therapist_id AS session_therapist_id, s.clinic_id, s.csrf_token, s.expires_at,
                t.role, t.clinical, {CONSULTATION_COLUMNS}, cl.evidence_policy
             FROM asked
             JOIN sessions s ON s.token_hash = asked.token_hash
             JOIN therapists t ON t.id = s.therapist_id
             JOIN clinics cl ON cl.id = s.clinic_id
             LEFT JOIN consultations c ON c.id = asked.consultation_id AND c.clinic_id = s.clinic_id
             LEFT JOIN courses co ON co.id = c.course_id
             WHERE s.expires_at > $1 AND t.active = 1"
        );
        let mut query = sqlx::query(&sql).bind(ms(now));
        for (i, ((_, consultation), key)) in hellos.iter().zip(&keys).enumerate() {
            query = query
                .bind(i64::try_from(i).expect("a batch fits i64"))
                .bind(key.as_hex())
                .bind(consultation.to_string());
        }
        let rows = query.fetch_all(self.reader()).await?;
        let mut answers: Vec<Result<TherapistHello>> = hellos.iter().map(|_| Ok(None)).collect();
        for r in &rows {
            let i: i64 = r.try_get("i")?;
            let i = usize::try_from(i).map_err(|_| StoreError::Conflict("bad row index".into()))?;
            let Some(answer) = answers.get_mut(i) else {
                continue;
            };
            *answer = therapist_hello_of(keys[i].clone(), r).map(Some);
        }
        Ok(answers)
    }

    /// The clinic of a join link and its consultation's state, whatever the
    /// link's status: what a page for a dead link needs to say whom to call
    /// and why (`None` for a token that was never issued).
    pub async fn link_owner(&self, token: &str) -> Result<Option<(ClinicId, ConsultationState)>> {
        let row = sqlx::query(
            "SELECT l.clinic_id, c.state FROM join_links l JOIN consultations c ON c.id = l.consultation_id
             WHERE l.token_hash = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let state = state_of(&r)?;
            Ok((ClinicId::from_uuid(get_uuid(&r, "clinic_id")?), state))
        })
        .transpose()
    }

    /// Whether the patient may be admitted now: the consultation is not
    /// over, and the patient is still eligible (an assessment revoked since
    /// scheduling blocks admission). Returns the failed criteria by code.
    pub async fn admission_check(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Vec<Failure>>> {
        // Reads only, beside the writer, not behind it.
        let mut tx = self.begin_read().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        if c.state.is_final() || c.state == ConsultationState::Ended {
            return Err(StoreError::Conflict(format!(
                "the consultation is {}",
                c.state
            )));
        }
        self.require_patient(&mut tx, clinic, c.patient).await?;
        let eligibility = match self
            .eligibility_in(&mut tx, clinic, c.patient, c.course, now)
            .await?
        {
            Eligibility::Eligible => Ok(()),
            Eligibility::NotEligible(failures) => Err(failures),
        };
        tx.commit().await?;
        Ok(eligibility)
    }

    /// A consultation as its join link shows it to the patient: audited as
    /// the patient's read (`consultation.read` by `patient-link:<id>`) at
    /// most once per `window`, so an anonymous page that is opened again
    /// and again cannot grow the audit log without limit.
    pub async fn consultation_for_link(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<Consultation> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let actor = Actor::PatientLink(id);
        let recent: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM audit_log WHERE clinic_id = $1 AND actor = $2 AND action = 'consultation.read' AND at > $3 LIMIT 1",
        )
        .bind(clinic.to_string())
        .bind(actor.as_stored())
        .bind(ms(now - window))
        .fetch_optional(tx.conn())
        .await?;
        if recent.is_none() {
            let subject = id.to_string();
            audit::append(
                &mut tx,
                clinic,
                now,
                actor,
                "consultation.read",
                Some(c.patient),
                Some(&subject),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(c)
    }

    /// One consultation of the clinic.
    pub async fn consultation(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Consultation> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "consultation.read",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok(c)
    }

    /// The id and state of each of the clinic's consultations that start in
    /// `[from, to)`, by start: no patient data, so not audited; what the
    /// dashboard polls every few seconds to notice a patient arriving.
    pub async fn consultation_states_between(
        &self,
        clinic: ClinicId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(ConsultationId, TherapistId, ConsultationState)>> {
        let rows = sqlx::query(
            "SELECT id, therapist_id, state FROM consultations
             WHERE clinic_id = $1 AND scheduled_start >= $2 AND scheduled_start < $3
             ORDER BY scheduled_start, id",
        )
        .bind(clinic.to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state = state_of(r)?;
                Ok((
                    ConsultationId::from_uuid(get_uuid(r, "id")?),
                    TherapistId::from_uuid(get_uuid(r, "therapist_id")?),
                    state,
                ))
            })
            .collect()
    }

    /// The clinic's consultations that start in `[from, to)`, by start, with
    /// each patient's name (for the day view).
    ///
    /// A list the dashboard reloads whenever something changes is read, not
    /// written: each patient shown is audited (`consultation.list`, in the
    /// patient's access log) once per viewer within [`LIST_AUDIT_EVERY`],
    /// not on every reload. Only a first view in that time writes.
    pub async fn consultations_between(
        &self,
        clinic: ClinicId,
        actor: Actor,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Consultation, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS}, p.name_enc FROM consultations c
             JOIN courses co ON co.id = c.course_id JOIN patients p ON p.id = c.patient_id
             WHERE c.clinic_id = $1 AND c.scheduled_start >= $2 AND c.scheduled_start < $3
             ORDER BY c.scheduled_start"
        ))
        .bind(clinic.to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        let mut list = Vec::with_capacity(rows.len());
        for r in &rows {
            let c = consultation_from_row(r)?;
            let sealed: Option<Vec<u8>> = r.try_get("name_enc")?;
            let name = self
                .cipher()
                .open_opt(&format!("patients.name:{}", c.patient), sealed.as_deref())?
                .unwrap_or_default();
            list.push((c, name));
        }
        if list.is_empty() {
            return Ok(list);
        }
        let seen: std::collections::HashSet<String> = sqlx::query(
            "SELECT DISTINCT patient_id FROM audit_log
             WHERE clinic_id = $1 AND at >= $2 AND actor = $3 AND action = 'consultation.list'",
        )
        .bind(clinic.to_string())
        .bind(ms(now - LIST_AUDIT_EVERY))
        .bind(actor.encode())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .filter_map(|r| r.try_get::<Option<String>, _>("patient_id").ok().flatten())
        .collect();
        let unseen: Vec<&Consultation> = list
            .iter()
            .map(|(c, _)| c)
            .filter(|c| !seen.contains(&c.patient.to_string()))
            .collect();
        if unseen.is_empty() {
            return Ok(list);
        }
        let mut tx = self.begin().await?;
        for c in unseen {
            audit::append(
                &mut tx,
                clinic,
                now,
                actor,
                "consultation.list",
                Some(c.patient),
                Some(&c.id.to_string()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(list)
    }

    /// One patient's consultations, past and upcoming, newest first, each
    /// with whether it has a journal note (audited once as
    /// `patient.consultations`).
    pub async fn patient_consultations(
        &self,
        clinic: ClinicId,
        actor: Actor,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Consultation, bool)>> {
        let mut tx = self.begin().await?;
        // 404 for another clinic's (or an unknown) patient.
        self.patient_in(&mut tx, clinic, patient).await?;
        let rows = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS},
                CAST(CASE WHEN c.journal_enc IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_journal
             FROM consultations c
             JOIN courses co ON co.id = c.course_id
             WHERE c.clinic_id = $1 AND c.patient_id = $2
             ORDER BY c.scheduled_start DESC"
        ))
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_all(tx.conn())
        .await?;
        let list = rows
            .iter()
            .map(|r| Ok((consultation_from_row(r)?, get_flag(r, "has_journal")?)))
            .collect::<Result<Vec<_>>>()?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "patient.consultations",
            Some(patient),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(list)
    }

    /// Records the therapist's patient-safety confirmation at the start of
    /// the call: where the patient is and a number to call if the line drops.
    pub async fn record_safety(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        safety: &SafetyConfirmation,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        if c.state.is_final() {
            return Err(StoreError::Conflict(format!(
                "the consultation is {}",
                c.state
            )));
        }
        sqlx::query("UPDATE consultations SET safety_enc = $1 WHERE id = $2")
            .bind(self.seal_doc(SealedDoc::Safety, id, safety))
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "consultation.safety",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await
    }

    /// The safety confirmation, if recorded.
    pub async fn safety(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Option<SafetyConfirmation>> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let safety = self.open_doc(&mut tx, SealedDoc::Safety, id).await?;
        if safety.is_some() {
            audit::append(
                &mut tx,
                clinic,
                now,
                actor,
                "consultation.safety.read",
                Some(c.patient),
                Some(&id.to_string()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(safety)
    }

    /// Moves the consultation to `state`; one that is over from now on gets
    /// its `closed_at` and loses its saved signaling room.
    async fn set_state(
        tx: &mut Tx,
        clinic: ClinicId,
        id: ConsultationId,
        state: ConsultationState,
        now: DateTime<Utc>,
    ) -> Result<()> {
        tx.touch(clinic);
        sqlx::query("UPDATE consultations SET state = $1 WHERE id = $2")
            .bind(state.code())
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        if state.is_over() {
            sqlx::query(
                "UPDATE consultations SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL",
            )
            .bind(ms(now))
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
            sqlx::query("DELETE FROM signaling_rooms WHERE consultation_id = $1")
                .bind(id.to_string())
                .execute(tx.conn())
                .await?;
        }
        Ok(())
    }

    /// Records one event of the call (see [`Store::write_call`]), leaving a
    /// saved room as it is.
    pub async fn record_call_event(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
        event: CallEvent,
        at: DateTime<Utc>,
    ) -> Result<ConsultationState> {
        Ok(self
            .write_call(clinic, id, &[event], RoomWrite::Keep, at)
            .await?
            .state)
    }

    /// Commits what signaling saw of a consultation's call, in one
    /// transaction: each event moves the consultation by the domain's
    /// lifecycle (`CallFacts::on_call_event`) and is logged (no address, no
    /// content), and the room's record is saved or deleted. An event the
    /// lifecycle refuses (someone let into a consultation that is over) is a
    /// [`StoreError::Conflict`] and nothing is written. Repeated events (a
    /// second report, a late event of a closed room) change nothing.
    pub async fn write_call(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
        events: &[CallEvent],
        room: RoomWrite<'_>,
        at: DateTime<Utc>,
    ) -> Result<CallWrite> {
        let mut tx = self.begin().await?;
        let written = self
            .write_call_in(
                &mut tx,
                &CallWriteRequest {
                    clinic,
                    id,
                    events,
                    room,
                    at,
                },
            )
            .await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Commits several call writes, each as [`Store::write_call`] would, in
    /// order, and answers them in order: `Ok`, or the `Conflict` or
    /// `NotFound` that refuses one for good (nothing of it is written).
    /// When fewer answers come back than writes went in, the rest were not
    /// written, for the error returned with them (a busy or unavailable
    /// database): retry those.
    ///
    /// On SQLite, whose writers take turns anyway, the writes share one
    /// transaction (group commit): one BEGIN, COMMIT and pool round trip for
    /// the lot instead of for each. If one of them is refused, that
    /// transaction is rolled back and each write gets its own, so a refusal
    /// costs the others nothing. On PostgreSQL each write has its own
    /// transaction: writers there run side by side, and one transaction
    /// over several clinics' audit chains could deadlock with another.
    pub async fn write_calls(
        &self,
        writes: &[CallWriteRequest<'_>],
    ) -> (Vec<Result<CallWrite>>, Option<StoreError>) {
        if self.backend == crate::Backend::Sqlite && writes.len() > 1 {
            match self.write_calls_together(writes).await {
                Ok(Some(written)) => return (written.into_iter().map(Ok).collect(), None),
                // One was refused: each on its own, below.
                Ok(None) => {}
                Err(error) => return (Vec::new(), Some(error)),
            }
        }
        let mut answers = Vec::with_capacity(writes.len());
        for w in writes {
            match self
                .write_call(w.clinic, w.id, w.events, w.room, w.at)
                .await
            {
                Ok(written) => answers.push(Ok(written)),
                Err(refused @ (StoreError::Conflict(_) | StoreError::NotFound(_))) => {
                    answers.push(Err(refused));
                }
                Err(error) => return (answers, Some(error)),
            }
        }
        (answers, None)
    }

    /// All of `writes` in one transaction; `None` (and nothing written)
    /// when the lifecycle or the store refuses one of them.
    async fn write_calls_together(
        &self,
        writes: &[CallWriteRequest<'_>],
    ) -> Result<Option<Vec<CallWrite>>> {
        let mut tx = self.begin().await?;
        let mut written = Vec::with_capacity(writes.len());
        for w in writes {
            match self.write_call_in(&mut tx, w).await {
                Ok(w) => written.push(w),
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        tx.commit().await?;
        Ok(Some(written))
    }

    async fn write_call_in(&self, tx: &mut Tx, w: &CallWriteRequest<'_>) -> Result<CallWrite> {
        let CallWriteRequest {
            clinic,
            id,
            events,
            room,
            at,
        } = *w;
        let c = self.consultation_in(tx, clinic, id).await?;
        let mut facts = c.call_facts();
        let mut effects = Effects::NONE;
        for event in events {
            let t = facts
                .on_call_event(event)
                .map_err(|e| StoreError::Conflict(e.to_string()))?;
            if t.stamp_started {
                // What the gate said at the actual start is what billing
                // uses, whatever is revoked later.
                let at_start = self
                    .eligibility_in(tx, clinic, c.patient, c.course, at)
                    .await?;
                sqlx::query("UPDATE consultations SET started_at = $1, eligibility_at_start = $2 WHERE id = $3")
                    .bind(ms(at))
                    .bind(serde_json::to_string(&at_start).expect("eligibility serialises"))
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
                let subject = id.to_string();
                audit::append(
                    tx,
                    clinic,
                    at,
                    Actor::System,
                    "call.admitted",
                    Some(c.patient),
                    Some(&subject),
                )
                .await?;
            }
            if t.stamp_two_way {
                sqlx::query("UPDATE consultations SET two_way_at = $1 WHERE id = $2")
                    .bind(ms(at))
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
                let subject = id.to_string();
                audit::append(
                    tx,
                    clinic,
                    at,
                    Actor::System,
                    "call.two_way",
                    Some(c.patient),
                    Some(&subject),
                )
                .await?;
            }
            if t.facts.two_way != facts.two_way {
                sqlx::query("UPDATE consultations SET two_way_evidence = $1 WHERE id = $2")
                    .bind(t.facts.two_way.map(Evidence::code))
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
            }
            if t.stamp_ended {
                sqlx::query("UPDATE consultations SET ended_at = $1 WHERE id = $2")
                    .bind(ms(at))
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
                let subject = id.to_string();
                audit::append(
                    tx,
                    clinic,
                    at,
                    Actor::System,
                    "call.ended",
                    Some(c.patient),
                    Some(&subject),
                )
                .await?;
            }
            if t.facts.state != facts.state {
                Self::set_state(tx, clinic, id, t.facts.state, at).await?;
            }
            Self::log_call_event(tx, clinic, id, event, at).await?;
            effects.end_connections |= t.effects.end_connections;
            effects.close_relay |= t.effects.close_relay;
            facts = t.facts;
        }
        match room {
            RoomWrite::Save(record) if !facts.state.is_over() => {
                sqlx::query(
                    "INSERT INTO signaling_rooms (consultation_id, clinic_id, record, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (consultation_id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
                )
                .bind(id.to_string())
                .bind(clinic.to_string())
                .bind(record)
                .bind(ms(at))
                .execute(tx.conn())
                .await?;
            }
            RoomWrite::Save(_) | RoomWrite::Delete => {
                sqlx::query("DELETE FROM signaling_rooms WHERE consultation_id = $1")
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
            }
            RoomWrite::Keep => {}
        }
        Ok(CallWrite {
            state: facts.state,
            effects,
        })
    }

    async fn log_call_event(
        tx: &mut Tx,
        clinic: ClinicId,
        id: ConsultationId,
        event: &CallEvent,
        at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO consultation_events (consultation_id, clinic_id, kind, detail, at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id.to_string())
            .bind(clinic.to_string())
            .bind(event.code())
            .bind(event.detail())
            .bind(ms(at))
            .execute(tx.conn())
            .await?;
        Ok(())
    }

    /// The saved signaling room of one consultation, if any: what a node
    /// of a cluster adopts when the room's owner stopped.
    pub async fn saved_room(&self, consultation: ConsultationId) -> Result<Option<SavedRoom>> {
        let row = sqlx::query(
            "SELECT consultation_id, clinic_id, record FROM signaling_rooms WHERE consultation_id = $1",
        )
        .bind(consultation.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SavedRoom {
                clinic: ClinicId::from_uuid(get_uuid(&r, "clinic_id")?),
                consultation: ConsultationId::from_uuid(get_uuid(&r, "consultation_id")?),
                record: r.try_get("record")?,
            })
        })
        .transpose()
    }

    /// The consultations that have a saved signaling room (a cluster
    /// looks for those no node runs).
    pub async fn saved_room_ids(&self) -> Result<Vec<ConsultationId>> {
        let rows = sqlx::query("SELECT consultation_id FROM signaling_rooms")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(ConsultationId::from_uuid(get_uuid(r, "consultation_id")?)))
            .collect()
    }

    /// Every saved signaling room, to restore at start-up.
    pub async fn saved_rooms(&self) -> Result<Vec<SavedRoom>> {
        let rows = sqlx::query("SELECT consultation_id, clinic_id, record FROM signaling_rooms")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SavedRoom {
                    clinic: ClinicId::from_uuid(get_uuid(r, "clinic_id")?),
                    consultation: ConsultationId::from_uuid(get_uuid(r, "consultation_id")?),
                    record: r.try_get("record")?,
                })
            })
            .collect()
    }

    /// Settles consultations a crash left with a patient waiting or in
    /// their call but with no saved room to restore (nobody can resume
    /// them): a waiting one is open again, a call ends as `abandoned` with
    /// its evidence kept. Returns the consultations whose call ended, for
    /// their relay allocations to be closed.
    pub async fn settle_orphaned_calls(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ClinicId, ConsultationId)>> {
        let rows = sqlx::query(
            "SELECT c.id, c.clinic_id, c.state FROM consultations c
             WHERE c.state IN ('waiting', 'in_call')
               AND NOT EXISTS (SELECT 1 FROM signaling_rooms r WHERE r.consultation_id = c.id)",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut ended = Vec::new();
        for r in &rows {
            let clinic = ClinicId::from_uuid(get_uuid(r, "clinic_id")?);
            let id = ConsultationId::from_uuid(get_uuid(r, "id")?);
            let event = match r.try_get::<String, _>("state")?.as_str() {
                "waiting" => CallEvent::PatientLeftWaiting,
                _ => CallEvent::Ended {
                    reason: EndReason::Abandoned,
                },
            };
            match self
                .write_call(clinic, id, &[event], RoomWrite::Keep, now)
                .await
            {
                Ok(write) if write.effects.close_relay => ended.push((clinic, id)),
                Ok(_) => {}
                // Moved on meanwhile: nothing to settle.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ended)
    }

    /// Consultations that became over since `since` (their relay credentials
    /// must stay refused), and the [`link_ref`]s of links revoked since then,
    /// with their consultation.
    pub async fn closed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<(Vec<ConsultationId>, Vec<(ConsultationId, String)>)> {
        let closed: Vec<String> =
            sqlx::query_scalar("SELECT id FROM consultations WHERE closed_at >= $1")
                .bind(ms(since))
                .fetch_all(&self.pool)
                .await?;
        let links = sqlx::query(
            "SELECT consultation_id, token_hash FROM join_links WHERE revoked_at >= $1",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        let closed = closed
            .iter()
            .map(|id| Ok(ConsultationId::from_uuid(crate::parse_uuid(id)?)))
            .collect::<Result<_>>()?;
        let links = links
            .iter()
            .map(|r| {
                Ok((
                    ConsultationId::from_uuid(get_uuid(r, "consultation_id")?),
                    link_ref(&r.try_get::<String, _>("token_hash")?),
                ))
            })
            .collect::<Result<_>>()?;
        Ok((closed, links))
    }

    /// The events of a consultation's call, oldest first: kind, detail (the
    /// evidence of `two_way_established`, the reason of `ended`) and time.
    pub async fn call_events(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
    ) -> Result<Vec<(String, Option<String>, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT kind, detail, at FROM consultation_events WHERE clinic_id = $1 AND consultation_id = $2 ORDER BY id",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kind")?,
                    r.try_get("detail")?,
                    from_ms(r.try_get("at")?)?,
                ))
            })
            .collect()
    }

    /// Cancels, marks as no-show, or as a technical failure; stores the
    /// (not billable) decision and revokes the links.
    pub async fn close_without_call(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        closure: Closure,
        now: DateTime<Utc>,
    ) -> Result<Consultation> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let event = match closure {
            Closure::Cancel => ConsultationEvent::Cancel,
            Closure::NoShow => ConsultationEvent::MarkNoShow,
            Closure::TechnicalFailure => ConsultationEvent::MarkTechnicalFailure,
        };
        let state = c
            .state
            .apply(&event)
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        if c.state == ConsultationState::InCall {
            // The call ends with the closure (its evidence is kept).
            sqlx::query(
                "UPDATE consultations SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL",
            )
            .bind(ms(now))
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        }
        Self::set_state(&mut tx, clinic, id, state, now).await?;
        Self::revoke_links_in(&mut tx, id, now).await?;
        let closed = self.consultation_in(&mut tx, clinic, id).await?;
        self.decide_in(&mut tx, clinic, &closed, "closed", now)
            .await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            event.code(),
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        tx.commit().await?;
        Ok(c)
    }

    /// Completes an ended consultation with its journal note and decides its billing in the
    /// same transaction. Completing a completed consultation decides it again with today's
    /// ledger and fee schedule: the same decision (`repeated: true`) unless something changed,
    /// e.g. its line was reversed. Concurrent completions of one consultation are made one at a
    /// time and all answer the decision in force; concurrent completions for one patient-day
    /// yield at most one line (held by a unique index and retried here).
    pub async fn complete(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        journal: &JournalNote,
        now: DateTime<Utc>,
    ) -> Result<Completion> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_complete(clinic, by, id, journal, now).await {
                Err(e) if attempt < 8 && is_retryable(&e) => continue,
                other => return other,
            }
        }
    }

    async fn try_complete(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        journal: &JournalNote,
        now: DateTime<Utc>,
    ) -> Result<Completion> {
        let mut tx = self.begin().await?;
        self.lock_consultation(&mut tx, id).await?;
        let mut c = self.consultation_in(&mut tx, clinic, id).await?;
        if c.state == ConsultationState::Completed {
            let decided = self
                .decide_in(&mut tx, clinic, &c, "completed_again", now)
                .await?;
            tx.commit().await?;
            return Ok(Completion {
                decision: decided.decision,
                line_id: decided.line_id,
                repeated: !decided.changed,
            });
        }
        if c.state == ConsultationState::InCall {
            // The therapist completes a consultation whose call is still
            // open (the patient may be gone for good): the call ends now,
            // with what it established, in the same transaction.
            let end = CallEvent::Ended {
                reason: EndReason::ClosedByClinic,
            };
            let t = c
                .call_facts()
                .on_call_event(&end)
                .map_err(|e| StoreError::Conflict(e.to_string()))?;
            sqlx::query("UPDATE consultations SET ended_at = $1 WHERE id = $2")
                .bind(ms(now))
                .bind(id.to_string())
                .execute(tx.conn())
                .await?;
            Self::set_state(&mut tx, clinic, id, t.facts.state, now).await?;
            Self::log_call_event(&mut tx, clinic, id, &end, now).await?;
            c = self.consultation_in(&mut tx, clinic, id).await?;
        }
        let state = c
            .state
            .apply(&ConsultationEvent::Complete(journal.clone()))
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        tx.touch(clinic);
        sqlx::query("UPDATE consultations SET state = $1, journal_enc = $2, completed_at = $3 WHERE id = $4")
            .bind(state.code())
            .bind(self.seal_doc(SealedDoc::Journal, id, journal))
            .bind(ms(now))
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        Self::revoke_links_in(&mut tx, id, now).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "consultation.complete",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        let completed = self.consultation_in(&mut tx, clinic, id).await?;
        let decided = self
            .decide_in(&mut tx, clinic, &completed, "completed", now)
            .await?;
        tx.commit().await?;
        Ok(Completion {
            decision: decided.decision,
            line_id: decided.line_id,
            repeated: false,
        })
    }

    /// The journal note of a completed consultation.
    pub async fn journal(
        &self,
        clinic: ClinicId,
        actor: Actor,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<Option<JournalNote>> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let note = self.open_doc(&mut tx, SealedDoc::Journal, id).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            actor,
            "journal.read",
            Some(c.patient),
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok(note)
    }
}
