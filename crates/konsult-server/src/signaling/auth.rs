//! Authenticating a `hello` against the store: the patient's join link or
//! the therapist's session cookie, the consultation's window and tenant.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use konsult_domain::{ClinicId, ConsultationId, ConsultationState};
use konsult_protocol::{Auth, CandidatePolicy, ErrorCode, Role, ServerMessage};
use konsult_store::audit::Actor;
use konsult_store::consultations::LinkStatus;
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
    /// `relay_only` when the consultation says so.
    pub policy: CandidatePolicy,
    /// Patient: when the join link stops working.
    pub closes_at: Option<DateTime<Utc>>,
    /// How long this participant's TURN credential may live.
    pub credential_ttl: Duration,
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

/// Checks `auth` at `now`. `session_token` is the `konsult_session` cookie
/// of the upgrade request, if any.
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
    let (clinic, consultation, closes_at) =
        match store.link_status(token, now).await.map_err(internal)? {
            LinkStatus::Valid {
                clinic,
                consultation,
                closes_at,
            } => (clinic, consultation, closes_at),
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
    let c = store
        .consultation(clinic, Actor::PatientLink(consultation), consultation, now)
        .await
        .map_err(internal)?;
    match store.admission_check(clinic, consultation, now).await {
        Ok(Ok(())) => {}
        // The failed criteria are the clinic's assessment of the patient:
        // the therapist sees them, a holder of the link does not.
        Ok(Err(_)) => {
            return Err(Refusal::new(
                ErrorCode::NotEligible,
                "a video consultation is not possible now; please contact the clinic",
            ))
        }
        Err(StoreError::Conflict(_)) => {
            return Err(Refusal::new(
                ErrorCode::LinkExpired,
                "the consultation is over",
            ))
        }
        Err(e) => return Err(internal(e)),
    }
    Ok(Authenticated {
        clinic,
        consultation,
        role: Role::Patient,
        policy: policy(c.relay_only),
        closes_at: Some(closes_at),
        credential_ttl: (closes_at - now).to_std().unwrap_or(Duration::ZERO),
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
    let session = store
        .session(token, now)
        .await
        .map_err(internal)?
        .ok_or_else(unauthorized)?;
    let c = match store
        .consultation(
            session.clinic,
            Actor::Therapist(session.therapist),
            consultation,
            now,
        )
        .await
    {
        Ok(c) => c,
        // Another clinic's consultation is indistinguishable from none.
        Err(StoreError::NotFound(_)) => {
            return Err(Refusal::new(
                ErrorCode::Unauthorized,
                "no such consultation in your clinic",
            ))
        }
        Err(e) => return Err(internal(e)),
    };
    if c.state.is_final() || c.state == ConsultationState::Ended {
        return Err(Refusal::new(
            ErrorCode::WrongState,
            format!("the consultation is {}", c.state),
        ));
    }
    Ok(Authenticated {
        clinic: session.clinic,
        consultation,
        role: Role::Therapist,
        policy: policy(c.relay_only),
        closes_at: None,
        credential_ttl: THERAPIST_CREDENTIAL_TTL,
    })
}

fn policy(relay_only: bool) -> CandidatePolicy {
    if relay_only {
        CandidatePolicy::RelayOnly
    } else {
        CandidatePolicy::All
    }
}
