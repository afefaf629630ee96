//! What the core asks its pump to do, and what it reports.

use konsult_domain::CallEvent;
use konsult_protocol::{CloseCode, ServerMessage};
use std::fmt;
use uuid::Uuid;

use crate::record::RoomRecord;

/// A WebSocket connection, named by the pump (any unique number).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// What the pump needs back with a room's outputs, opaque to the core:
/// given with each join ([`crate::JoinRequest::context`]) and with
/// `Hub::restore`, held by the room, and echoed in the outputs the pump
/// carries out for it ([`Output::Write`], [`Output::AdmissionCheck`],
/// [`Output::RoomClosed`]), so that the pump keeps no table of rooms beside
/// the core's. The core never reads it. Its `Debug` shows the length only.
#[derive(Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RoomContext(Box<[u8]>);

impl RoomContext {
    /// The pump's bytes, as they will come back.
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Self {
        RoomContext(bytes.into())
    }

    /// The bytes the pump gave.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for RoomContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomContext({} bytes)", self.0.len())
    }
}

/// Names one admission check, so a late answer to an earlier check cannot
/// admit a later patient. The pump passes it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdmissionCheckId(pub(crate) u64);

/// Names one [`Output::Write`], so the pump can acknowledge it with
/// `Hub::handle_written`. The pump passes it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId(pub(crate) u64);

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write-{}", self.0)
    }
}

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
    /// Write to the store, in one transaction and in the order the writes
    /// of a consultation were emitted: apply `events` to the consultation
    /// (the domain's lifecycle, `konsult_domain::CallFacts::on_call_event`),
    /// log them, and save `room` for resuming after a restart (`None`: the
    /// room is gone, delete what was saved). Then call `Hub::handle_written`
    /// with `write`: `Ok` once committed (retry failed writes until they
    /// commit), `Err` if the store refuses the events for good (the
    /// consultation is over or gone).
    ///
    /// With `hold`, the write carries an event clients may hear of only once
    /// it is committed (`CallEvent::is_durable`): the core keeps every
    /// message of the room back until then ("durable before visible").
    Write {
        /// The consultation.
        consultation: Uuid,
        /// Pass back unchanged.
        write: WriteId,
        /// What happened, oldest first (possibly none).
        events: Vec<CallEvent>,
        /// The room's state to save; `None` when the room is gone.
        room: Option<RoomRecord>,
        /// Whether the room's messages wait for this write.
        hold: bool,
        /// The room's context: the latest join's (or the restore's).
        context: RoomContext,
    },
    /// The therapist admitted the patient: re-check eligibility and the
    /// consultation window now (the database may have changed since the link
    /// was issued), then call `Hub::handle_admission_check` with `check`.
    AdmissionCheck {
        /// The consultation.
        consultation: Uuid,
        /// The participant to admit (its join's [`crate::JoinRequest::participant`]).
        participant: Uuid,
        /// Pass back unchanged.
        check: AdmissionCheckId,
        /// The context of the patient's latest join (or of the restore, if
        /// the patient has not come back since): the check is about the
        /// patient.
        context: RoomContext,
    },
    /// The room is gone from the core (its last write was emitted before
    /// this): the pump may forget what it keeps per room.
    RoomClosed {
        /// The consultation.
        consultation: Uuid,
        /// The room's last context.
        context: RoomContext,
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
    /// A join the room cannot take (the consultation is over), after an
    /// `error`.
    Rejected,
    /// The room moved to another node (`Hub::relinquish`); may resume.
    Moved,
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
            CloseReason::Rejected => CloseCode::REJECTED,
            CloseReason::Moved => CloseCode::MOVED,
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
            CloseReason::Rejected => "rejected",
            CloseReason::Moved => "moved",
        }
    }
}
