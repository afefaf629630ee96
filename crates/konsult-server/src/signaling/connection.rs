//! One WebSocket: the upgrade (origin check, session cookie), the hello
//! (parsed by the core's rules, authenticated against the store), then a
//! pump that moves frames both ways between the socket and the hub task of
//! its room, in the connection's one task, until either side ends.

use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use konsult_protocol::{CloseCode, ErrorCode, ResumeToken, ServerMessage};
use konsult_signal::{ConnId, JoinRequest, LinkRef};
use rand::RngCore;
use tokio::sync::{mpsc, watch};

use super::auth::{authenticate, Refusal};
use super::hub::{HubInput, Outbound, PumpContext};
use super::outbox::{outbox, Inbox};
use crate::relay::Participant;
use crate::state::AppState;

/// How long a new connection may take to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued for one connection before it counts as not reading.
pub(super) const OUTBOUND_CAPACITY: usize = 512;
/// How long one frame (or the closing handshake) may wait for the socket
/// to take it. A client that stops reading fills the kernel's buffers and
/// then blocks the writer; after this long it is dropped for real (the
/// socket is closed and its buffers freed), not only on paper. A 64 KiB
/// frame needs 10 s only below ~50 kbit/s.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code for a binary frame (RFC 6455 7.4.1: unacceptable data type).
const UNSUPPORTED_DATA: u16 = 1003;
/// Close code when the server shuts down (RFC 6455 7.4.1: going away).
const GOING_AWAY: u16 = 1001;
/// Close code when the room's node stopped and the room is moving (RFC
/// 6455 / IANA: try again later).
const TRY_AGAIN_LATER: u16 = 1013;

/// `GET /ws`: upgrades to the signaling WebSocket.
///
/// A browser sends `Origin`; it must be the server's own public origin, or
/// another site could open the socket with the therapist's session cookie
/// (cross-site WebSocket hijacking). Clients that are not browsers send no
/// `Origin` and are accepted; they authenticate like everyone else.
pub async fn ws_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| same_origin(&state.public_url, origin));
        if !allowed {
            tracing::info!("refused a WebSocket upgrade from a foreign origin");
            return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
        }
    }
    let session_token = crate::auth::session_token_in(&headers, &state);
    let limit = state.signaling.max_message_bytes();
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(state.settings.signaling.ws_read_buffer_bytes.max(256))
        // Each message is written at once (the pump sends frame by frame),
        // not gathered into a 128 KiB buffer per connection.
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, state, session_token))
}

/// Whether `origin` (an `Origin` header) is the origin of `public_url`:
/// same scheme, host (case-insensitive) and port (default ports filled in).
pub fn same_origin(public_url: &str, origin: &str) -> bool {
    fn parts(text: &str) -> Option<(String, String, u16)> {
        let uri: Uri = text.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?.to_ascii_lowercase();
        let port = match (uri.port_u16(), scheme.as_str()) {
            (Some(port), _) => port,
            (None, "http") => 80,
            (None, "https") => 443,
            _ => return None,
        };
        Some((scheme, host, port))
    }
    match (parts(public_url), parts(origin)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A joined connection: what its pump needs.
struct Joined {
    conn: ConnId,
    /// The hub task of its room.
    hub: mpsc::Sender<HubInput>,
    /// The frames the hub task queued for it. When the hub drops its end
    /// (the connection does not read), they end and the socket closes.
    frames: Inbox,
}

/// The connection's task. The hello's state (the store's queries, the
/// server's state) lives in an allocation of its own, freed once the
/// connection joins; what stays for a connection that waits for hours is
/// the pump's (a plain `async fn` would also keep its arguments for its
/// whole life, twice: rust-lang/rust#62958).
fn run(
    socket: WebSocket,
    state: AppState,
    session_token: Option<String>,
) -> impl std::future::Future<Output = ()> + Send {
    let hello = Box::pin(async move {
        let mut socket = socket;
        let joined = hello(&mut socket, &state, session_token).await?;
        Some((socket, joined, state.signaling.shutdown_signal()))
    });
    async move {
        let Some((socket, joined, shutdown)) = hello.await else {
            return;
        };
        let conn = joined.conn;
        let hub = joined.hub.clone();
        pump(socket, joined, shutdown).await;
        // Queued behind the connection's frames, so the hub hears of them
        // first.
        if let Ok(permit) = hub.reserve().await {
            permit.send(HubInput::Gone { conn });
        }
        tracing::debug!(%conn, "connection ended");
    }
}

/// Reads, checks and authenticates the hello and joins the connection to
/// its room; `None` when it was refused (answered already) or the socket
/// ended.
async fn hello(
    socket: &mut WebSocket,
    state: &AppState,
    session_token: Option<String>,
) -> Option<Joined> {
    let signaling = &state.signaling;

    // 1. The hello.
    let text = match tokio::time::timeout(HELLO_TIMEOUT, first_frame(socket)).await {
        Ok(Some(Ok(text))) => text,
        Ok(Some(Err(()))) => {
            let refusal = Refusal {
                code: ErrorCode::Malformed,
                message: "frames must be JSON text frames".into(),
            };
            reject(socket, &refusal.to_message(), refusal.code).await;
            return None;
        }
        Ok(None) => return None,
        Err(_) => {
            let message = ServerMessage::error(
                ErrorCode::HelloRequired,
                format!("no hello within {} seconds", HELLO_TIMEOUT.as_secs()),
            );
            reject(socket, &message, ErrorCode::HelloRequired).await;
            return None;
        }
    };
    let hello = match signaling.parse_hello(&text) {
        Ok(hello) => hello,
        Err(rejected) => {
            tracing::info!(code = %rejected.code, "refused a hello");
            reject(socket, &rejected.to_message(), rejected.code).await;
            return None;
        }
    };

    // 2. Who is it?
    let now = state.clock.now();
    let who = match authenticate(
        signaling.hello_reads(),
        &hello.auth,
        session_token.as_deref(),
        now,
    )
    .await
    {
        Ok(who) => who,
        Err(refusal) => {
            tracing::info!(code = %refusal.code, "refused a hello");
            reject(socket, &refusal.to_message(), refusal.code).await;
            return None;
        }
    };

    // 3. Join.
    let conn = signaling.next_conn_id();
    let consultation = who.consultation.as_uuid();
    let participant = match &who.link {
        Some(link) => Participant::Patient { link },
        None => Participant::Therapist,
    };
    let ice_servers = signaling.turn().ice_servers(
        consultation,
        participant,
        who.policy,
        SystemTime::now(),
        who.credential_ttl,
    );
    let request = JoinRequest {
        consultation,
        participant: who.participant,
        role: who.role,
        version: hello.version,
        candidate_policy: who.policy,
        evidence_policy: who.evidence_policy,
        call_started: who.call_started,
        link: who.link.clone().map(LinkRef),
        ice_servers,
        resume_token_for_new: fresh_resume_token(),
        resume: hello.resume,
        features: hello.features,
        context: PumpContext {
            clinic: who.clinic,
            closes_at: who.closes_at,
        }
        .encode(),
    };
    let (writer, frames) = outbox(OUTBOUND_CAPACITY);
    let join = HubInput::Join {
        conn,
        request,
        session: who.session.clone(),
        writer,
    };
    tracing::info!(%conn, consultation = %consultation, role = %who.role, "joined");
    // Everything of this connection goes to the hub task of its room, on
    // this node or on the one that owns the room.
    let patience = signaling.move_patience();
    let Some(hub) = signaling.join(consultation, join, patience).await else {
        // Nowhere to run the room (the owner stopped and its lease did not
        // run out in time): the client reconnects with `resume` (protocol
        // section 12: any other close) and finds it moved.
        let message = ServerMessage::error(
            ErrorCode::Internal,
            "the consultation's server is changing; reconnect",
        );
        let _ = socket
            .send(Message::Text(Utf8Bytes::from(message.to_json())))
            .await;
        close_with(
            socket,
            Outbound::Close {
                code: TRY_AGAIN_LATER,
                reason: "room moving",
            },
        )
        .await;
        return None;
    };
    Some(Joined { conn, hub, frames })
}

/// The first data frame: `Ok(text)`, `Err(())` for a binary frame, `None`
/// when the socket ended first.
async fn first_frame(socket: &mut WebSocket) -> Option<Result<String, ()>> {
    while let Some(frame) = socket.recv().await {
        match frame {
            Ok(Message::Text(text)) => return Some(Ok(text.to_string())),
            Ok(Message::Binary(_)) => return Some(Err(())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
        }
    }
    None
}

/// Answers a refused hello with `error` and close 1008.
async fn reject(socket: &mut WebSocket, message: &ServerMessage, code: ErrorCode) {
    let _ = socket
        .send(Message::Text(Utf8Bytes::from(message.to_json())))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::REJECTED,
            reason: Utf8Bytes::from_static(code.as_str()),
        })))
        .await;
}

/// Moves frames both ways until either side ends, in the connection's one
/// task: socket → hub as [`HubInput::Text`] (the frame's bytes, not a
/// copy), hub → socket each write bounded by [`WRITE_TIMEOUT`]. While a
/// write waits for a client that does not read, its frames wait too.
/// Returning drops the socket, which closes it.
fn pump(
    socket: WebSocket,
    joined: Joined,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    let (mut socket, mut shutdown) = (socket, shutdown);
    let Joined {
        conn,
        hub,
        mut frames,
    } = joined;
    async move {
        // A binary frame was refused: the frames already queued go out, then
        // the close; nothing more is read.
        let mut closing = false;
        loop {
            let outbound = tokio::select! {
                biased;
                next = frames.recv() => next,
                () = stopping(&mut shutdown) => Some(Outbound::Close {
                    code: GOING_AWAY,
                    reason: "server shutting down",
                }),
                frame = socket.recv(), if !closing => {
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            // `reserve` rather than `send`: the waiting future
                            // does not carry the input, a smaller task.
                            let Ok(permit) = hub.reserve().await else {
                                return;
                            };
                            permit.send(HubInput::Text { conn, text });
                        }
                        Some(Ok(Message::Binary(_))) => {
                            // The protocol is JSON text only.
                            closing = true;
                            let close = Outbound::Close {
                                code: UNSUPPORTED_DATA,
                                reason: "binary frames are not accepted",
                            };
                            // Behind what is queued; with the queue full or the
                            // hub gone, at once.
                            if !frames.push_behind(close.clone()) {
                                close_with(&mut socket, close).await;
                                return;
                            }
                        }
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    }
                    continue;
                }
            };
            match outbound {
                Some(Outbound::Frame(text)) => {
                    let frame = Message::Text(Utf8Bytes::from(text));
                    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            tracing::warn!(%conn, "connection does not read; closing it");
                            return;
                        }
                    }
                }
                Some(close @ Outbound::Close { .. }) => {
                    close_with(&mut socket, close).await;
                    return;
                }
                // The hub dropped this connection (it does not keep up).
                None => {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Close(None)))
                        .await;
                    return;
                }
            }
        }
    }
}

/// Returns when the server begins to shut down.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The server's signal is gone with the server: nothing to wait for.
        std::future::pending::<()>().await;
    }
}

/// Sends the close frame of `close` (an [`Outbound::Close`]), bounded by
/// [`WRITE_TIMEOUT`].
async fn close_with(socket: &mut WebSocket, close: Outbound) {
    let Outbound::Close { code, reason } = close else {
        return;
    };
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame)).await;
}

/// 32 random bytes, base64url: the token for a new device session.
fn fresh_resume_token() -> ResumeToken {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    ResumeToken::parse(text).expect("43 base64url characters are a valid resume token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_own_origin_passes() {
        let public = "http://127.0.0.1:8080";
        assert!(same_origin(public, "http://127.0.0.1:8080"));
        assert!(!same_origin(public, "http://127.0.0.1:8081"));
        assert!(!same_origin(public, "https://127.0.0.1:8080"));
        assert!(!same_origin(public, "http://evil.example"));
        assert!(!same_origin(public, "null"));
        assert!(!same_origin(public, ""));
        let public = "https://Konsult.Example.dk";
        assert!(same_origin(public, "https://konsult.example.dk"));
        assert!(same_origin(public, "https://konsult.example.dk:443"));
        assert!(!same_origin(
            public,
            "https://konsult.example.dk.evil.example"
        ));
        assert!(!same_origin(public, "http://konsult.example.dk"));
    }

    #[test]
    fn resume_tokens_are_fresh_and_valid() {
        let a = fresh_resume_token();
        let b = fresh_resume_token();
        assert_eq!(a.as_str().len(), 43);
        assert!(!a.ct_eq(&b));
    }
}
