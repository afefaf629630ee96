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
//!
//! # On the wire
//!
//! Every frame of a remote connection, both ways, crosses NATS, so the two
//! messages that carry one travel in a binary envelope, the text as it is,
//! unescaped:
//!
//! | bytes | `ToOwner::Text`   | `ToEdge::Frame`   |
//! |-------|-------------------|-------------------|
//! | 0     | `T`               | `F`               |
//! | 1..9  | the connection id, big-endian | the same |
//! | 9..   | the frame's UTF-8 text        | the same |
//!
//! The owner hands the text to the hub task without copying it (checked as
//! UTF-8 where it lies); the edge copies it once, into the pump's frame.
//! The other messages (join, end, close, dropped) are rare and are JSON
//! objects, whose first byte `{` is their tag. A message that is empty,
//! has an unknown tag, is shorter than its header, carries text that is
//! not UTF-8, or is JSON but none of these messages is dropped with a
//! warning. A node from before this envelope drops the binary messages as
//! malformed: the nodes of a cluster are upgraded together.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::Subject;
use axum::body::Bytes;
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

/// First byte of a [`ToOwner::Text`].
const TEXT_TAG: u8 = b'T';

/// First byte of a [`ToEdge::Frame`].
const FRAME_TAG: u8 = b'F';

/// First byte of the other messages: JSON objects.
const JSON_TAG: u8 = b'{';

/// A frame's tag and connection id, before its text.
const FRAME_HEADER: usize = 1 + 8;

/// From an edge to the room's owner. [`ToOwner::encode`] and
/// [`ToOwner::decode`] are its wire format (the module's "On the wire"):
/// serde's JSON only for the variants other than `Text`.
#[derive(Serialize, Deserialize)]
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
    /// A text frame of the connection. In the binary envelope, never JSON.
    #[serde(skip)]
    Text { conn: ConnId, text: Utf8Bytes },
    /// The connection ended.
    Gone { conn: ConnId },
}

/// From a room's owner to an edge. [`ToEdge::encode`] and
/// [`ToEdge::decode`] are its wire format (the module's "On the wire"):
/// serde's JSON only for the variants other than `Frame`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToEdge {
    /// Write this frame. In the binary envelope, never JSON.
    #[serde(skip)]
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

impl ToOwner {
    fn encode(&self) -> Bytes {
        match self {
            Self::Text { conn, text } => encode_frame(TEXT_TAG, *conn, text),
            Self::Join { .. } | Self::Gone { .. } => encode_json(self),
        }
    }

    /// Takes `payload`'s text as it is, without a copy.
    fn decode(payload: Bytes) -> Result<Self, Malformed> {
        match payload.first() {
            Some(&TEXT_TAG) => {
                let (conn, text) = split_frame(payload)?;
                let text = Utf8Bytes::try_from(text)?;
                Ok(Self::Text { conn, text })
            }
            Some(&JSON_TAG) => Ok(serde_json::from_slice(&payload)?),
            Some(&tag) => Err(Malformed::Tag(tag)),
            None => Err(Malformed::Empty),
        }
    }
}

impl ToEdge {
    fn encode(&self) -> Bytes {
        match self {
            Self::Frame { conn, text } => encode_frame(FRAME_TAG, *conn, text),
            Self::Close { .. } | Self::Dropped { .. } => encode_json(self),
        }
    }

    /// Copies `payload`'s text once, into the frame the pump writes.
    fn decode(payload: Bytes) -> Result<Self, Malformed> {
        match payload.first() {
            Some(&FRAME_TAG) => {
                let (conn, text) = split_frame(payload)?;
                let text = std::str::from_utf8(&text)?.to_owned();
                Ok(Self::Frame { conn, text })
            }
            Some(&JSON_TAG) => Ok(serde_json::from_slice(&payload)?),
            Some(&tag) => Err(Malformed::Tag(tag)),
            None => Err(Malformed::Empty),
        }
    }
}

// Without the frames' text (SDP, candidates) or the join's tokens.
impl std::fmt::Debug for ToOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Join { conn, edge, .. } => f
                .debug_struct("Join")
                .field("conn", conn)
                .field("edge", edge)
                .finish_non_exhaustive(),
            Self::Text { conn, text } => f
                .debug_struct("Text")
                .field("conn", conn)
                .field("len", &text.len())
                .finish(),
            Self::Gone { conn } => f.debug_struct("Gone").field("conn", conn).finish(),
        }
    }
}

// Without the frames' text.
impl std::fmt::Debug for ToEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame { conn, text } => f
                .debug_struct("Frame")
                .field("conn", conn)
                .field("len", &text.len())
                .finish(),
            Self::Close { conn, code, reason } => f
                .debug_struct("Close")
                .field("conn", conn)
                .field("code", code)
                .field("reason", reason)
                .finish(),
            Self::Dropped { conn } => f.debug_struct("Dropped").field("conn", conn).finish(),
        }
    }
}

/// Why a message from another node was dropped.
#[derive(Debug, thiserror::Error)]
enum Malformed {
    #[error("an empty message")]
    Empty,
    #[error("an unknown tag ({0:#04x})")]
    Tag(u8),
    #[error("a frame of {0} bytes, shorter than its header")]
    Short(usize),
    #[error("a frame whose text is not UTF-8")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("not one of the JSON messages")]
    Json(#[from] serde_json::Error),
}

/// A frame's binary envelope: `tag`, `conn`, then `text` (its one copy).
fn encode_frame(tag: u8, conn: ConnId, text: &str) -> Bytes {
    let mut payload = Vec::with_capacity(FRAME_HEADER + text.len());
    payload.push(tag);
    payload.extend_from_slice(&conn.0.to_be_bytes());
    payload.extend_from_slice(text.as_bytes());
    Bytes::from(payload)
}

fn encode_json<T: Serialize>(message: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(message).expect("a remote message serialises"))
}

/// A frame's connection and its text's bytes (not checked as UTF-8 yet),
/// sharing `payload`'s memory.
fn split_frame(payload: Bytes) -> Result<(ConnId, Bytes), Malformed> {
    let Some(conn) = payload.get(1..FRAME_HEADER) else {
        return Err(Malformed::Short(payload.len()));
    };
    let conn = u64::from_be_bytes(conn.try_into().expect("8 bytes"));
    Ok((ConnId(conn), payload.slice(FRAME_HEADER..)))
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
        let subject = Subject::from(rooms_subject(&self.prefix, owner));
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
        let taken = tokio::time::timeout(
            JOIN_WAIT,
            self.client.request(subject.clone(), first.encode()),
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
                        let message = ToOwner::Text { conn, text };
                        remote.publish(&subject, message.encode()).await;
                    }
                    HubInput::Gone { conn } => {
                        let message = ToOwner::Gone { conn };
                        remote.publish(&subject, message.encode()).await;
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

    /// Publishes `payload` on `subject`, which is made once per connection
    /// (a clone shares it).
    async fn publish(&self, subject: &Subject, payload: Bytes) {
        if let Err(error) = self.client.publish(subject.clone(), payload).await {
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
        let input = match ToOwner::decode(message.payload) {
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
                let subject = Subject::from(conns_subject(&remote.prefix, edge));
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
                        back.publish(&subject, message.encode()).await;
                        if closing {
                            return;
                        }
                    }
                    let dropped = ToEdge::Dropped { conn };
                    back.publish(&subject, dropped.encode()).await;
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
        let output = match ToEdge::decode(message.payload) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate as the hub writes it, with text that JSON would escape.
    const CANDIDATE: &str = r#"{"type":"candidate","candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host","label":"ø \"q\"\n"}"#;

    /// A connection id of a node whose counter starts at 3 × 2³².
    const CONN: ConnId = ConnId(3 << 32 | 0x0102_0304);

    fn text(payload: Bytes) -> (ConnId, Utf8Bytes) {
        match ToOwner::decode(payload) {
            Ok(ToOwner::Text { conn, text }) => (conn, text),
            other => panic!("not a text: {other:?}"),
        }
    }

    fn frame(payload: Bytes) -> (ConnId, String) {
        match ToEdge::decode(payload) {
            Ok(ToEdge::Frame { conn, text }) => (conn, text),
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn a_text_is_its_tag_connection_and_text_as_is() {
        let payload = ToOwner::Text {
            conn: CONN,
            text: Utf8Bytes::from(CANDIDATE),
        }
        .encode();
        let mut expected = vec![b'T', 0, 0, 0, 3, 1, 2, 3, 4];
        expected.extend_from_slice(CANDIDATE.as_bytes());
        assert_eq!(payload, expected);
        assert_eq!(text(payload), (CONN, Utf8Bytes::from(CANDIDATE)));
    }

    #[test]
    fn a_frame_is_its_tag_connection_and_text_as_is() {
        let payload = ToEdge::Frame {
            conn: CONN,
            text: CANDIDATE.to_owned(),
        }
        .encode();
        let mut expected = vec![b'F', 0, 0, 0, 3, 1, 2, 3, 4];
        expected.extend_from_slice(CANDIDATE.as_bytes());
        assert_eq!(payload, expected);
        assert_eq!(frame(payload), (CONN, CANDIDATE.to_owned()));
    }

    #[test]
    fn empty_texts_and_extreme_ids_round_trip() {
        for conn in [ConnId(0), ConnId(u64::MAX)] {
            let payload = ToOwner::Text {
                conn,
                text: Utf8Bytes::from(""),
            }
            .encode();
            assert_eq!(payload.len(), FRAME_HEADER);
            assert_eq!(text(payload), (conn, Utf8Bytes::from("")));
            let payload = ToEdge::Frame {
                conn,
                text: String::new(),
            }
            .encode();
            assert_eq!(frame(payload), (conn, String::new()));
        }
    }

    #[test]
    fn the_owner_takes_a_text_where_it_lies() {
        let payload = ToOwner::Text {
            conn: CONN,
            text: Utf8Bytes::from(CANDIDATE),
        }
        .encode();
        let start = payload[FRAME_HEADER..].as_ptr();
        let (_, text) = text(payload);
        assert_eq!(text.as_str().as_ptr(), start);
    }

    #[test]
    fn the_rare_messages_are_json_and_round_trip() {
        let gone = ToOwner::Gone { conn: CONN }.encode();
        assert_eq!(gone[0], JSON_TAG);
        assert!(matches!(
            ToOwner::decode(gone),
            Ok(ToOwner::Gone { conn: CONN })
        ));

        let close = ToEdge::Close {
            conn: CONN,
            code: CloseReason::Moved.code(),
            reason: CloseReason::Moved.as_str().to_owned(),
        }
        .encode();
        assert_eq!(close[0], JSON_TAG);
        match ToEdge::decode(close) {
            Ok(ToEdge::Close { conn, code, reason }) => {
                assert_eq!(conn, CONN);
                assert_eq!(code, CloseReason::Moved.code());
                assert_eq!(reason, CloseReason::Moved.as_str());
            }
            other => panic!("not a close: {other:?}"),
        }

        let dropped = ToEdge::Dropped { conn: CONN }.encode();
        assert_eq!(dropped[0], JSON_TAG);
        assert!(matches!(
            ToEdge::decode(dropped),
            Ok(ToEdge::Dropped { conn: CONN })
        ));
    }

    fn with_header(tag: u8, text: &[u8]) -> Bytes {
        let mut payload = vec![tag];
        payload.extend_from_slice(&CONN.0.to_be_bytes());
        payload.extend_from_slice(text);
        Bytes::from(payload)
    }

    #[test]
    fn an_empty_message_is_malformed() {
        assert!(matches!(
            ToOwner::decode(Bytes::new()),
            Err(Malformed::Empty)
        ));
        assert!(matches!(
            ToEdge::decode(Bytes::new()),
            Err(Malformed::Empty)
        ));
    }

    #[test]
    fn an_unknown_tag_is_malformed() {
        for tag in [b'J', b'[', b' ', 0, 0xff] {
            let payload = with_header(tag, b"{}");
            assert!(matches!(
                ToOwner::decode(payload.clone()),
                Err(Malformed::Tag(t)) if t == tag
            ));
            assert!(matches!(
                ToEdge::decode(payload),
                Err(Malformed::Tag(t)) if t == tag
            ));
        }
    }

    #[test]
    fn each_side_refuses_the_other_sides_frames() {
        let text = ToOwner::Text {
            conn: CONN,
            text: Utf8Bytes::from(CANDIDATE),
        }
        .encode();
        assert!(matches!(
            ToEdge::decode(text),
            Err(Malformed::Tag(TEXT_TAG))
        ));
        let frame = ToEdge::Frame {
            conn: CONN,
            text: CANDIDATE.to_owned(),
        }
        .encode();
        assert!(matches!(
            ToOwner::decode(frame),
            Err(Malformed::Tag(FRAME_TAG))
        ));
    }

    #[test]
    fn a_frame_shorter_than_its_header_is_malformed() {
        let whole = with_header(TEXT_TAG, b"");
        for len in 1..FRAME_HEADER {
            assert!(matches!(
                ToOwner::decode(whole.slice(..len)),
                Err(Malformed::Short(l)) if l == len
            ));
        }
        let whole = with_header(FRAME_TAG, b"");
        for len in 1..FRAME_HEADER {
            assert!(matches!(
                ToEdge::decode(whole.slice(..len)),
                Err(Malformed::Short(l)) if l == len
            ));
        }
    }

    #[test]
    fn a_text_that_is_not_utf8_is_malformed() {
        // A lone continuation byte, a truncated "ø", an overlong "/", a
        // surrogate.
        for bad in [&b"\x80"[..], b"abc\xc3", b"\xc0\xaf", b"\xed\xa0\x80"] {
            assert!(matches!(
                ToOwner::decode(with_header(TEXT_TAG, bad)),
                Err(Malformed::Utf8(_))
            ));
            assert!(matches!(
                ToEdge::decode(with_header(FRAME_TAG, bad)),
                Err(Malformed::Utf8(_))
            ));
        }
    }

    #[test]
    fn json_that_is_not_a_rare_message_is_malformed() {
        let conn = CONN.0;
        for bad in [
            "{".to_owned(),
            "{}".to_owned(),
            r#"{"type":"gone"}"#.to_owned(),
            r#"{"type":"unknown","conn":1}"#.to_owned(),
            // The frames never travel as JSON.
            format!(r#"{{"type":"text","conn":{conn},"text":"x"}}"#),
            format!(r#"{{"type":"frame","conn":{conn},"text":"x"}}"#),
        ] {
            assert!(
                matches!(
                    ToOwner::decode(Bytes::from(bad.clone())),
                    Err(Malformed::Json(_))
                ),
                "{bad}"
            );
            assert!(
                matches!(
                    ToEdge::decode(Bytes::from(bad.clone())),
                    Err(Malformed::Json(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_shows_no_frame_text() {
        let text = ToOwner::Text {
            conn: CONN,
            text: Utf8Bytes::from(CANDIDATE),
        };
        let frame = ToEdge::Frame {
            conn: CONN,
            text: CANDIDATE.to_owned(),
        };
        for shown in [format!("{text:?}"), format!("{frame:?}")] {
            assert!(!shown.contains("candidate"), "{shown}");
        }
    }
}
