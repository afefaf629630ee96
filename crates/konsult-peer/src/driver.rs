//! Negotiating a [`Peer`] over Konsult signaling, on any transport.
//!
//! [`Call`] turns the call-related server messages (offer, answer,
//! candidates, ICE restart requests) into calls on its [`Peer`], and the
//! peer's events into client messages, all in `konsult-protocol` types.
//! It does not care how messages travel: anything implementing
//! [`SignalTransport`] will do: the WebSocket client of [`crate::client`],
//! or [`direct_link`], which connects two calls in one process the way the
//! server would relay between them.
//!
//! Order of use: [`Call::new`] when the other participant is in the call
//! (`peer_joined`), then either [`Call::run_until_media`] /
//! [`Call::run_for`] with a transport, or, when the caller has its own
//! loop, [`Call::start`] once and then [`Call::handle_signal`] for each
//! call message and [`Call::handle_event`] for each [`Call::next_event`].
//! [`Call::close`] at the end.
//!
//! The therapist is the offerer (as in the browser client, where the
//! patient is the polite side). A failed connection is repaired by an ICE
//! restart: the offerer sends a restart offer, the answerer asks the
//! offerer for one with `ice_restart`.

use std::time::{Duration, Instant};

use konsult_protocol::{
    CandidateLine, ClientMessage, ConnectionState as WireState, EndOfCandidates,
    IceCandidate as WireCandidate, IceServer as WireIceServer, Mid, Role, Sdp, ServerBody,
    ServerMessage, Stats, Ufrag,
};
use tokio::sync::mpsc;

use crate::config::{IceServer, PeerConfig};
use crate::peer::{ConnectionState, IceCandidate, Peer, PeerError, PeerEvent};
use crate::report::{CandidateType, MediaReport};

/// How often the run loops look at the counters.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How often the run loops report statistics to the server.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// ICE restarts one call attempts before it gives up on repairing itself.
const MAX_ICE_RESTARTS: u32 = 5;

/// Which side of the offer/answer exchange a [`Call`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// Sends the offers, including ICE restart offers.
    Offerer,
    /// Answers offers and asks the offerer for ICE restarts.
    Answerer,
}

impl Negotiation {
    /// The default for a role: the therapist offers, the patient answers.
    pub fn for_role(role: Role) -> Self {
        match role {
            Role::Therapist => Negotiation::Offerer,
            Role::Patient => Negotiation::Answerer,
        }
    }
}

/// Why a call could not go on.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The WebRTC peer failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The signaling transport closed.
    #[error("the signaling connection closed")]
    SignalingClosed,
    /// The other participant left the call.
    #[error("the other participant left")]
    PeerLeft,
    /// The server ended the session.
    #[error("the server ended the session ({0})")]
    Ended(&'static str),
    /// Media did not flow both ways in time. The report shows how far it got.
    #[error("media did not flow both ways within {waited:?}")]
    Timeout {
        /// How long the call waited.
        waited: Duration,
        /// What had flowed by then.
        report: Box<MediaReport>,
    },
    /// The local WebRTC stack produced something the protocol cannot carry
    /// (for example an over-long candidate line).
    #[error("could not express a local {0} in the signaling protocol")]
    Unrepresentable(&'static str),
}

/// Carries signaling messages for a [`Call`]. `recv` must be
/// cancellation-safe: the run loops select on it.
pub trait SignalTransport {
    /// Sends one message to the server.
    fn send(
        &mut self,
        message: ClientMessage,
    ) -> impl std::future::Future<Output = Result<(), CallError>> + Send;

    /// The next message from the server; `None` when the transport closed.
    fn recv(&mut self) -> impl std::future::Future<Output = Option<ServerMessage>> + Send;
}

/// One side of an in-process signaling link; see [`direct_link`].
#[derive(Debug)]
pub struct DirectTransport {
    to_other: mpsc::UnboundedSender<ServerMessage>,
    inbox: mpsc::UnboundedReceiver<ServerMessage>,
    /// Role of the participant on the other end, for `peer_left`.
    own_role: Role,
    seq: u64,
}

/// Two transports wired back to back, relaying what one side sends to the
/// other the way the Konsult server does for call messages: offers,
/// answers, candidates, end of candidates, ICE restart requests, and
/// `leave` as `peer_left`. Statistics and pings are consumed. Sequence
/// numbers start at 1 on each side.
pub fn direct_link(first: Role, second: Role) -> (DirectTransport, DirectTransport) {
    let (to_first, first_inbox) = mpsc::unbounded_channel();
    let (to_second, second_inbox) = mpsc::unbounded_channel();
    (
        DirectTransport {
            to_other: to_second,
            inbox: first_inbox,
            own_role: first,
            seq: 0,
        },
        DirectTransport {
            to_other: to_first,
            inbox: second_inbox,
            own_role: second,
            seq: 0,
        },
    )
}

impl SignalTransport for DirectTransport {
    async fn send(&mut self, message: ClientMessage) -> Result<(), CallError> {
        let body = match message {
            ClientMessage::Offer { sdp } => ServerBody::Offer { sdp },
            ClientMessage::Answer { sdp } => ServerBody::Answer { sdp },
            ClientMessage::Candidate(c) => ServerBody::Candidate(c),
            ClientMessage::EndOfCandidates(e) => ServerBody::EndOfCandidates(e),
            ClientMessage::IceRestart {} => ServerBody::IceRestart {},
            ClientMessage::Leave {} => ServerBody::PeerLeft {
                role: self.own_role,
            },
            _ => return Ok(()),
        };
        self.seq += 1;
        self.to_other
            .send(ServerMessage {
                body,
                seq: self.seq,
                sender: None,
            })
            .map_err(|_| CallError::SignalingClosed)
    }

    async fn recv(&mut self) -> Option<ServerMessage> {
        self.inbox.recv().await
    }
}

/// A [`Peer`] negotiated over Konsult signaling; see the module docs.
#[derive(Debug)]
pub struct Call {
    peer: Peer,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    negotiation: Negotiation,
    /// Whether an offer of ours awaits its answer.
    offer_pending: bool,
    /// Whether a restart is wanted as soon as the pending offer is answered.
    restart_wanted: bool,
    restarts: u32,
    started: Instant,
    /// When statistics were last reported to the server.
    last_stats: Option<Instant>,
    /// Whether a report already told the server that media flows.
    reported_flowing: bool,
}

impl Call {
    /// Creates the peer. `started` is the reference for the time to first
    /// media (for example the moment of admission).
    pub async fn new(
        config: PeerConfig,
        negotiation: Negotiation,
        started: Instant,
    ) -> Result<Self, CallError> {
        let (peer, events) = Peer::new(config).await?;
        Ok(Self {
            peer,
            events,
            negotiation,
            offer_pending: false,
            restart_wanted: false,
            restarts: 0,
            started,
            last_stats: None,
            reported_flowing: false,
        })
    }

    /// The underlying peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// ICE restarts this call has started or asked for.
    pub fn ice_restarts(&self) -> u32 {
        self.restarts
    }

    /// What flowed so far, timed from the `started` instant.
    pub async fn report(&self) -> MediaReport {
        self.peer.report_since(self.started).await
    }

    /// The first messages of the call: the offerer's offer; nothing for
    /// the answerer.
    pub async fn start(&mut self) -> Result<Vec<ClientMessage>, CallError> {
        match self.negotiation {
            Negotiation::Offerer => Ok(vec![self.offer(false).await?]),
            Negotiation::Answerer => Ok(Vec::new()),
        }
    }

    /// Starts an ICE restart now: the offerer sends a restart offer, the
    /// answerer asks the offerer for one.
    pub async fn restart_ice(&mut self) -> Result<Vec<ClientMessage>, CallError> {
        self.restarts += 1;
        tracing::info!(restarts = self.restarts, "ICE restart");
        match self.negotiation {
            Negotiation::Answerer => Ok(vec![ClientMessage::IceRestart {}]),
            Negotiation::Offerer if self.offer_pending => {
                // One offer at a time: restart once the answer is in.
                self.restart_wanted = true;
                Ok(Vec::new())
            }
            Negotiation::Offerer => Ok(vec![self.offer(true).await?]),
        }
    }

    async fn offer(&mut self, ice_restart: bool) -> Result<ClientMessage, CallError> {
        let sdp = self.peer.create_offer(ice_restart).await?;
        self.offer_pending = true;
        let sdp = Sdp::parse(sdp).map_err(|_| CallError::Unrepresentable("offer"))?;
        Ok(ClientMessage::Offer { sdp })
    }

    /// Handles one message from the server. Messages that do not concern
    /// the call (welcome, pong, chat, ...) are ignored; `peer_left` and
    /// session ends are errors, so that run loops stop.
    pub async fn handle_signal(
        &mut self,
        body: ServerBody,
    ) -> Result<Vec<ClientMessage>, CallError> {
        match body {
            ServerBody::Offer { sdp } => {
                if self.negotiation == Negotiation::Offerer && self.offer_pending {
                    // Glare: the offerer is the impolite side and keeps its
                    // own offer, as perfect negotiation prescribes.
                    tracing::debug!("ignoring a colliding offer");
                    return Ok(Vec::new());
                }
                let answer = self.peer.accept_offer(sdp.into_string()).await?;
                let sdp = Sdp::parse(answer).map_err(|_| CallError::Unrepresentable("answer"))?;
                Ok(vec![ClientMessage::Answer { sdp }])
            }
            ServerBody::Answer { sdp } => {
                if !self.offer_pending {
                    tracing::debug!("ignoring an answer to no offer");
                    return Ok(Vec::new());
                }
                self.peer.accept_answer(sdp.into_string()).await?;
                self.offer_pending = false;
                if std::mem::take(&mut self.restart_wanted) {
                    return Ok(vec![self.offer(true).await?]);
                }
                Ok(Vec::new())
            }
            ServerBody::Candidate(c) => {
                self.peer.add_remote_candidate(from_wire(c)).await?;
                Ok(Vec::new())
            }
            ServerBody::IceRestart {} => match self.negotiation {
                Negotiation::Offerer if self.restarts >= MAX_ICE_RESTARTS => {
                    tracing::warn!(
                        restarts = self.restarts,
                        "restart requested; no restarts left"
                    );
                    Ok(Vec::new())
                }
                Negotiation::Offerer => {
                    self.restarts += 1;
                    if self.offer_pending {
                        self.restart_wanted = true;
                        Ok(Vec::new())
                    } else {
                        Ok(vec![self.offer(true).await?])
                    }
                }
                // The offerer's restart offer will come as an offer.
                Negotiation::Answerer => Ok(Vec::new()),
            },
            ServerBody::PeerLeft { .. } => Err(CallError::PeerLeft),
            ServerBody::Bye { .. } => Err(CallError::Ended("bye")),
            ServerBody::Replaced {} => Err(CallError::Ended("replaced")),
            ServerBody::Denied(_) => Err(CallError::Ended("denied")),
            ServerBody::Error(e) => {
                // The server changed nothing; the call goes on, and a
                // timeout tells the caller if it never recovers.
                tracing::warn!(code = %e.code, "the server refused a message");
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The next event of the peer; cancellation-safe. `None` once the
    /// peer is gone.
    pub async fn next_event(&mut self) -> Option<PeerEvent> {
        self.events.recv().await
    }

    /// Handles one peer event: trickles candidates, and restarts ICE when
    /// the connection failed.
    pub async fn handle_event(
        &mut self,
        event: PeerEvent,
    ) -> Result<Vec<ClientMessage>, CallError> {
        match event {
            PeerEvent::LocalCandidate(c) => Ok(vec![ClientMessage::Candidate(to_wire(c)?)]),
            PeerEvent::GatheringComplete => Ok(vec![ClientMessage::EndOfCandidates(
                EndOfCandidates::default(),
            )]),
            PeerEvent::ConnectionState(ConnectionState::Failed) => {
                if self.restarts >= MAX_ICE_RESTARTS {
                    tracing::warn!(
                        restarts = self.restarts,
                        "connection failed; no restarts left"
                    );
                    return Ok(Vec::new());
                }
                self.restart_ice().await
            }
            PeerEvent::ConnectionState(_) | PeerEvent::FirstMedia(_) => Ok(Vec::new()),
        }
    }

    /// The `stats` message for the server, from a report.
    pub fn stats_message(&self, report: &MediaReport) -> ClientMessage {
        ClientMessage::Stats(Stats {
            connection_state: wire_state(self.peer.connection_state()),
            selected_candidate_type: report.selected_pair.map(|p| wire_candidate_type(p.local)),
            bytes_received: report.received.audio.bytes + report.received.video.bytes,
            frames_received: report.received.video.frames,
            audio_packets_received: report.received.audio.packets,
            bytes_sent: Some(report.sent.audio.bytes + report.sent.video.bytes),
        })
    }

    /// Takes a fresh report and returns it with the `stats` message to send
    /// now, if one is due: once a second, and at once when media starts
    /// flowing, so the server can mark the call established without delay.
    /// Call it every few hundred milliseconds.
    pub async fn poll_stats(&mut self) -> (MediaReport, Option<ClientMessage>) {
        let report = self.report().await;
        let flowing = report.media_flowed_both_ways();
        let due = self
            .last_stats
            .is_none_or(|t| t.elapsed() >= STATS_INTERVAL);
        let message = if due || (flowing && !self.reported_flowing) {
            self.last_stats = Some(Instant::now());
            self.reported_flowing |= flowing;
            Some(self.stats_message(&report))
        } else {
            None
        };
        (report, message)
    }

    /// Negotiates and runs the call until media flowed both ways (see
    /// [`MediaReport::media_flowed_both_ways`]), reporting statistics to the
    /// server once a second. Fails with [`CallError::Timeout`] after
    /// `timeout`.
    pub async fn run_until_media<T: SignalTransport>(
        &mut self,
        transport: &mut T,
        timeout: Duration,
    ) -> Result<MediaReport, CallError> {
        for message in self.start().await? {
            transport.send(message).await?;
        }
        self.pump(transport, timeout, true).await
    }

    /// Keeps an already negotiated call running for `duration`, handling
    /// signaling and reporting statistics, and returns the final report.
    pub async fn run_for<T: SignalTransport>(
        &mut self,
        transport: &mut T,
        duration: Duration,
    ) -> Result<MediaReport, CallError> {
        self.pump(transport, duration, false).await
    }

    async fn pump<T: SignalTransport>(
        &mut self,
        transport: &mut T,
        limit: Duration,
        stop_on_media: bool,
    ) -> Result<MediaReport, CallError> {
        let began = Instant::now();
        let deadline = tokio::time::Instant::from_std(began + limit);
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let outgoing = tokio::select! {
                message = transport.recv() => match message {
                    Some(message) => self.handle_signal(message.body).await?,
                    None => return Err(CallError::SignalingClosed),
                },
                event = self.events.recv() => match event {
                    Some(event) => self.handle_event(event).await?,
                    None => Vec::new(),
                },
                _ = check.tick() => {
                    let (report, stats) = self.poll_stats().await;
                    if let Some(stats) = stats {
                        transport.send(stats).await?;
                    }
                    if stop_on_media && report.media_flowed_both_ways() {
                        return Ok(report);
                    }
                    Vec::new()
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let report = self.report().await;
                    if stop_on_media {
                        return Err(CallError::Timeout {
                            waited: limit,
                            report: Box::new(report),
                        });
                    }
                    return Ok(report);
                }
            };
            for message in outgoing {
                transport.send(message).await?;
            }
        }
    }

    /// Closes the peer connection.
    pub async fn close(self) -> Result<(), CallError> {
        Ok(self.peer.close().await?)
    }
}

/// ICE servers of a `welcome`, for [`PeerConfig::ice_servers`].
pub fn ice_servers_from_welcome(servers: &[WireIceServer]) -> Vec<IceServer> {
    servers
        .iter()
        .map(|s| IceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect()
}

fn from_wire(c: WireCandidate) -> IceCandidate {
    IceCandidate {
        candidate: c.candidate.into_string(),
        sdp_mid: c.sdp_mid.map(Mid::into_string),
        sdp_mline_index: c.sdp_m_line_index,
        username_fragment: c.username_fragment.map(Ufrag::into_string),
    }
}

fn to_wire(c: IceCandidate) -> Result<WireCandidate, CallError> {
    let bad = |_| CallError::Unrepresentable("candidate");
    Ok(WireCandidate {
        candidate: CandidateLine::parse(c.candidate).map_err(bad)?,
        sdp_mid: c.sdp_mid.map(Mid::parse).transpose().map_err(bad)?,
        sdp_m_line_index: c.sdp_mline_index,
        username_fragment: c
            .username_fragment
            .filter(|u| !u.is_empty())
            .map(Ufrag::parse)
            .transpose()
            .map_err(bad)?,
    })
}

fn wire_state(s: ConnectionState) -> WireState {
    match s {
        ConnectionState::New => WireState::New,
        ConnectionState::Connecting => WireState::Connecting,
        ConnectionState::Connected => WireState::Connected,
        ConnectionState::Disconnected => WireState::Disconnected,
        ConnectionState::Failed => WireState::Failed,
        ConnectionState::Closed => WireState::Closed,
    }
}

fn wire_candidate_type(t: CandidateType) -> konsult_protocol::CandidateType {
    match t {
        CandidateType::Host => konsult_protocol::CandidateType::Host,
        CandidateType::Srflx => konsult_protocol::CandidateType::Srflx,
        CandidateType::Prflx => konsult_protocol::CandidateType::Prflx,
        CandidateType::Relay => konsult_protocol::CandidateType::Relay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_convert_both_ways_without_loss() {
        let local = IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: Some("abcd".into()),
        };
        assert_eq!(from_wire(to_wire(local.clone()).unwrap()), local);
    }

    #[test]
    fn an_empty_username_fragment_is_left_out() {
        let local = IceCandidate {
            candidate: "candidate:1 1 udp 1 127.0.0.1 5 typ host".into(),
            sdp_mid: None,
            sdp_mline_index: None,
            username_fragment: Some(String::new()),
        };
        assert_eq!(to_wire(local).unwrap().username_fragment, None);
    }

    #[test]
    fn a_candidate_the_protocol_cannot_carry_is_a_typed_error() {
        let local = IceCandidate {
            candidate: "candidate:1\r\na=injected".into(),
            sdp_mid: None,
            sdp_mline_index: None,
            username_fragment: None,
        };
        assert!(matches!(
            to_wire(local),
            Err(CallError::Unrepresentable("candidate"))
        ));
    }

    #[tokio::test]
    async fn the_direct_link_relays_call_messages_and_turns_leave_into_peer_left() {
        let (mut therapist, mut patient) = direct_link(Role::Therapist, Role::Patient);
        therapist.send(ClientMessage::IceRestart {}).await.unwrap();
        therapist.send(ClientMessage::Ping {}).await.unwrap();
        therapist.send(ClientMessage::Leave {}).await.unwrap();
        let first = patient.recv().await.unwrap();
        assert_eq!((first.body, first.seq), (ServerBody::IceRestart {}, 1));
        let second = patient.recv().await.unwrap();
        assert_eq!(
            (second.body, second.seq),
            (
                ServerBody::PeerLeft {
                    role: Role::Therapist
                },
                2
            )
        );
        drop(therapist);
        assert!(patient.recv().await.is_none());
    }

    #[test]
    fn the_therapist_offers_and_the_patient_answers() {
        assert_eq!(Negotiation::for_role(Role::Therapist), Negotiation::Offerer);
        assert_eq!(Negotiation::for_role(Role::Patient), Negotiation::Answerer);
    }
}
