//! Authenticating a `hello` against the store: the patient's join link or
//! the therapist's session cookie, the consultation's window and tenant.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use konsult_domain::{ClinicId, ConsultationId, ConsultationState, EvidencePolicy};
use konsult_protocol::{Auth, CandidatePolicy, ErrorCode, Role, ServerMessage};
use konsult_store::consultations::{CallContext, Consultation, LinkStatus};
use konsult_store::therapists::SessionKey;
use konsult_store::{Store, StoreError};

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
    /// Who connects.
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
    store: &Store,
    auth: &Auth,
    session_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Authenticated, Refusal> {
    match auth {
        Auth::LinkToken(token) => patient(store, token.as_str(), now).await,
        Auth::Session(session) => {
            therapist(
                store,
                ConsultationId::from_uuid(session.consultation),
                session_token,
                now,
            )
            .await
        }
    }
}

async fn patient(store: &Store, token: &str, now: DateTime<Utc>) -> Result<Authenticated, Refusal> {
    let hello = match store.patient_hello(token, now).await {
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

async fn therapist(
    store: &Store,
    consultation: ConsultationId,
    session_token: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Authenticated, Refusal> {
    let unauthorized = || {
        Refusal::new(
            ErrorCode::Unauthorized,
            "log in to the dashboard first (session cookie)",
        )
    };
    let token = session_token.ok_or_else(unauthorized)?;
    let (session, context) = store
        .therapist_hello(token, consultation, now)
        .await
        .map_err(internal)?
        .ok_or_else(unauthorized)?;
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
