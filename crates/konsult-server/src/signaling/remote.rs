//! Participants whose room lives on another node (cluster mode, issue 16
//! item 1).
//!
//! Every room has one owner: the node that holds its lease
//! (`crate::lease`) and runs its hub. A connection that reaches another
//! node (the *edge*) is authenticated there, then joined to the room on
//! the owner over NATS: the edge publishes the join, the connection's text
//! frames and its end on `<prefix>.node.<owner>.rooms`; the owner feeds
//! them to the room's hub task as if the connection were its own and
//! publishes what the hub writes to it on `<prefix>.node.<edge>.conns`,
//! where the edge hands it to the connection's pump. Neither the pump nor
//! the hub task knows: each sees the same channels as for a local
//! connection. NATS keeps the order of one publisher's messages on a
//! subject, so a connection's frames arrive in order both ways.
//!
//! Connection ids are unique in the cluster: each node starts its counter
//! at a random multiple of 2³² ([`super::Signaling::start`]).
//!
//! An edge checks every second that the owner of each of its remote
//! connections still answers its ping subject (`crate::cluster`). When an
//! owner is gone (NATS says nobody listens there, or two checks in a row
//! go unanswered: a stalled process), the edge closes those connections
//! with 1013 (`moved`): their clients resume at once, and the node that
//! takes the room over from its lease adopts it. Without this they would
//! wait for their heartbeat timeout.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use konsult_signal::{CloseReason, ConnId, JoinRequest};
use konsult_store::therapists::SessionKey;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::hub::{HubInput, Outbound, SESSION_ENDED};
use super::outbox::{outbox, Outbox};
use super::WeakSignaling;

/// Inputs of one remote connection queued on its edge before its pump
/// waits.
const FORWARD_QUEUE: usize = 64;

/// How long an edge waits for the room's owner to take a join.
pub const JOIN_WAIT: Duration = Duration::from_secs(1);

/// How often an edge checks that the owners of its remote connections
/// answer, and how long each check waits.
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// Unanswered checks in a row after which an owner counts as gone.
const OWNER_MISSES: u32 = 2;

/// From an edge to the room's owner.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToOwner {
    /// A connection's hello passed on the edge: join it to the room.
    Join {
        conn: ConnId,
        edge: Uuid,
        request: Box<JoinRequest>,
        /// The therapist's login session (`SessionKey::as_hex`).
        session: Option<String>,
    },
    /// A text frame of the connection.
    Text { conn: ConnId, text: String },
    /// The connection ended.
    Gone { conn: ConnId },
}

/// From a room's owner to an edge.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToEdge {
    /// Write this frame.
    Frame { conn: ConnId, text: String },
    /// Close the connection.
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// The owner dropped the connection (it did not keep up).
    Dropped { conn: ConnId },
}

/// This node's part in remote connections, as an edge and as an owner.
pub struct Remote {
    client: async_nats::Client,
    prefix: String,
    node: Uuid,
    /// The connections of this node whose room is elsewhere: their room's
    /// owner and their pumps' queues.
    conns: Mutex<HashMap<ConnId, (Uuid, Outbox)>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Subscribes to this node's two subjects and starts serving them.
    pub async fn start(
        client: async_nats::Client,
        prefix: &str,
        node: Uuid,
        signaling: WeakSignaling,
    ) -> anyhow::Result<Arc<Self>> {
        let rooms = client.subscribe(rooms_subject(prefix, node)).await?;
        let conns = client.subscribe(conns_subject(prefix, node)).await?;
        let remote = Arc::new(Self {
            client,
            prefix: prefix.to_owned(),
            node,
            conns: Mutex::default(),
        });
        tokio::spawn(serve_rooms(Arc::clone(&remote), rooms, signaling));
        tokio::spawn(serve_conns(Arc::downgrade(&remote), conns));
        tokio::spawn(watch_owners(Arc::downgrade(&remote)));
        Ok(remote)
    }

    /// Joins a connection of this node to its room on `owner`: `join` is
    /// the [`HubInput::Join`] a local room would get. Returns where the
    /// pump sends the connection's frames and its end, or the join back
    /// when the owner did not take it within [`JOIN_WAIT`] (it stopped: its
    /// lease will run out and the room can be claimed); `Err(None)` when
    /// the connection was closed meanwhile.
    pub async fn join(
        self: &Arc<Self>,
        owner: Uuid,
        join: HubInput,
    ) -> Result<mpsc::Sender<HubInput>, Option<HubInput>> {
        let HubInput::Join {
            conn,
            request,
            session,
            writer,
        } = join
        else {
            unreachable!("Remote::join takes a HubInput::Join");
        };
        let subject = rooms_subject(&self.prefix, owner);
        let first = ToOwner::Join {
            conn,
            edge: self.node,
            request: Box::new(request),
            session: session.as_ref().map(|s| s.as_hex().to_owned()),
        };
        // Registered before the join is sent: the owner's first frames (the
        // welcome) may arrive before its answer to the join.
        self.conns
            .lock()
            .expect("remote lock")
            .insert(conn, (owner, writer));
        let payload = serde_json::to_vec(&first).expect("a remote message serialises");
        let taken = tokio::time::timeout(
            JOIN_WAIT,
            self.client.request(subject.clone(), payload.into()),
        )
        .await;
        let ToOwner::Join { request, .. } = first else {
            unreachable!("built above");
        };
        if !matches!(taken, Ok(Ok(_))) {
            tracing::warn!(%conn, %owner, "the room's node did not take a join");
            // Its queue back, for another try; gone if the owner closed it.
            let writer = self.conns.lock().expect("remote lock").remove(&conn);
            return Err(writer.map(|(_, writer)| HubInput::Join {
                conn,
                request: *request,
                session,
                writer,
            }));
        }
        let (to_owner, mut inputs) = mpsc::channel(FORWARD_QUEUE);
        let remote = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(input) = inputs.recv().await {
                match input {
                    HubInput::Text { conn, text } => {
                        let text = text.as_str().to_owned();
                        remote
                            .publish(&subject, &ToOwner::Text { conn, text })
                            .await;
                    }
                    HubInput::Gone { conn } => {
                        remote.publish(&subject, &ToOwner::Gone { conn }).await;
                        break;
                    }
                    _ => {}
                }
            }
            remote.conns.lock().expect("remote lock").remove(&conn);
        });
        Ok(to_owner)
    }

    /// `owner` is gone: closes this node's connections to its rooms with
    /// [`CloseReason::Moved`], so that their clients resume (and find the
    /// room's next owner). Returns how many were closed.
    fn owner_gone(&self, owner: Uuid) -> usize {
        let mut conns = self.conns.lock().expect("remote lock");
        let gone: Vec<ConnId> = conns
            .iter()
            .filter(|(_, (o, _))| *o == owner)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in &gone {
            if let Some((_, writer)) = conns.remove(conn) {
                let _ = writer.try_send(Outbound::Close {
                    code: CloseReason::Moved.code(),
                    reason: CloseReason::Moved.as_str(),
                });
            }
        }
        gone.len()
    }

    async fn publish<T: Serialize>(&self, subject: &str, message: &T) {
        let payload = serde_json::to_vec(message).expect("a remote message serialises");
        if let Err(error) = self
            .client
            .publish(subject.to_owned(), payload.into())
            .await
        {
            tracing::warn!(%error, "could not reach another node for a remote connection");
        }
    }
}

fn rooms_subject(prefix: &str, node: Uuid) -> String {
    format!("{prefix}.node.{node}.rooms")
}

fn conns_subject(prefix: &str, node: Uuid) -> String {
    format!("{prefix}.node.{node}.conns")
}

/// As the edge: checks every [`OWNER_CHECK`] that the owners of this
/// node's remote connections answer their ping subject, and closes the
/// connections of an owner that is gone ([`Remote::owner_gone`]).
async fn watch_owners(remote: Weak<Remote>) {
    let mut tick = tokio::time::interval(OWNER_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut misses: HashMap<Uuid, u32> = HashMap::new();
    loop {
        tick.tick().await;
        let Some(remote) = remote.upgrade() else {
            return;
        };
        let owners: HashSet<Uuid> = {
            let conns = remote.conns.lock().expect("remote lock");
            conns.values().map(|(owner, _)| *owner).collect()
        };
        misses.retain(|owner, _| owners.contains(owner));
        let checks = owners.into_iter().map(|owner| {
            let client = remote.client.clone();
            let subject = crate::cluster::ping_subject(&remote.prefix, owner);
            async move {
                let answer =
                    tokio::time::timeout(OWNER_CHECK, client.request(subject, Vec::new().into()))
                        .await;
                (owner, answer)
            }
        });
        for (owner, answer) in futures_util::future::join_all(checks).await {
            let gone = match answer {
                Ok(Ok(_)) => {
                    misses.remove(&owner);
                    false
                }
                Ok(Err(error))
                    if error.kind() == async_nats::client::RequestErrorKind::NoResponders =>
                {
                    true
                }
                _ => {
                    let missed = misses.entry(owner).or_default();
                    *missed += 1;
                    *missed >= OWNER_MISSES
                }
            };
            if gone {
                misses.remove(&owner);
                let closed = remote.owner_gone(owner);
                tracing::warn!(%owner, closed, "a room's node is gone: its remote connections resume elsewhere");
            }
        }
    }
}

/// As the owner: feeds the hub tasks what edges send for their
/// connections, and sends each connection what its hub writes.
async fn serve_rooms(
    remote: Arc<Remote>,
    mut messages: async_nats::Subscriber,
    signaling: WeakSignaling,
) {
    // Each remote connection's room.
    let mut rooms: HashMap<ConnId, Uuid> = HashMap::new();
    while let Some(message) = messages.next().await {
        let Some(signaling) = signaling.upgrade() else {
            return;
        };
        let input = match serde_json::from_slice::<ToOwner>(&message.payload) {
            Ok(input) => input,
            Err(error) => {
                tracing::warn!(%error, "dropped a malformed message from another node");
                continue;
            }
        };
        match input {
            ToOwner::Join {
                conn,
                edge,
                request,
                session,
            } => {
                let consultation = request.consultation;
                if !signaling.owns_for_join(consultation) {
                    // Not ours (any more): unanswered, the edge asks again
                    // and finds the room's owner.
                    tracing::info!(%conn, %consultation, "refused a join for a room this node does not own");
                    continue;
                }
                let (writer, mut frames) = outbox(super::connection::OUTBOUND_CAPACITY);
                let subject = conns_subject(&remote.prefix, edge);
                let back = Arc::clone(&remote);
                tokio::spawn(async move {
                    while let Some(frame) = frames.recv().await {
                        let message = match frame {
                            Outbound::Frame(text) => ToEdge::Frame { conn, text },
                            Outbound::Close { code, reason } => ToEdge::Close {
                                conn,
                                code,
                                reason: reason.to_owned(),
                            },
                        };
                        let closing = matches!(message, ToEdge::Close { .. });
                        back.publish(&subject, &message).await;
                        if closing {
                            return;
                        }
                    }
                    back.publish(&subject, &ToEdge::Dropped { conn }).await;
                });
                // The edge asks again when a join was taken too late for it
                // (it gave up and dropped its end): the earlier one is gone.
                if let Some(earlier) = rooms.insert(conn, consultation) {
                    signaling.to_room(earlier, HubInput::Gone { conn }).await;
                }
                let join = HubInput::Join {
                    conn,
                    request: *request,
                    session: session.as_deref().and_then(SessionKey::from_hex),
                    writer,
                };
                signaling.to_room(consultation, join).await;
                // Taken: the edge may forward the connection's frames.
                if let Some(reply) = message.reply {
                    let _ = remote.client.publish(reply, Vec::new().into()).await;
                }
            }
            ToOwner::Text { conn, text } => {
                if let Some(consultation) = rooms.get(&conn) {
                    let text = Utf8Bytes::from(text);
                    signaling
                        .to_room(*consultation, HubInput::Text { conn, text })
                        .await;
                }
            }
            ToOwner::Gone { conn } => {
                if let Some(consultation) = rooms.remove(&conn) {
                    signaling
                        .to_room(consultation, HubInput::Gone { conn })
                        .await;
                }
            }
        }
    }
}

/// As the edge: hands each connection what its room's owner sends it.
async fn serve_conns(remote: Weak<Remote>, mut messages: async_nats::Subscriber) {
    while let Some(message) = messages.next().await {
        let Some(remote) = remote.upgrade() else {
            return;
        };
        let output = match serde_json::from_slice::<ToEdge>(&message.payload) {
            Ok(output) => output,
            Err(error) => {
                tracing::warn!(%error, "dropped a malformed message from another node");
                continue;
            }
        };
        let mut conns = remote.conns.lock().expect("remote lock");
        match output {
            ToEdge::Frame { conn, text } => {
                let refused = conns
                    .get(&conn)
                    .is_some_and(|(_, writer)| writer.try_send(Outbound::Frame(text)).is_err());
                if refused {
                    // It does not read: dropping its queue ends its pump.
                    conns.remove(&conn);
                }
            }
            ToEdge::Close { conn, code, reason } => {
                if let Some((_, writer)) = conns.remove(&conn) {
                    let _ = writer.try_send(Outbound::Close {
                        code,
                        reason: static_reason(&reason),
                    });
                }
            }
            ToEdge::Dropped { conn } => {
                conns.remove(&conn);
            }
        }
    }
}

/// The close reason the owner's hub gave, as the pump's static text.
fn static_reason(reason: &str) -> &'static str {
    [
        CloseReason::Replaced,
        CloseReason::Denied,
        CloseReason::Bye,
        CloseReason::TooManyErrors,
        CloseReason::HeartbeatTimeout,
        CloseReason::Rejected,
        CloseReason::Moved,
    ]
    .into_iter()
    .map(CloseReason::as_str)
    .chain([SESSION_ENDED])
    .find(|known| *known == reason)
    .unwrap_or("closed")
}
