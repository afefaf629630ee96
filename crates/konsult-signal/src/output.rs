//! What the core asks its pump to do, and what it reports.

use konsult_protocol::{CloseCode, DeniedReason, Role, ServerMessage};
use std::fmt;
use uuid::Uuid;

/// A WebSocket connection, named by the pump (any unique number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// Names one admission check, so a late answer to an earlier check cannot
/// admit a later patient. The pump passes it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdmissionCheckId(pub(crate) u64);

/// Something the pump must do or record. Drain with `Hub::poll_output`
/// after every `handle_*` call.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write `message` (as JSON, [`ServerMessage::to_json`]) to `conn`.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: ServerMessage,
    },
    /// Close `conn` with [`CloseReason::code`] after writing every `Send`
    /// queued before this. Then call `Hub::handle_disconnect` for it as for
    /// any ended connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A lifecycle event of a consultation, to log or record (pseudonymous:
    /// no addresses, no SDP, no chat).
    Event {
        /// The consultation.
        consultation: Uuid,
        /// What happened.
        event: RoomEvent,
    },
    /// The therapist admitted the patient: re-check eligibility and the
    /// consultation window now (the database may have changed since the link
    /// was issued), then call `Hub::handle_admission_check` with `check`.
    AdmissionCheck {
        /// The consultation.
        consultation: Uuid,
        /// Pass back unchanged.
        check: AdmissionCheckId,
    },
}

/// Why the core closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// A newer connection of the same participant took over (`replaced`).
    Replaced,
    /// The patient was denied (`denied`).
    Denied,
    /// The session ended normally (`bye`).
    Bye,
    /// Too many errors within the error window; may resume.
    TooManyErrors,
    /// No frame within the heartbeat timeout; may resume.
    HeartbeatTimeout,
}

impl CloseReason {
    /// The WebSocket close code to send (see [`CloseCode`]).
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Replaced => CloseCode::REPLACED,
            CloseReason::Denied => CloseCode::DENIED,
            CloseReason::Bye => CloseCode::BYE,
            CloseReason::TooManyErrors => CloseCode::TOO_MANY_ERRORS,
            CloseReason::HeartbeatTimeout => CloseCode::HEARTBEAT_TIMEOUT,
        }
    }

    /// A short reason text for the close frame and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Replaced => "replaced",
            CloseReason::Denied => "denied",
            CloseReason::Bye => "bye",
            CloseReason::TooManyErrors => "too_many_errors",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
        }
    }
}

/// Lifecycle events of a consultation's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// A patient entered the waiting room (also again after a fresh device
    /// took over, or after the therapist's grace period expired mid-call).
    PatientWaiting,
    /// The admission check passed; the call starts.
    Admitted,
    /// The patient was turned away.
    Denied {
        /// By the therapist or by the eligibility check.
        reason: DeniedReason,
        /// For [`DeniedReason::NotEligible`]: the failed criteria.
        failures: Vec<String>,
    },
    /// Both sides reported received media in this call. Emitted once per call:
    /// the evidence of two-way communication that billing needs.
    TwoWayEstablished,
    /// A participant is gone from the consultation.
    PeerLeft {
        /// Who left.
        role: Role,
        /// How.
        reason: LeftReason,
    },
    /// The call (the admitted period) ended.
    Ended {
        /// How.
        reason: EndReason,
    },
}

/// How a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeftReason {
    /// It sent `leave`.
    Left,
    /// Its connection dropped and it did not resume within the grace period.
    GraceExpired,
    /// A new device without a valid resume token took the patient's place
    /// during the call (the new device waits for admission again).
    Replaced,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// `role` sent `leave`.
    Left {
        /// Who.
        role: Role,
    },
    /// `role`'s connection dropped and the grace period expired.
    GraceExpired {
        /// Who.
        role: Role,
    },
    /// A fresh patient device took over; it must be admitted again.
    PatientReplaced,
}
