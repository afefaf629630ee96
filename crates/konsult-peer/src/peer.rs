//! The media core: one `RTCPeerConnection` that sends synthetic audio and
//! video, counts what it receives, and is negotiated from outside.
//!
//! [`Peer`] knows nothing about signaling. Its owner moves descriptions and
//! candidates between two peers (see [`crate::driver`]) and reads
//! [`PeerEvent`]s from the receiver returned by [`Peer::new`]:
//!
//! 1. [`Peer::new`] creates the connection, adds the tracks and starts
//!    sending (nothing leaves before the transport is connected).
//! 2. The offerer calls [`Peer::create_offer`], the answerer
//!    [`Peer::accept_offer`], the offerer [`Peer::accept_answer`].
//! 3. Both sides pass every [`PeerEvent::LocalCandidate`] to the other
//!    side's [`Peer::add_remote_candidate`] (trickle ICE). Candidates that
//!    arrive before the remote description are held back until it is set.
//! 4. [`Peer::report`] at any time; [`Peer::close`] at the end.
//!
//! An ICE restart is step 2 again with `create_offer(true)`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::candidate::{CandidatePairState, CandidateType as IceCandidateType};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp::codecs::opus::OpusPayloader;
use webrtc::rtp::codecs::vp8::Vp8Payloader;
use webrtc::rtp::packetizer::{new_packetizer, Packetizer};
use webrtc::rtp::sequence::new_random_sequencer;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::stats::StatsReportType;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::{TrackLocal, TrackLocalWriter};
use webrtc::track::track_remote::TrackRemote;

use crate::config::{IcePolicy, NetworkScope, PeerConfig, VideoConfig};
use crate::report::{
    millis_between, CandidateType, Counters, MediaKind, MediaReport, SelectedPair, SendCounters,
};
use crate::vp8::Vp8Pattern;

/// RTP packets are kept below a typical path MTU.
const RTP_MTU: usize = 1200;
/// One Opus frame of silence (RFC 6716 TOC 0xF8: CELT fullband 20 ms,
/// mono, one frame; then the encoded silence), the same bytes browsers
/// send while muted.
const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];
/// Opus frame duration and its length in 48 kHz RTP clock ticks.
const OPUS_FRAME: std::time::Duration = std::time::Duration::from_millis(20);
const OPUS_FRAME_TICKS: u32 = 960;
const VIDEO_CLOCK_RATE: u32 = 90_000;
/// The media stream id of both tracks, as a browser's `MediaStream` would.
const STREAM_ID: &str = "konsult-peer";

/// An ICE candidate as carried by signaling (`RTCIceCandidateInit`).
///
/// `Debug` leaves out the candidate line: it holds an address, and
/// addresses are never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:` attribute line.
    pub candidate: String,
    /// Media stream id the candidate belongs to.
    pub sdp_mid: Option<String>,
    /// Index of the media section the candidate belongs to.
    pub sdp_mline_index: Option<u16>,
    /// ICE username fragment, which tells candidates of an old ICE
    /// generation from new ones after a restart.
    pub username_fragment: Option<String>,
}

impl fmt::Debug for IceCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCandidate")
            .field("candidate", &"<redacted>")
            .field("sdp_mid", &self.sdp_mid)
            .field("sdp_mline_index", &self.sdp_mline_index)
            .finish_non_exhaustive()
    }
}

impl From<RTCIceCandidateInit> for IceCandidate {
    fn from(c: RTCIceCandidateInit) -> Self {
        Self {
            candidate: c.candidate,
            // webrtc-rs fills in an empty mid; "no mid" is what it means
            // (a browser rejects a candidate for mid "").
            sdp_mid: c.sdp_mid.filter(|mid| !mid.is_empty()),
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        }
    }
}

impl From<IceCandidate> for RTCIceCandidateInit {
    fn from(c: IceCandidate) -> Self {
        Self {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        }
    }
}

/// State of the whole connection (`RTCPeerConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Not started.
    New,
    /// ICE or DTLS in progress.
    Connecting,
    /// ICE and DTLS done: media can flow.
    Connected,
    /// Connectivity lost for now; may come back by itself.
    Disconnected,
    /// Connectivity lost: an ICE restart is needed.
    Failed,
    /// Closed.
    Closed,
}

impl From<RTCPeerConnectionState> for ConnectionState {
    fn from(s: RTCPeerConnectionState) -> Self {
        match s {
            RTCPeerConnectionState::Unspecified | RTCPeerConnectionState::New => Self::New,
            RTCPeerConnectionState::Connecting => Self::Connecting,
            RTCPeerConnectionState::Connected => Self::Connected,
            RTCPeerConnectionState::Disconnected => Self::Disconnected,
            RTCPeerConnectionState::Failed => Self::Failed,
            RTCPeerConnectionState::Closed => Self::Closed,
        }
    }
}

/// Something the owner of a [`Peer`] must act on or may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A local candidate to trickle to the other side.
    LocalCandidate(IceCandidate),
    /// Candidate gathering finished (the end-of-candidates signal).
    GatheringComplete,
    /// The connection state changed.
    ConnectionState(ConnectionState),
    /// The first packet of this kind arrived from the other side.
    FirstMedia(MediaKind),
}

/// Why a [`Peer`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The WebRTC stack refused an operation (`step` says which).
    #[error("webrtc {step} failed: {source}")]
    WebRtc {
        /// The operation, e.g. "create offer".
        step: &'static str,
        /// The stack's error.
        #[source]
        source: webrtc::Error,
    },
    /// A session description from the other side could not be parsed.
    #[error("the remote {kind} is not a valid session description")]
    InvalidDescription {
        /// "offer" or "answer".
        kind: &'static str,
    },
}

fn step(step: &'static str) -> impl FnOnce(webrtc::Error) -> PeerError {
    move |source| PeerError::WebRtc { step, source }
}

/// A headless WebRTC peer; see the module documentation for the order of
/// calls.
pub struct Peer {
    pc: Arc<RTCPeerConnection>,
    counters: Arc<Counters>,
    /// Remote candidates received before the remote description.
    pending_candidates: Mutex<Vec<RTCIceCandidateInit>>,
    tasks: Vec<JoinHandle<()>>,
    created_at: Instant,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("state", &self.connection_state())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Creates the connection with an audio and a video track and starts
    /// the synthetic media. Events arrive on the returned receiver until the
    /// peer is closed.
    pub async fn new(
        config: PeerConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<PeerEvent>), PeerError> {
        let mut media = MediaEngine::default();
        media
            .register_default_codecs()
            .map_err(step("register codecs"))?;
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .map_err(step("register interceptors"))?;
        let api = APIBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting_engine(config.network))
            .build();

        let rtc_config = RTCConfiguration {
            ice_servers: config
                .ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone().unwrap_or_default(),
                    credential: s.credential.clone().unwrap_or_default(),
                })
                .collect(),
            ice_transport_policy: match config.ice_policy {
                IcePolicy::All => RTCIceTransportPolicy::All,
                IcePolicy::Relay => RTCIceTransportPolicy::Relay,
            },
            ..Default::default()
        };
        let pc = Arc::new(
            api.new_peer_connection(rtc_config)
                .await
                .map_err(step("create peer connection"))?,
        );

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        install_handlers(&pc, &events_tx, &counters);

        let audio = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            "audio".to_owned(),
            STREAM_ID.to_owned(),
        ));
        let video = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: VIDEO_CLOCK_RATE,
                ..Default::default()
            },
            "video".to_owned(),
            STREAM_ID.to_owned(),
        ));
        let audio_sender = pc
            .add_track(Arc::clone(&audio) as Arc<dyn TrackLocal + Send + Sync>)
            .await
            .map_err(step("add audio track"))?;
        let video_sender = pc
            .add_track(Arc::clone(&video) as Arc<dyn TrackLocal + Send + Sync>)
            .await
            .map_err(step("add video track"))?;

        let tasks = vec![
            tokio::spawn(read_rtcp(
                audio_sender,
                MediaKind::Audio,
                Arc::clone(&counters),
            )),
            tokio::spawn(read_rtcp(
                video_sender,
                MediaKind::Video,
                Arc::clone(&counters),
            )),
            tokio::spawn(send_audio(audio, Arc::clone(&counters))),
            tokio::spawn(send_video(video, config.video, Arc::clone(&counters))),
        ];

        let peer = Self {
            pc,
            counters,
            pending_candidates: Mutex::new(Vec::new()),
            tasks,
            created_at: Instant::now(),
        };
        Ok((peer, events_rx))
    }

    /// Creates an offer, sets it as the local description and returns its
    /// SDP. With `ice_restart`, the offer carries new ICE credentials, so
    /// both sides gather and check candidates again.
    pub async fn create_offer(&self, ice_restart: bool) -> Result<String, PeerError> {
        let offer = self
            .pc
            .create_offer(Some(RTCOfferOptions {
                ice_restart,
                ..Default::default()
            }))
            .await
            .map_err(step("create offer"))?;
        let sdp = offer.sdp.clone();
        self.pc
            .set_local_description(offer)
            .await
            .map_err(step("set local offer"))?;
        Ok(sdp)
    }

    /// Sets the other side's offer, answers it and returns the answer SDP.
    pub async fn accept_offer(&self, sdp: String) -> Result<String, PeerError> {
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|_| PeerError::InvalidDescription { kind: "offer" })?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(step("set remote offer"))?;
        self.flush_pending_candidates().await?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(step("create answer"))?;
        let sdp = answer.sdp.clone();
        self.pc
            .set_local_description(answer)
            .await
            .map_err(step("set local answer"))?;
        Ok(sdp)
    }

    /// Sets the other side's answer to this peer's offer.
    pub async fn accept_answer(&self, sdp: String) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(sdp)
            .map_err(|_| PeerError::InvalidDescription { kind: "answer" })?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(step("set remote answer"))?;
        self.flush_pending_candidates().await
    }

    /// Adds a candidate trickled by the other side. An empty candidate line
    /// (end of candidates) is accepted and ignored.
    pub async fn add_remote_candidate(&self, candidate: IceCandidate) -> Result<(), PeerError> {
        if candidate.candidate.is_empty() {
            return Ok(());
        }
        let mut pending = self.pending_candidates.lock().await;
        if self.pc.remote_description().await.is_none() {
            pending.push(candidate.into());
            return Ok(());
        }
        drop(pending);
        self.pc
            .add_ice_candidate(candidate.into())
            .await
            .map_err(step("add remote candidate"))
    }

    async fn flush_pending_candidates(&self) -> Result<(), PeerError> {
        let pending = std::mem::take(&mut *self.pending_candidates.lock().await);
        for candidate in pending {
            self.pc
                .add_ice_candidate(candidate)
                .await
                .map_err(step("add remote candidate"))?;
        }
        Ok(())
    }

    /// The current connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.pc.connection_state().into()
    }

    /// What flowed so far, with the time to first media measured from the
    /// creation of this peer.
    pub async fn report(&self) -> MediaReport {
        self.report_since(self.created_at).await
    }

    /// What flowed so far, with the time to first media measured from
    /// `since` (for example the moment the patient was admitted).
    pub async fn report_since(&self, since: Instant) -> MediaReport {
        let stats = self.pc.get_stats().await;
        let mut pairs = Vec::new();
        let mut candidate_types = std::collections::HashMap::new();
        for report in stats.reports.into_values() {
            match report {
                StatsReportType::CandidatePair(p) => pairs.push(p),
                StatsReportType::LocalCandidate(c) | StatsReportType::RemoteCandidate(c) => {
                    if let Some(t) = from_ice_type(c.candidate_type) {
                        candidate_types.insert(c.id, t);
                    }
                }
                _ => {}
            }
        }
        let nominated: Vec<_> = pairs
            .iter()
            .filter(|p| p.nominated && p.state == CandidatePairState::Succeeded)
            .filter_map(|p| {
                Some(SelectedPair {
                    local: *candidate_types.get(&p.local_candidate_id)?,
                    remote: *candidate_types.get(&p.remote_candidate_id)?,
                })
            })
            .collect();
        let selected_pair = match nominated.as_slice() {
            [only] => Some(*only),
            // None yet, or several nominated pairs (after an ICE restart):
            // ask the transport which one carries media now.
            _ => self.transport_selected_pair().await,
        };

        MediaReport {
            sent: self.counters.sent_snapshot(),
            // Not `remote-inbound-rtp` from getStats: webrtc-rs 0.17 only
            // fills it in when its sender reports pass the stats
            // interceptor, which they do not.
            sent_acknowledged: self.counters.acknowledged_snapshot(),
            received: self.counters.received_snapshot(),
            selected_pair,
            time_to_first_media_ms: self
                .counters
                .first_media()
                .map(|at| millis_between(since, at)),
        }
    }

    async fn transport_selected_pair(&self) -> Option<SelectedPair> {
        let pair = self
            .pc
            .sctp()
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()
            .await?;
        Some(SelectedPair {
            local: from_rtc_type(pair.local.typ)?,
            remote: from_rtc_type(pair.remote.typ)?,
        })
    }

    /// Stops the media and closes the connection.
    pub async fn close(mut self) -> Result<(), PeerError> {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.pc.close().await.map_err(step("close"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if !self.tasks.is_empty() {
            // Not closed by `close`: close in the background so the
            // connection's sockets and tasks do not outlive the peer.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let pc = Arc::clone(&self.pc);
                runtime.spawn(async move {
                    let _ = pc.close().await;
                });
            }
        }
    }
}

fn setting_engine(network: NetworkScope) -> SettingEngine {
    let mut s = SettingEngine::default();
    // No mDNS: it would multicast on the local network, and host
    // candidates with plain addresses are what a server-side peer wants.
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    // Nominate the first pair that works, as browsers do, instead of the
    // ICE agent's default waits for a better one (1 s for a peer-reflexive
    // pair, 2 s for a relayed one): call set-up times then measure the
    // server and the network, not the test client.
    s.set_host_acceptance_min_wait(Some(Duration::ZERO));
    s.set_srflx_acceptance_min_wait(Some(Duration::ZERO));
    s.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
    s.set_relay_acceptance_min_wait(Some(Duration::ZERO));
    match network {
        NetworkScope::Any => s.set_network_types(vec![NetworkType::Udp4, NetworkType::Udp6]),
        NetworkScope::Loopback => {
            s.set_network_types(vec![NetworkType::Udp4]);
            s.set_include_loopback_candidate(true);
            s.set_ip_filter(Box::new(|ip| ip.is_loopback()));
        }
    }
    s
}

fn install_handlers(
    pc: &RTCPeerConnection,
    events: &mpsc::UnboundedSender<PeerEvent>,
    counters: &Arc<Counters>,
) {
    let tx = events.clone();
    pc.on_ice_candidate(Box::new(move |candidate| {
        let event = match candidate.map(|c| c.to_json()) {
            Some(Ok(init)) => Some(PeerEvent::LocalCandidate(init.into())),
            Some(Err(error)) => {
                tracing::warn!(%error, "could not serialize a local candidate");
                None
            }
            None => Some(PeerEvent::GatheringComplete),
        };
        if let Some(event) = event {
            let _ = tx.send(event);
        }
        Box::pin(async {})
    }));

    let tx = events.clone();
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let state = ConnectionState::from(state);
        tracing::debug!(?state, "peer connection state");
        let _ = tx.send(PeerEvent::ConnectionState(state));
        Box::pin(async {})
    }));

    let tx = events.clone();
    let counters = Arc::clone(counters);
    pc.on_track(Box::new(move |track, _receiver, _transceiver| {
        tokio::spawn(receive_track(track, Arc::clone(&counters), tx.clone()));
        Box::pin(async {})
    }));
}

/// Reads one remote track until it ends, counting packets, payload bytes
/// and frames.
async fn receive_track(
    track: Arc<TrackRemote>,
    counters: Arc<Counters>,
    events: mpsc::UnboundedSender<PeerEvent>,
) {
    let kind = match track.kind() {
        RTPCodecType::Audio => MediaKind::Audio,
        RTPCodecType::Video => MediaKind::Video,
        RTPCodecType::Unspecified => return,
    };
    tracing::debug!(?kind, "remote track started");
    let flow = counters.received(kind);
    let mut first = true;
    while let Ok((packet, _)) = track.read_rtp().await {
        let frames = match kind {
            MediaKind::Audio => 1,
            MediaKind::Video => u64::from(packet.header.marker),
        };
        flow.add(1, packet.payload.len() as u64, frames);
        if first {
            first = false;
            counters.media_arrived(Instant::now());
            let _ = events.send(PeerEvent::FirstMedia(kind));
        }
    }
    tracing::debug!(?kind, "remote track ended");
}

/// Reads RTCP for one sender, taking in the other side's reception reports
/// about it. Reading also matters by itself: the interceptors (NACK,
/// reports) only see packets that someone reads.
async fn read_rtcp(sender: Arc<RTCRtpSender>, kind: MediaKind, counters: Arc<Counters>) {
    let params = sender.get_parameters().await;
    let Some(ssrc) = params.encodings.first().map(|e| e.ssrc) else {
        return;
    };
    let sent = counters.sent(kind);
    while let Ok((packets, _)) = sender.read_rtcp().await {
        for packet in &packets {
            let any = packet.as_any();
            let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                &rr.reports
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                &sr.reports
            } else {
                continue;
            };
            for report in reports.iter().filter(|r| r.ssrc == ssrc) {
                sent.reception_report(report.last_sequence_number, report.total_lost);
            }
        }
    }
}

async fn send_audio(track: Arc<TrackLocalStaticRTP>, counters: Arc<Counters>) {
    let packetizer = new_packetizer(
        RTP_MTU,
        0, // payload type and SSRC are set per binding by the track
        0,
        Box::new(OpusPayloader),
        Box::new(new_random_sequencer()),
        48_000,
    );
    let frames = std::iter::repeat(Bytes::from_static(&OPUS_SILENCE));
    send_frames(
        track,
        packetizer,
        frames,
        OPUS_FRAME,
        OPUS_FRAME_TICKS,
        counters.sent(MediaKind::Audio),
    )
    .await;
}

async fn send_video(track: Arc<TrackLocalStaticRTP>, video: VideoConfig, counters: Arc<Counters>) {
    // Picture ids (RFC 7741) let a receiver tell frames apart after loss.
    let mut payloader = Vp8Payloader::default();
    payloader.enable_picture_id = true;
    let packetizer = new_packetizer(
        RTP_MTU,
        0,
        0,
        Box::new(payloader),
        Box::new(new_random_sequencer()),
        VIDEO_CLOCK_RATE,
    );
    let pattern = Vp8Pattern::new(video.size);
    let frames = (0u64..).map(move |n| Bytes::from(pattern.frame(n)));
    send_frames(
        track,
        packetizer,
        frames,
        video.rate.interval(),
        VIDEO_CLOCK_RATE / video.rate.get(),
        counters.sent(MediaKind::Video),
    )
    .await;
}

/// Packetizes and writes one frame per `interval`, forever (the task is
/// aborted when the peer closes). A frame counts as sent when its packets
/// reached at least one connected transport.
async fn send_frames(
    track: Arc<TrackLocalStaticRTP>,
    mut packetizer: impl Packetizer,
    frames: impl Iterator<Item = Bytes>,
    interval: std::time::Duration,
    ticks_per_frame: u32,
    sent: &SendCounters,
) {
    let mut clock = tokio::time::interval(interval);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_error = false;
    for frame in frames {
        clock.tick().await;
        let packets = match packetizer.packetize(&frame, ticks_per_frame) {
            Ok(packets) => packets,
            Err(error) => {
                tracing::error!(%error, "could not packetize a synthetic frame");
                return;
            }
        };
        let mut reached_transport = false;
        for packet in &packets {
            match track.write_rtp(packet).await {
                Ok(0) => {}
                Ok(_) => {
                    reached_transport = true;
                    sent.packet_sent(packet.header.sequence_number, packet.payload.len());
                }
                Err(error) if !reported_error => {
                    reported_error = true;
                    tracing::debug!(%error, "writing RTP failed");
                }
                Err(_) => {}
            }
        }
        if reached_transport {
            sent.frame_sent();
        }
    }
}

fn from_ice_type(t: IceCandidateType) -> Option<CandidateType> {
    match t {
        IceCandidateType::Host => Some(CandidateType::Host),
        IceCandidateType::ServerReflexive => Some(CandidateType::Srflx),
        IceCandidateType::PeerReflexive => Some(CandidateType::Prflx),
        IceCandidateType::Relay => Some(CandidateType::Relay),
        IceCandidateType::Unspecified => None,
    }
}

fn from_rtc_type(t: RTCIceCandidateType) -> Option<CandidateType> {
    match t {
        RTCIceCandidateType::Host => Some(CandidateType::Host),
        RTCIceCandidateType::Srflx => Some(CandidateType::Srflx),
        RTCIceCandidateType::Prflx => Some(CandidateType::Prflx),
        RTCIceCandidateType::Relay => Some(CandidateType::Relay),
        RTCIceCandidateType::Unspecified => None,
    }
}
