//! Authenticating a `hello` against the store: the patient's join link or
//! the therapist's session cookie, the consultation's window and tenant.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use konsult_domain::{ClinicId, ConsultationId, ConsultationState, EvidencePolicy};
use konsult_protocol::{Auth, CandidatePolicy, ErrorCode, Role, ServerMessage};
use konsult_store::consultations::{self, CallContext, Consultation, LinkStatus, PatientHello};
use konsult_store::therapists::SessionKey;
use konsult_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

/// How long a therapist's TURN credential lives: a working day's stretch
/// of consultations, after which the dashboard reconnects anyway.
pub const THERAPIST_CREDENTIAL_TTL: Duration = Duration::from_secs(4 * 3600);

/// A hello that passed authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The consultation's clinic.
    pub clinic: ClinicId,
    /// The consultation.
    pub consultation: ConsultationId,
    /// Who connects: its participant id, [`participant_id`] of the
    /// consultation and the person (patient or therapist).
    pub participant: Uuid,
    /// What it may do.
    pub role: Role,
    /// `relay_only` when the consultation or the clinic's evidence policy
    /// says so.
    pub policy: CandidatePolicy,
    /// The clinic's evidence policy.
    pub evidence_policy: EvidencePolicy,
    /// The consultation's call has started (`in_call`).
    pub call_started: bool,
    /// Patient: the reference of the join link used.
    pub link: Option<String>,
    /// Patient: when the join link stops working.
    pub closes_at: Option<DateTime<Utc>>,
    /// How long this participant's TURN credential may live.
    pub credential_ttl: Duration,
    /// Therapist: the login session the connection rests on; ending the
    /// session (logout, password change, deactivation) ends the connection.
    pub session: Option<SessionKey>,
}

/// Why a hello is refused: sent as `error`, then close 1008. The message
/// never repeats client input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The wire code.
    pub code: ErrorCode,
    /// An English explanation.
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The `error` message to send.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::error(self.code, self.message.clone())
    }
}

fn internal(error: StoreError) -> Refusal {
    tracing::error!(error = %error, "authenticating a hello failed");
    Refusal::new(
        ErrorCode::Internal,
        "the server could not check the credentials",
    )
}

/// Checks `auth` at `now`. `session_token` is the session cookie of the
/// upgrade request (`konsult_session`, `__Host-konsult_session` under TLS),
/// if any.
pub async fn authenticate(
    reads: &HelloReads,
    auth: &Auth,
    session_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Authenticated, Refusal> {
    match auth {
        Auth::LinkToken(token) => {
            let hello = reads
                .patients
                .ask(token.as_str().to_owned(), now)
                .await
                .ok_or_else(shutting_down)?;
            patient(hello, now)
        }
        Auth::Session(session) => {
            let token = session_token.ok_or_else(no_session)?;
            let consultation = ConsultationId::from_uuid(session.consultation);
            let hello = reads
                .therapists
                .ask((token.to_owned(), consultation), now)
                .await
                .ok_or_else(shutting_down)?;
            therapist(hello, consultation)
        }
    }
}

/// How many hellos one statement reads at most. In the join benchmark
/// (10,000 participants) 8 joined 40 % faster than one at a time and kept
/// 7.7 KiB a participant (one at a time 7.4); 16 and 64 joined no faster
/// and held 8.0 and 8.1-8.5 KiB after the wave.
const READ_BATCH: usize = 8;

/// How many statements of one kind run at once: while they run, the
/// hellos that arrive wait to be read together in the next.
const READS_IN_FLIGHT: usize = 2;

/// The hellos' reads. Hellos that arrive together are read together, one
/// statement for up to [`READ_BATCH`] of them: during a wave of joins each
/// hello cost a round trip to the database's thread and back, and those
/// thread hand-offs, not the reads, were most of a join's cost. Alone, a
/// hello is read at once, as before.
#[derive(Clone)]
pub struct HelloReads {
    patients: Batcher<String, Result<PatientHello, StoreError>>,
    therapists: Batcher<(String, ConsultationId), TherapistHello>,
}

type TherapistHello = Result<consultations::TherapistHello, StoreError>;

impl HelloReads {
    /// Starts the readers on `store` (they end with the last handle).
    pub fn start(store: &Store) -> Self {
        let patients = {
            let store = store.clone();
            Batcher::start(move |tokens: Vec<String>, now| {
                let store = store.clone();
                async move {
                    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
                    match store.patient_hellos(&tokens, now).await {
                        Ok(answers) => answers,
                        Err(e) => failed_for_each(tokens.len(), &e),
                    }
                }
            })
        };
        let therapists = {
            let store = store.clone();
            Batcher::start(move |asked: Vec<(String, ConsultationId)>, now| {
                let store = store.clone();
                async move {
                    let asked: Vec<(&str, ConsultationId)> =
                        asked.iter().map(|(t, c)| (t.as_str(), *c)).collect();
                    match store.therapist_hellos(&asked, now).await {
                        Ok(answers) => answers,
                        Err(e) => failed_for_each(asked.len(), &e),
                    }
                }
            })
        };
        Self {
            patients,
            therapists,
        }
    }
}

/// A statement that failed fails each of its hellos.
fn failed_for_each<T>(n: usize, error: &StoreError) -> Vec<Result<T, StoreError>> {
    (0..n)
        .map(|_| {
            Err(StoreError::Conflict(format!(
                "reading the hello failed: {error}"
            )))
        })
        .collect()
}

/// Gathers the questions that arrive while earlier reads run into one.
struct Batcher<Q, A> {
    asks: mpsc::Sender<(Q, DateTime<Utc>, oneshot::Sender<A>)>,
}

impl<Q, A> Clone for Batcher<Q, A> {
    fn clone(&self) -> Self {
        Self {
            asks: self.asks.clone(),
        }
    }
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// `read` answers a batch in its order, at the latest `now` asked.
    fn start<F, Fut>(read: F) -> Self
    where
        F: Fn(Vec<Q>, DateTime<Utc>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Vec<A>> + Send + 'static,
    {
        let (asks, mut queue) = mpsc::channel::<(Q, DateTime<Utc>, oneshot::Sender<A>)>(1024);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(READS_IN_FLIGHT));
            let mut batch = Vec::with_capacity(READ_BATCH);
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                if queue.recv_many(&mut batch, READ_BATCH).await == 0 {
                    return;
                }
                let now = batch
                    .iter()
                    .map(|(_, now, _)| *now)
                    .max()
                    .expect("not empty");
                let (questions, replies): (Vec<Q>, Vec<_>) =
                    batch.drain(..).map(|(q, _, reply)| (q, reply)).unzip();
                let answers = read(questions, now);
                tokio::spawn(async move {
                    for (reply, answer) in replies.into_iter().zip(answers.await) {
                        let _ = reply.send(answer);
                    }
                    drop(slot);
                });
            }
        });
        Self { asks }
    }

    /// The answer to `question` (`None` while the server shuts down).
    async fn ask(&self, question: Q, now: DateTime<Utc>) -> Option<A> {
        let (reply, answer) = oneshot::channel();
        self.asks.send((question, now, reply)).await.ok()?;
        answer.await.ok()
    }
}

fn shutting_down() -> Refusal {
    Refusal::new(ErrorCode::Internal, "the server is shutting down")
}

fn no_session() -> Refusal {
    Refusal::new(
        ErrorCode::Unauthorized,
        "log in to the dashboard first (session cookie)",
    )
}

fn patient(
    hello: Result<PatientHello, StoreError>,
    now: DateTime<Utc>,
) -> Result<Authenticated, Refusal> {
    let hello = match hello {
        Ok(hello) => hello,
        // The failed criteria are the clinic's assessment of the patient:
        // the therapist sees them, a holder of the link does not.
        Err(StoreError::Refused { .. }) => return Err(not_eligible()),
        Err(e) => return Err(internal(e)),
    };
    let (clinic, consultation, closes_at, link) = match hello.link {
        LinkStatus::Valid {
            clinic,
            consultation,
            closes_at,
            link,
        } => (clinic, consultation, closes_at, link),
        LinkStatus::NotYetOpen { opens_at, .. } => {
            return Err(Refusal::new(
                ErrorCode::LinkNotYetOpen,
                format!(
                    "the join link opens at {}",
                    opens_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
            ))
        }
        LinkStatus::Expired => {
            return Err(Refusal::new(
                ErrorCode::LinkExpired,
                "the join link has expired",
            ))
        }
        LinkStatus::Ended => {
            return Err(Refusal::new(
                ErrorCode::LinkExpired,
                "the consultation is over",
            ))
        }
        LinkStatus::Revoked => {
            return Err(Refusal::new(
                ErrorCode::LinkExpired,
                "the join link was withdrawn by the clinic",
            ))
        }
        LinkStatus::Unknown => {
            return Err(Refusal::new(
                ErrorCode::Unauthorized,
                "the join link is not valid",
            ))
        }
    };
    let Some((context, Ok(()))) = hello.call else {
        return Err(not_eligible());
    };
    let CallContext {
        consultation: c,
        evidence_policy,
    } = context;
    Ok(Authenticated {
        clinic,
        consultation,
        participant: participant_id(consultation, c.patient.as_uuid()),
        role: Role::Patient,
        policy: policy(&c, evidence_policy),
        evidence_policy,
        call_started: c.state == ConsultationState::InCall,
        link: Some(link),
        closes_at: Some(closes_at),
        credential_ttl: (closes_at - now).to_std().unwrap_or(Duration::ZERO),
        session: None,
    })
}

/// A participant's id in a consultation, as protocol version 2 shows it to
/// the others: derived from the consultation and the person (UUID v5), so
/// it is stable for the consultation and across nodes, and no account or
/// patient id goes on the wire.
pub fn participant_id(consultation: ConsultationId, person: Uuid) -> Uuid {
    Uuid::new_v5(&consultation.as_uuid(), person.as_bytes())
}

fn therapist(
    hello: TherapistHello,
    consultation: ConsultationId,
) -> Result<Authenticated, Refusal> {
    let (session, context) = hello.map_err(internal)?.ok_or_else(no_session)?;
    if !session.role.is_clinical() {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "a secretary's account cannot run a call",
        ));
    }
    // Another clinic's consultation is indistinguishable from none.
    let CallContext {
        consultation: c,
        evidence_policy,
    } = context.ok_or_else(|| {
        Refusal::new(
            ErrorCode::Unauthorized,
            "no such consultation in your clinic",
        )
    })?;
    if c.state.is_over() {
        return Err(Refusal::new(
            ErrorCode::WrongState,
            format!("the consultation is {}", c.state),
        ));
    }
    Ok(Authenticated {
        clinic: session.clinic,
        consultation,
        participant: participant_id(consultation, session.therapist.as_uuid()),
        role: Role::Therapist,
        policy: policy(&c, evidence_policy),
        evidence_policy,
        call_started: c.state == ConsultationState::InCall,
        link: None,
        closes_at: None,
        credential_ttl: THERAPIST_CREDENTIAL_TTL,
        session: Some(session.key),
    })
}

fn not_eligible() -> Refusal {
    Refusal::new(
        ErrorCode::NotEligible,
        "a video consultation is not possible now; please contact the clinic",
    )
}

/// Relay-only when the consultation was scheduled so, or when the clinic
/// accepts only relay-observed evidence (the relay must see the media).
fn policy(c: &Consultation, evidence: EvidencePolicy) -> CandidatePolicy {
    if c.relay_only || evidence.forces_relay_only() {
        CandidatePolicy::RelayOnly
    } else {
        CandidatePolicy::All
    }
}
