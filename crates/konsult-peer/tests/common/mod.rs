//! A small stand-in for the Konsult server's `/ws` endpoint, written from
//! docs/protocol.md: hello/welcome (the therapist by session cookie),
//! waiting room and admission, relay of call messages, `media_established`
//! from both sides' stats, resume with replay, leave. Enough to test the
//! client and the CLI before, and independently of, the real server.
#![allow(dead_code)] // each test crate uses part of it

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use konsult_protocol::{
    parse_client_message, parse_hello, Auth, ByeReason, CandidatePolicy, ClientMessage, ErrorCode,
    Limits, ResumeToken, Role, ServerBody, ServerMessage, Welcome, PROTOCOL_VERSION,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::header::COOKIE;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub const LINK: &str = "good-link-token";
pub const COOKIE_OK: &str = "konsult_session=good-session";

#[derive(Default)]
struct Participant {
    seq: u64,
    history: Vec<ServerMessage>,
    tx: Option<mpsc::UnboundedSender<ServerMessage>>,
    token: String,
    receiving_media: bool,
}

#[derive(Default)]
pub struct Room {
    therapist: Option<Participant>,
    patient: Option<Participant>,
    pub admitted: bool,
    pub established: bool,
    /// While set, resume attempts of the patient are cut off before
    /// `welcome`, as if the server were unreachable.
    pub hold_patient_resume: bool,
    pub replayed: usize,
}

impl Room {
    fn slot(&mut self, role: Role) -> &mut Option<Participant> {
        match role {
            Role::Therapist => &mut self.therapist,
            Role::Patient => &mut self.patient,
        }
    }

    /// Sends a sequenced message to a participant, keeping it for replay.
    fn push(&mut self, role: Role, body: ServerBody) {
        if let Some(p) = self.slot(role) {
            p.seq += 1;
            let message = ServerMessage {
                body,
                seq: p.seq,
                sender: None,
            };
            p.history.push(message.clone());
            if let Some(tx) = &p.tx {
                let _ = tx.send(message);
            }
        }
    }
}

pub type Shared = Arc<Mutex<Room>>;

fn welcome(role: Role, token: &str, resumed: bool, peer_present: bool) -> ServerMessage {
    ServerMessage::unsequenced(ServerBody::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        role,
        consultation: Uuid::nil(),
        ice_servers: vec![],
        candidate_policy: CandidatePolicy::All,
        peer_present,
        polite: role == Role::Patient,
        resume_token: ResumeToken::parse(token.to_owned()).unwrap(),
        resumed,
        limits: Limits {
            max_frame_bytes: 65536,
            ping_interval_ms: 10_000,
            heartbeat_timeout_ms: 30_000,
            resume_grace_ms: 30_000,
            rate_per_second: 20,
            rate_burst: 50,
            max_chat_chars: 2000,
        },
        participant: None,
        participants: None,
    }))
}

pub async fn start_server(room: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&room)));
        }
    });
    url
}

async fn serve(stream: TcpStream, room: Shared) {
    let mut cookie = None;
    // The callback's error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let capture = |request: &Request, response: Response| {
        assert_eq!(request.uri().path(), "/ws");
        cookie = request
            .headers()
            .get(COOKIE)
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(response)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, capture).await else {
        return;
    };
    let (mut write, mut read) = socket.split();
    let Some(Ok(Message::Text(first))) = read.next().await else {
        return;
    };
    let hello = parse_hello(first.as_str()).expect("the client's hello parses");
    assert_eq!(hello.version, PROTOCOL_VERSION);
    let role = match &hello.auth {
        Auth::LinkToken(t) if t.as_str() == LINK => Some(Role::Patient),
        Auth::Session(_) if cookie.as_deref() == Some(COOKIE_OK) => Some(Role::Therapist),
        _ => None,
    };
    let Some(role) = role else {
        let refusal = ServerMessage::error(ErrorCode::Unauthorized, "unauthorized");
        let _ = write.send(Message::text(refusal.to_json())).await;
        let _ = write
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "".into(),
            })))
            .await;
        return;
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut room = room.lock().unwrap();
        let peer_present = room.slot(role.other()).is_some();
        let resumable = hello.resume.as_ref().and_then(|r| {
            let p = room.slot(role).as_ref()?;
            (p.token == r.token.as_str()).then_some(r.last_seq)
        });
        match resumable {
            Some(_) if role == Role::Patient && room.hold_patient_resume => return,
            Some(last_seq) => {
                let p = room.slot(role).as_mut().unwrap();
                tx.send(welcome(role, &p.token.clone(), true, peer_present))
                    .unwrap();
                let missed: Vec<_> = p
                    .history
                    .iter()
                    .filter(|m| m.seq > last_seq)
                    .cloned()
                    .collect();
                for message in &missed {
                    tx.send(message.clone()).unwrap();
                }
                p.tx = Some(tx.clone());
                room.replayed += missed.len();
            }
            None => {
                let token = format!("resume-token-of-the-{role}-0123");
                tx.send(welcome(role, &token, false, peer_present)).unwrap();
                *room.slot(role) = Some(Participant {
                    token,
                    tx: Some(tx.clone()),
                    ..Participant::default()
                });
                match role {
                    Role::Patient => {
                        room.push(Role::Patient, ServerBody::Waiting {});
                        room.push(Role::Therapist, ServerBody::PatientWaiting {});
                    }
                    Role::Therapist if peer_present && !room.admitted => {
                        room.push(Role::Therapist, ServerBody::PatientWaiting {});
                    }
                    Role::Therapist => {}
                }
            }
        }
    }

    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if write.send(Message::text(message.to_json())).await.is_err() {
                return;
            }
        }
        let _ = write
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    });

    while let Some(Ok(frame)) = read.next().await {
        let Message::Text(text) = frame else { continue };
        let message = parse_client_message(text.as_str()).expect("client messages parse");
        let mut room = room.lock().unwrap();
        let other = role.other();
        match message {
            ClientMessage::Admit {} => {
                assert_eq!(role, Role::Therapist);
                room.admitted = true;
                room.push(Role::Patient, ServerBody::Admitted {});
                room.push(
                    Role::Patient,
                    ServerBody::PeerJoined {
                        role: Role::Therapist,
                    },
                );
                room.push(
                    Role::Therapist,
                    ServerBody::PeerJoined {
                        role: Role::Patient,
                    },
                );
            }
            ClientMessage::Offer { sdp } => {
                room.push(other, ServerBody::Offer { sdp });
                // The patient may come back once the offer waits for it.
                room.hold_patient_resume = false;
            }
            ClientMessage::Answer { sdp } => room.push(other, ServerBody::Answer { sdp }),
            ClientMessage::Candidate(c) => room.push(other, ServerBody::Candidate(c)),
            ClientMessage::EndOfCandidates(e) => room.push(other, ServerBody::EndOfCandidates(e)),
            ClientMessage::IceRestart {} => room.push(other, ServerBody::IceRestart {}),
            ClientMessage::Stats(stats) => {
                if let Some(p) = room.slot(role) {
                    p.receiving_media = stats.media_flowing();
                }
                let both = [Role::Therapist, Role::Patient]
                    .into_iter()
                    .all(|r| room.slot(r).as_ref().is_some_and(|p| p.receiving_media));
                if both && !room.established {
                    room.established = true;
                    room.push(Role::Therapist, ServerBody::MediaEstablished {});
                    room.push(Role::Patient, ServerBody::MediaEstablished {});
                }
            }
            ClientMessage::Ping {} => {
                let _ = tx.send(ServerMessage::unsequenced(ServerBody::Pong {}));
            }
            ClientMessage::Leave {} => {
                room.push(
                    role,
                    ServerBody::Bye {
                        reason: ByeReason::Left,
                    },
                );
                room.push(other, ServerBody::PeerLeft { role });
                if role == Role::Therapist && room.admitted {
                    room.push(
                        Role::Patient,
                        ServerBody::Bye {
                            reason: ByeReason::EndedByTherapist,
                        },
                    );
                }
                *room.slot(role) = None;
                break;
            }
            other => panic!("unexpected message {}", other.type_name()),
        }
    }
    // This connection is gone: stop sending to it (a resume installs a new
    // sender), and let the writer close the socket.
    {
        let mut room = room.lock().unwrap();
        if let Some(p) = room.slot(role) {
            if p.tx.as_ref().is_some_and(|t| t.same_channel(&tx)) {
                p.tx = None;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
