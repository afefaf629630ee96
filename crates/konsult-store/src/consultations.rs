//! Consultations: scheduling behind the eligibility gate, join links, the
//! call's lifecycle events, and completion with its billing decision.

use chrono::{DateTime, Duration, Utc};
use konsult_domain::{
    decide_billing, eligibility, BillingDecision, BillingLine, BillingLineId, ClinicId,
    ConsultationEvent, ConsultationFacts, ConsultationId, ConsultationOutcome, ConsultationState,
    CourseId, Eligibility, Failure, JournalNote, PatientId, ServiceKind, Speciale, TherapistId,
};
use serde::Serialize;
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::crypto::{new_token, token_hash};
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
    /// When both sides first reported media received.
    pub two_way_at: Option<DateTime<Utc>>,
    /// When the call ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// When the journal note was written.
    pub completed_at: Option<DateTime<Utc>>,
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
    /// Its window has passed, or its consultation is over.
    Expired,
    /// Revoked by the clinic (a newer link may exist).
    Revoked,
    /// No such link.
    Unknown,
}

/// Events of the call, reported by signaling; stored without addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEvent {
    /// The patient entered the waiting room.
    PatientWaiting,
    /// The patient left the waiting room before admission.
    PatientLeftWaiting,
    /// The therapist admitted the patient (the call starts).
    Admitted,
    /// Both sides reported media received.
    TwoWayEstablished,
    /// The call ended.
    Ended,
}

impl CallEvent {
    fn code(self) -> &'static str {
        match self {
            CallEvent::PatientWaiting => "patient_waiting",
            CallEvent::PatientLeftWaiting => "patient_left_waiting",
            CallEvent::Admitted => "admitted",
            CallEvent::TwoWayEstablished => "two_way_established",
            CallEvent::Ended => "ended",
        }
    }
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

const CONSULTATION_COLUMNS: &str =
    "c.id, c.patient_id, c.course_id, c.therapist_id, c.scheduled_start, c.length_minutes,
    c.state, c.relay_only, c.started_at, c.two_way_at, c.ended_at, c.completed_at, co.speciale";

fn consultation_from_row(r: &sqlx::any::AnyRow) -> Result<Consultation> {
    let state: String = r.try_get("state")?;
    Ok(Consultation {
        id: ConsultationId::from_uuid(get_uuid(r, "id")?),
        patient: PatientId::from_uuid(get_uuid(r, "patient_id")?),
        course: CourseId::from_uuid(get_uuid(r, "course_id")?),
        therapist: TherapistId::from_uuid(get_uuid(r, "therapist_id")?),
        speciale: crate::get_speciale(r, "speciale")?,
        scheduled_start: from_ms(r.try_get("scheduled_start")?)?,
        length_minutes: u32::try_from(r.try_get::<i64, _>("length_minutes")?)
            .map_err(|_| StoreError::Corrupt("length".into()))?,
        state: state
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("state {state:?}")))?,
        relay_only: get_flag(r, "relay_only")?,
        started_at: opt_from_ms(r.try_get("started_at")?)?,
        two_way_at: opt_from_ms(r.try_get("two_way_at")?)?,
        ended_at: opt_from_ms(r.try_get("ended_at")?)?,
        completed_at: opt_from_ms(r.try_get("completed_at")?)?,
    })
}

fn is_retryable(e: &StoreError) -> bool {
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
        let course = self.course_in(&mut tx, clinic, new.course).await?;
        if course.patient != new.patient {
            return Err(StoreError::NotFound("course"));
        }
        // The therapist must belong to the clinic.
        self.therapist(clinic, new.therapist).await?;
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
        .bind(i64::from(new.relay_only))
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

    async fn insert_link(
        tx: &mut Tx,
        clinic: ClinicId,
        consultation: ConsultationId,
        (opens_at, closes_at): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> Result<IssuedLink> {
        let token = new_token();
        sqlx::query(
            "INSERT INTO join_links (token_hash, consultation_id, clinic_id, opens_at, closes_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash(&token))
        .bind(consultation.to_string())
        .bind(clinic.to_string())
        .bind(ms(opens_at))
        .bind(ms(closes_at))
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
        Ok(IssuedLink {
            token,
            opens_at,
            closes_at,
        })
    }

    /// Revokes the consultation's links and issues a new one.
    pub async fn reissue_link(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        window: LinkWindow,
        now: DateTime<Utc>,
    ) -> Result<IssuedLink> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        if c.state.is_final() {
            return Err(StoreError::Conflict(format!(
                "the consultation is {}",
                c.state
            )));
        }
        Self::revoke_links_in(&mut tx, id, now).await?;
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
        Ok(link)
    }

    async fn revoke_links_in(tx: &mut Tx, id: ConsultationId, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE join_links SET revoked_at = $1 WHERE consultation_id = $2 AND revoked_at IS NULL")
            .bind(ms(now))
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        Ok(())
    }

    /// Revokes every link of the consultation.
    pub async fn revoke_links(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        id: ConsultationId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        Self::revoke_links_in(&mut tx, id, now).await?;
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
        tx.commit().await
    }

    /// What a join link token leads to at `now`.
    pub async fn link_status(&self, token: &str, now: DateTime<Utc>) -> Result<LinkStatus> {
        let row = sqlx::query(
            "SELECT l.consultation_id, l.clinic_id, l.opens_at, l.closes_at, l.revoked_at, c.state
             FROM join_links l JOIN consultations c ON c.id = l.consultation_id
             WHERE l.token_hash = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(LinkStatus::Unknown);
        };
        let state: ConsultationState = r
            .try_get::<String, _>("state")?
            .parse()
            .map_err(|_| StoreError::Corrupt("state".into()))?;
        // A consultation that is over shows as expired to the patient, even
        // though its links were also revoked when it closed.
        if state.is_final() || state == ConsultationState::Ended {
            return Ok(LinkStatus::Expired);
        }
        if r.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Ok(LinkStatus::Revoked);
        }
        let consultation = ConsultationId::from_uuid(get_uuid(&r, "consultation_id")?);
        let clinic = ClinicId::from_uuid(get_uuid(&r, "clinic_id")?);
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
        })
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
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        if c.state.is_final() || c.state == ConsultationState::Ended {
            return Err(StoreError::Conflict(format!(
                "the consultation is {}",
                c.state
            )));
        }
        let now_eligible = self
            .eligibility_in(&mut tx, clinic, c.patient, c.course, now)
            .await?;
        tx.commit().await?;
        Ok(match now_eligible {
            Eligibility::Eligible => Ok(()),
            Eligibility::NotEligible(failures) => Err(failures),
        })
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

    /// The clinic's consultations that start in `[from, to)`, by start, with
    /// each patient's name (for the day view).
    pub async fn consultations_between(
        &self,
        clinic: ClinicId,
        actor: Actor,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Consultation, String)>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {CONSULTATION_COLUMNS}, p.name_enc FROM consultations c
             JOIN courses co ON co.id = c.course_id JOIN patients p ON p.id = c.patient_id
             WHERE c.clinic_id = $1 AND c.scheduled_start >= $2 AND c.scheduled_start < $3
             ORDER BY c.scheduled_start"
        ))
        .bind(clinic.to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(tx.conn())
        .await?;
        let mut list = Vec::with_capacity(rows.len());
        for r in &rows {
            let c = consultation_from_row(r)?;
            let sealed: Option<Vec<u8>> = r.try_get("name_enc")?;
            let name = self
                .cipher()
                .open_opt(&format!("patients.name:{}", c.patient), sealed.as_deref())?
                .unwrap_or_default();
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
            list.push((c, name));
        }
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

    async fn set_state(tx: &mut Tx, id: ConsultationId, state: ConsultationState) -> Result<()> {
        sqlx::query("UPDATE consultations SET state = $1 WHERE id = $2")
            .bind(state.code())
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        Ok(())
    }

    /// Records an event of the call and moves the lifecycle on. Repeated
    /// events (a reconnect, a second report) are accepted and change nothing.
    pub async fn record_call_event(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
        event: CallEvent,
        at: DateTime<Utc>,
    ) -> Result<ConsultationState> {
        use ConsultationState as S;
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let mut state = c.state;
        let steps: &[ConsultationEvent] = match (event, state) {
            (CallEvent::PatientWaiting, S::Scheduled) => &[
                ConsultationEvent::OpenWindow,
                ConsultationEvent::PatientArrived,
            ],
            (CallEvent::PatientWaiting, S::Open) => &[ConsultationEvent::PatientArrived],
            (CallEvent::PatientLeftWaiting, S::Waiting) => &[ConsultationEvent::PatientLeftWaiting],
            (CallEvent::Admitted, S::Waiting) => &[ConsultationEvent::Admit],
            (CallEvent::Ended, S::InCall) => &[ConsultationEvent::End],
            _ => &[],
        };
        for step in steps {
            state = state
                .apply(step)
                .map_err(|e| StoreError::Conflict(e.to_string()))?;
        }
        if state != c.state {
            Self::set_state(&mut tx, id, state).await?;
        }
        match event {
            CallEvent::Admitted if c.started_at.is_none() && state == S::InCall => {
                // What the gate said at the actual start is what billing uses,
                // whatever is revoked later.
                let at_start = self
                    .eligibility_in(&mut tx, clinic, c.patient, c.course, at)
                    .await?;
                sqlx::query("UPDATE consultations SET started_at = $1, eligibility_at_start = $2 WHERE id = $3")
                    .bind(ms(at))
                    .bind(serde_json::to_string(&at_start).expect("eligibility serialises"))
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
            }
            CallEvent::TwoWayEstablished if c.two_way_at.is_none() && c.started_at.is_some() => {
                sqlx::query("UPDATE consultations SET two_way_at = $1 WHERE id = $2")
                    .bind(ms(at))
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
            }
            CallEvent::Ended if c.ended_at.is_none() && state == S::Ended => {
                sqlx::query("UPDATE consultations SET ended_at = $1 WHERE id = $2")
                    .bind(ms(at))
                    .bind(id.to_string())
                    .execute(tx.conn())
                    .await?;
            }
            _ => {}
        }
        sqlx::query("INSERT INTO consultation_events (consultation_id, clinic_id, kind, at) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(clinic.to_string())
            .bind(event.code())
            .bind(ms(at))
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(state)
    }

    /// The events of a consultation's call, oldest first.
    pub async fn call_events(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT kind, at FROM consultation_events WHERE clinic_id = $1 AND consultation_id = $2 ORDER BY id",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, from_ms(r.try_get("at")?)?)))
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
        Self::set_state(&mut tx, id, state).await?;
        Self::revoke_links_in(&mut tx, id, now).await?;
        let outcome = match closure {
            Closure::Cancel => ConsultationOutcome::Cancelled,
            Closure::NoShow => ConsultationOutcome::NoShow,
            Closure::TechnicalFailure => ConsultationOutcome::Held {
                started_at: c.started_at.unwrap_or(c.scheduled_start),
                two_way_media: false,
            },
        };
        let facts = ConsultationFacts {
            id,
            patient: c.patient,
            kind: ServiceKind::IndividualVideo,
            speciale: c.speciale,
            outcome,
            eligibility_at_start: Eligibility::Eligible,
        };
        let clinic_row = self.clinic(clinic).await?;
        let decision = decide_billing(&facts, &[], &[], &clinic_row.fee_table()?);
        sqlx::query(
            "INSERT INTO billing_decisions (consultation_id, clinic_id, decision, line_id, decided_at) VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(serde_json::to_string(&decision).expect("decisions serialise"))
        .bind(ms(now))
        .execute(tx.conn())
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

    /// The stored billing decision of a consultation, if decided.
    pub async fn billing_decision(
        &self,
        clinic: ClinicId,
        id: ConsultationId,
    ) -> Result<Option<(BillingDecision, Option<BillingLineId>)>> {
        let row = sqlx::query("SELECT decision, line_id FROM billing_decisions WHERE clinic_id = $1 AND consultation_id = $2")
            .bind(clinic.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let decision = serde_json::from_str(&r.try_get::<String, _>("decision")?)
                .map_err(|e| StoreError::Corrupt(format!("decision: {e}")))?;
            let line = r
                .try_get::<Option<String>, _>("line_id")?
                .map(|l| crate::parse_uuid(&l).map(BillingLineId::from_uuid))
                .transpose()?;
            Ok((decision, line))
        })
        .transpose()
    }

    /// Completes an ended consultation with its journal note and stores the
    /// billing decision in the same transaction. Completing again returns
    /// the first result; concurrent completions for one patient-day yield at
    /// most one billable line (held by a unique index and retried here).
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
        if let Some((decision, line_id)) = self.billing_decision(clinic, id).await? {
            // Check the consultation is this clinic's before answering.
            let mut tx = self.begin().await?;
            let c = self.consultation_in(&mut tx, clinic, id).await?;
            if c.state == ConsultationState::Completed {
                return Ok(Completion {
                    decision,
                    line_id,
                    repeated: true,
                });
            }
            return Err(StoreError::Conflict(format!(
                "the consultation is {}",
                c.state
            )));
        }
        let mut tx = self.begin().await?;
        let c = self.consultation_in(&mut tx, clinic, id).await?;
        let state = c
            .state
            .apply(&ConsultationEvent::Complete(journal.clone()))
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let eligibility_at_start: Eligibility = {
            let text: Option<String> =
                sqlx::query_scalar("SELECT eligibility_at_start FROM consultations WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_one(tx.conn())
                    .await?;
            match text {
                Some(t) => serde_json::from_str(&t)
                    .map_err(|e| StoreError::Corrupt(format!("eligibility: {e}")))?,
                None => Eligibility::Eligible,
            }
        };
        let facts = ConsultationFacts {
            id,
            patient: c.patient,
            kind: ServiceKind::IndividualVideo,
            speciale: c.speciale,
            outcome: ConsultationOutcome::Held {
                started_at: c.started_at.unwrap_or(c.scheduled_start),
                two_way_media: c.two_way_at.is_some(),
            },
            eligibility_at_start,
        };
        let existing = self
            .billing_lines_of_patient(&mut tx, clinic, c.patient)
            .await?;
        let visits = self.visits_in(&mut tx, clinic, c.patient).await?;
        let fees = self.clinic(clinic).await?.fee_table()?;
        let decision = decide_billing(&facts, &existing, &visits, &fees);
        let line_id = match &decision {
            BillingDecision::Billable(line) => {
                Some(Self::insert_line(&mut tx, clinic, line, None, None, now).await?)
            }
            BillingDecision::NotBillable(_) => None,
        };
        sqlx::query(
            "INSERT INTO billing_decisions (consultation_id, clinic_id, decision, line_id, decided_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.to_string())
        .bind(clinic.to_string())
        .bind(serde_json::to_string(&decision).expect("decisions serialise"))
        .bind(line_id.map(|l| l.to_string()))
        .bind(ms(now))
        .execute(tx.conn())
        .await?;
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
        tx.commit().await?;
        Ok(Completion {
            decision,
            line_id,
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

    pub(crate) async fn billing_lines_of_patient(
        &self,
        tx: &mut Tx,
        clinic: ClinicId,
        patient: PatientId,
    ) -> Result<Vec<BillingLine>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM billing_lines b WHERE b.clinic_id = $1 AND b.patient_id = $2 AND b.correction_of IS NULL",
            crate::billing::LINE_COLUMNS
        ))
        .bind(clinic.to_string())
        .bind(patient.to_string())
        .fetch_all(tx.conn())
        .await?;
        rows.iter()
            .map(|r| crate::billing::line_from_row(r).map(|stored| stored.line))
            .collect()
    }
}
