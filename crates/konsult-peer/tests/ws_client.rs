//! The WebSocket client against a small stand-in for the Konsult server's
//! `/ws` endpoint, written from docs/protocol.md: hello/welcome with the
//! therapist's cookie, waiting room and admission, relay of call messages,
//! `media_established` from both sides' stats, resume with replay, leave.
//! The real server's end-to-end tests use the same client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use konsult_peer::{ClientError, ClientOptions, Credentials, NetworkScope, PeerClient};
use konsult_protocol::{
    parse_client_message, parse_hello, Auth, ByeReason, CandidatePolicy, ClientMessage, ErrorCode,
    Limits, LinkToken, ResumeToken, Role, ServerBody, ServerMessage, Welcome, PROTOCOL_VERSION,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::header::COOKIE;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const LINK: &str = "good-link-token";
const COOKIE_OK: &str = "konsult_session=good-session";
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Participant {
    seq: u64,
    history: Vec<ServerMessage>,
    tx: Option<mpsc::UnboundedSender<ServerMessage>>,
    token: String,
    receiving_media: bool,
}

#[derive(Default)]
struct Room {
    therapist: Option<Participant>,
    patient: Option<Participant>,
    admitted: bool,
    established: bool,
    /// While set, resume attempts of the patient are cut off before
    /// `welcome`, as if the server were unreachable.
    hold_patient_resume: bool,
    replayed: usize,
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
            let message = ServerMessage { body, seq: p.seq };
            p.history.push(message.clone());
            if let Some(tx) = &p.tx {
                let _ = tx.send(message);
            }
        }
    }
}

type Shared = Arc<Mutex<Room>>;

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
    }))
}

async fn start_server(room: Shared) -> String {
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

fn options(admit: bool) -> ClientOptions {
    ClientOptions {
        admit,
        network: NetworkScope::Loopback,
        ..ClientOptions::default()
    }
}

fn patient() -> Credentials {
    Credentials::Patient {
        link_token: LinkToken::parse(LINK.to_owned()).unwrap(),
    }
}

fn therapist(cookie: &str) -> Credentials {
    Credentials::Therapist {
        cookie: cookie.to_owned(),
        consultation: Uuid::nil(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_therapist_join_get_admitted_and_establish_two_way_media() {
    let room = Shared::default();
    let server = start_server(Arc::clone(&room)).await;

    let mut p = PeerClient::connect(&server, patient(), options(false))
        .await
        .unwrap();
    assert_eq!(p.welcome().role, Role::Patient);
    let mut t = PeerClient::connect(&server, therapist(COOKIE_OK), options(true))
        .await
        .unwrap();
    assert_eq!(t.welcome().role, Role::Therapist);

    let (rp, rt) = tokio::join!(
        p.run_until_established(TIMEOUT),
        t.run_until_established(TIMEOUT)
    );
    let (rp, rt) = (rp.unwrap(), rt.unwrap());
    for (who, report) in [("patient", &rp), ("therapist", &rt)] {
        assert!(report.media_flowed_both_ways, "{who}: {report:#?}");
        assert!(report.media_established, "{who}");
        let media = report.media.as_ref().unwrap();
        assert!(media.received.video.frames > 0 && media.received.audio.frames > 0);
        assert!(media.time_to_first_media_ms.is_some());
        assert_eq!(report.resumes, 0);
    }
    assert_eq!(rt.role, Role::Therapist);
    assert!(room.lock().unwrap().established);

    // The therapist ends the consultation: the patient is told.
    let left = t.leave().await.unwrap();
    assert!(left.media_flowed_both_ways);
    match p.run_for(TIMEOUT).await {
        Err(ClientError::Ended(ByeReason::EndedByTherapist)) => {}
        other => panic!("expected the end of the consultation, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_whose_connection_drops_resumes_and_gets_the_missed_messages() {
    let room = Shared::default();
    let server = start_server(Arc::clone(&room)).await;

    let mut p = PeerClient::connect(&server, patient(), options(false))
        .await
        .unwrap();
    // The patient's network goes away; the server stays out of reach until
    // the therapist's offer waits for the patient.
    room.lock().unwrap().hold_patient_resume = true;
    p.drop_connection();

    let mut t = PeerClient::connect(&server, therapist(COOKIE_OK), options(true))
        .await
        .unwrap();
    let (rp, rt) = tokio::join!(
        p.run_until_established(TIMEOUT),
        t.run_until_established(TIMEOUT)
    );
    let (rp, rt) = (rp.unwrap(), rt.unwrap());
    assert!(rp.media_flowed_both_ways && rt.media_flowed_both_ways);
    assert!(rp.resumes >= 1, "{rp:#?}");
    // admitted, peer_joined and the offer at least came by replay.
    assert!(room.lock().unwrap().replayed >= 3);
}

#[tokio::test]
async fn a_therapist_without_a_valid_session_cookie_is_rejected() {
    let room = Shared::default();
    let server = start_server(Arc::clone(&room)).await;
    let result =
        PeerClient::connect(&server, therapist("konsult_session=forged"), options(true)).await;
    assert!(
        matches!(
            result,
            Err(ClientError::Rejected {
                code: ErrorCode::Unauthorized
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_connect_error() {
    // Bind and drop, so the port is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = PeerClient::connect(
        &format!("http://127.0.0.1:{port}"),
        patient(),
        options(false),
    )
    .await;
    assert!(matches!(result, Err(ClientError::Connect(_))), "{result:?}");
}
