//! The hub task: the one owner of the `konsult_signal::Hub`.
//!
//! Connection tasks send [`HubInput`]s over one channel; the task feeds each
//! to the core with the real monotonic `Instant`, drains the core's outputs
//! (frames and closes to the connections' channels, admission checks to
//! spawned store queries, room events to the recorder), and sleeps until the
//! core's next deadline. The recorder is a second task that applies the
//! store writes one after the other, so a consultation's events land in the
//! order they happened.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use konsult_domain::{ClinicId, ConsultationId};
use konsult_signal::{AdmissionCheckId, ConnId, Hub, JoinRequest, Output, RoomEvent};
use konsult_store::consultations::CallEvent;
use konsult_store::{Store, StoreError};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::ledger::{Action, Ledger};
use crate::relay::Turn;
use crate::state::Clock;

/// Failure code when the patient's join link closed before admission.
pub const WINDOW_CLOSED: &str = "window_closed";
/// Failure code when the consultation was ended, completed or cancelled
/// before admission.
pub const CONSULTATION_CLOSED: &str = "consultation_closed";

/// What a connection task tells the hub task.
#[derive(Debug)]
pub enum HubInput {
    /// A hello passed authentication: join the room.
    Join {
        /// The connection.
        conn: ConnId,
        /// For `Hub::handle_join`.
        request: JoinRequest,
        /// The consultation's clinic (for store writes).
        clinic: ClinicId,
        /// Patient: when the join link closes (checked again at admission).
        closes_at: Option<DateTime<Utc>>,
        /// Where the connection's frames go.
        writer: mpsc::Sender<Outbound>,
    },
    /// A text frame.
    Text {
        /// The connection.
        conn: ConnId,
        /// The frame.
        text: String,
    },
    /// The connection ended.
    Gone {
        /// The connection.
        conn: ConnId,
    },
    /// An admission check finished.
    Checked {
        /// The consultation.
        consultation: Uuid,
        /// The check it answers.
        check: AdmissionCheckId,
        /// `Err` holds failure codes.
        result: Result<(), Vec<String>>,
    },
}

/// What the hub task tells a connection's writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Write this JSON text frame.
    Frame(String),
    /// Send a close frame and stop.
    Close {
        /// The close code.
        code: u16,
        /// The reason text.
        reason: &'static str,
    },
}

struct Room {
    clinic: ClinicId,
    closes_at: Option<DateTime<Utc>>,
}

struct Record {
    clinic: ClinicId,
    consultation: Uuid,
    action: Action,
    at: DateTime<Utc>,
}

/// Everything the hub task needs besides the core.
pub struct HubTask {
    hub: Hub,
    inputs: mpsc::Receiver<HubInput>,
    /// For admission checks to answer; weak, so the task ends when every
    /// connection and the server are gone.
    feedback: mpsc::WeakSender<HubInput>,
    writers: HashMap<ConnId, mpsc::Sender<Outbound>>,
    conn_rooms: HashMap<ConnId, Uuid>,
    rooms: HashMap<Uuid, Room>,
    ledger: Ledger,
    records: mpsc::UnboundedSender<Record>,
    store: Store,
    clock: Clock,
}

impl HubTask {
    /// Prepares the task and starts the recorder.
    pub fn new(
        hub: Hub,
        inputs: mpsc::Receiver<HubInput>,
        feedback: mpsc::WeakSender<HubInput>,
        store: Store,
        clock: Clock,
        turn: Arc<Turn>,
    ) -> Self {
        let (records, records_rx) = mpsc::unbounded_channel();
        tokio::spawn(record(records_rx, store.clone(), turn));
        Self {
            hub,
            inputs,
            feedback,
            writers: HashMap::new(),
            conn_rooms: HashMap::new(),
            rooms: HashMap::new(),
            ledger: Ledger::default(),
            records,
            store,
            clock,
        }
    }

    /// Runs until every sender of inputs is gone.
    pub async fn run(mut self) {
        loop {
            let deadline = self.hub.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let touched = tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => return,
                },
                () = sleep => {
                    self.hub.handle_timeout(Instant::now());
                    None
                }
            };
            self.drain();
            self.close_empty_rooms(touched);
        }
    }

    /// Feeds one input to the core; returns the consultation it concerns,
    /// if known (`None`: look at every room).
    fn on_input(&mut self, input: HubInput) -> Option<Uuid> {
        let now = Instant::now();
        match input {
            HubInput::Join {
                conn,
                request,
                clinic,
                closes_at,
                writer,
            } => {
                let consultation = request.consultation;
                let room = self.rooms.entry(consultation).or_insert(Room {
                    clinic,
                    closes_at: None,
                });
                if closes_at.is_some() {
                    room.closes_at = closes_at;
                }
                self.writers.insert(conn, writer);
                self.conn_rooms.insert(conn, consultation);
                if let Err(error) = self.hub.handle_join(now, conn, request) {
                    tracing::error!(%error, "joining a connection failed");
                }
                Some(consultation)
            }
            HubInput::Text { conn, text } => {
                self.hub.handle_text(now, conn, &text);
                self.conn_rooms.get(&conn).copied()
            }
            HubInput::Gone { conn } => {
                self.writers.remove(&conn);
                let consultation = self.conn_rooms.remove(&conn);
                self.hub.handle_disconnect(now, conn);
                consultation
            }
            HubInput::Checked {
                consultation,
                check,
                result,
            } => {
                self.hub
                    .handle_admission_check(now, consultation, check, result);
                Some(consultation)
            }
        }
    }

    /// Carries out everything the core asked for.
    fn drain(&mut self) {
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Send { conn, message } => {
                    self.write(conn, Outbound::Frame(message.to_json()));
                }
                Output::Close { conn, reason } => {
                    tracing::debug!(%conn, reason = reason.as_str(), "closing connection");
                    self.write(
                        conn,
                        Outbound::Close {
                            code: reason.code(),
                            reason: reason.as_str(),
                        },
                    );
                    // Nothing more goes to a closed connection.
                    self.writers.remove(&conn);
                }
                Output::Event {
                    consultation,
                    event,
                } => self.on_event(consultation, &event),
                Output::AdmissionCheck {
                    consultation,
                    check,
                } => self.spawn_check(consultation, check),
            }
        }
    }

    fn write(&mut self, conn: ConnId, frame: Outbound) {
        let Some(writer) = self.writers.get(&conn) else {
            return;
        };
        if let Err(error) = writer.try_send(frame) {
            if matches!(error, mpsc::error::TrySendError::Full(_)) {
                // A client that does not read: drop it; it can resume and
                // get what it missed from the replay buffer.
                tracing::warn!(%conn, "connection does not keep up; closing it");
            }
            // Dropping the sender ends the connection's writer.
            self.writers.remove(&conn);
        }
    }

    fn on_event(&mut self, consultation: Uuid, event: &RoomEvent) {
        tracing::info!(consultation = %consultation, event = event_name(event), "room event");
        let actions = self.ledger.on_event(consultation, event);
        self.queue(consultation, actions);
    }

    fn queue(&mut self, consultation: Uuid, actions: Vec<Action>) {
        let Some(room) = self.rooms.get(&consultation) else {
            return;
        };
        let at = self.clock.now();
        for action in actions {
            let _ = self.records.send(Record {
                clinic: room.clinic,
                consultation,
                action,
                at,
            });
        }
    }

    /// Forgets rooms the core dropped, ending their call in the store if
    /// one was running.
    fn close_empty_rooms(&mut self, touched: Option<Uuid>) {
        let candidates: Vec<Uuid> = match touched {
            Some(consultation) => vec![consultation],
            None => self.rooms.keys().copied().collect(),
        };
        for consultation in candidates {
            if self.rooms.contains_key(&consultation) && self.hub.room(consultation).is_none() {
                let actions = self.ledger.on_room_closed(consultation);
                self.queue(consultation, actions);
                self.rooms.remove(&consultation);
            }
        }
    }

    fn spawn_check(&self, consultation: Uuid, check: AdmissionCheckId) {
        let Some(room) = self.rooms.get(&consultation) else {
            return;
        };
        let (clinic, closes_at) = (room.clinic, room.closes_at);
        let store = self.store.clone();
        let clock = self.clock.clone();
        let feedback = self.feedback.clone();
        tokio::spawn(async move {
            let id = ConsultationId::from_uuid(consultation);
            let Some(result) = admission_check(&store, &clock, clinic, id, closes_at).await else {
                // The core gives up after its timeout and tells the
                // therapist `admission_check_failed`.
                return;
            };
            if let Some(hub) = feedback.upgrade() {
                let _ = hub
                    .send(HubInput::Checked {
                        consultation,
                        check,
                        result,
                    })
                    .await;
            }
        });
    }
}

/// Re-checks, at admission, the link window and the patient's eligibility.
/// `None` when the store failed (the core then times the check out).
async fn admission_check(
    store: &Store,
    clock: &Clock,
    clinic: ClinicId,
    consultation: ConsultationId,
    closes_at: Option<DateTime<Utc>>,
) -> Option<Result<(), Vec<String>>> {
    let now = clock.now();
    if closes_at.is_some_and(|closes| now >= closes) {
        return Some(Err(vec![WINDOW_CLOSED.to_owned()]));
    }
    match store.admission_check(clinic, consultation, now).await {
        Ok(Ok(())) => Some(Ok(())),
        Ok(Err(failures)) => Some(Err(failures.iter().map(|f| f.code().to_owned()).collect())),
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
            Some(Err(vec![CONSULTATION_CLOSED.to_owned()]))
        }
        Err(error) => {
            tracing::error!(%consultation, %error, "admission check failed");
            None
        }
    }
}

/// Applies store writes in order, and closes relays.
async fn record(mut records: mpsc::UnboundedReceiver<Record>, store: Store, turn: Arc<Turn>) {
    while let Some(r) = records.recv().await {
        match r.action {
            Action::Record(event) => {
                let id = ConsultationId::from_uuid(r.consultation);
                if let Err(error) = store.record_call_event(r.clinic, id, event, r.at).await {
                    tracing::error!(
                        consultation = %r.consultation,
                        event = call_event_name(event),
                        %error,
                        "could not record a call event"
                    );
                }
            }
            Action::CloseRelay => {
                let turn = Arc::clone(&turn);
                let consultation = r.consultation;
                // It waits for in-flight relay traffic; do not hold up the
                // store writes behind it.
                tokio::spawn(async move {
                    match turn.close_consultation(consultation).await {
                        Ok(closed) => tracing::info!(
                            consultation = %consultation,
                            allocations = closed,
                            "closed the consultation on the relay"
                        ),
                        Err(error) => tracing::warn!(
                            consultation = %consultation,
                            error = %error,
                            "could not close the consultation on the relay"
                        ),
                    }
                });
            }
        }
    }
}

fn event_name(event: &RoomEvent) -> &'static str {
    match event {
        RoomEvent::PatientWaiting => "patient_waiting",
        RoomEvent::Admitted => "admitted",
        RoomEvent::Denied { .. } => "denied",
        RoomEvent::TwoWayEstablished => "two_way_established",
        RoomEvent::PeerLeft { .. } => "peer_left",
        RoomEvent::Ended { .. } => "ended",
    }
}

fn call_event_name(event: CallEvent) -> &'static str {
    match event {
        CallEvent::PatientWaiting => "patient_waiting",
        CallEvent::PatientLeftWaiting => "patient_left_waiting",
        CallEvent::Admitted => "admitted",
        CallEvent::TwoWayEstablished => "two_way_established",
        CallEvent::Ended => "ended",
    }
}
