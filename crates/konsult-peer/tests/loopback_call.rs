//! Two headless peers in one process complete a real DTLS-SRTP call over
//! loopback host candidates: no server, no relay, no network beyond
//! 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use konsult_peer::{
    direct_link, Call, CallError, CandidateType, ConnectionState, IcePolicy, MediaReport,
    Negotiation, NetworkScope, Peer, PeerConfig, PeerEvent, SignalTransport,
};
use konsult_protocol::{ClientMessage, Role, ServerMessage};
use tokio::sync::mpsc::UnboundedReceiver;

/// Generous: the machine is shared with other builds.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(60);

fn loopback() -> PeerConfig {
    PeerConfig {
        network: NetworkScope::Loopback,
        ..PeerConfig::default()
    }
}

fn assert_flowed(who: &str, report: &MediaReport) {
    assert!(
        report.media_flowed_both_ways(),
        "{who}: media did not flow both ways: {report:#?}"
    );
    for flow in [
        report.sent.audio,
        report.sent.video,
        report.received.audio,
        report.received.video,
    ] {
        assert!(
            flow.packets > 0 && flow.bytes > 0 && flow.frames > 0,
            "{who}: {report:#?}"
        );
    }
    let pair = report.selected_pair.expect("a selected candidate pair");
    assert_eq!(pair.local, CandidateType::Host, "{who}");
    // The other side's host candidate, or the same address learnt from its
    // connectivity check if that came before the trickled candidate.
    assert!(
        matches!(pair.remote, CandidateType::Host | CandidateType::Prflx),
        "{who}: {pair:?}"
    );
    assert!(report.time_to_first_media_ms.is_some(), "{who}");
}

/// Step 1: the media core alone, negotiated by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_negotiated_by_hand_exchange_audio_and_video() {
    let (offerer, offerer_events) = Peer::new(loopback()).await.unwrap();
    let (answerer, answerer_events) = Peer::new(loopback()).await.unwrap();
    let offerer = Arc::new(offerer);
    let answerer = Arc::new(answerer);

    // Trickle each side's candidates to the other, from the start.
    let trickle = |events: UnboundedReceiver<PeerEvent>, to: Arc<Peer>| {
        tokio::spawn(async move {
            let mut events = events;
            while let Some(event) = events.recv().await {
                if let PeerEvent::LocalCandidate(c) = event {
                    to.add_remote_candidate(c).await.unwrap();
                }
            }
        })
    };
    let t1 = trickle(offerer_events, Arc::clone(&answerer));
    let t2 = trickle(answerer_events, Arc::clone(&offerer));

    let offer = offerer.create_offer(false).await.unwrap();
    let answer = answerer.accept_offer(offer).await.unwrap();
    offerer.accept_answer(answer).await.unwrap();

    let deadline = Instant::now() + MEDIA_TIMEOUT;
    loop {
        let (a, b) = (offerer.report().await, answerer.report().await);
        if a.media_flowed_both_ways() && b.media_flowed_both_ways() {
            assert_flowed("offerer", &a);
            assert_flowed("answerer", &b);
            assert_eq!(offerer.connection_state(), ConnectionState::Connected);
            break;
        }
        assert!(Instant::now() < deadline, "no two-way media: {a:#?} {b:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The trickle tasks hold the other peer; wait until they are gone.
    t1.abort();
    t2.abort();
    let _ = tokio::join!(t1, t2);
    Arc::into_inner(offerer).unwrap().close().await.unwrap();
    Arc::into_inner(answerer).unwrap().close().await.unwrap();
}

/// A transport that remembers the ICE username fragment of every offer it
/// carries, to show that a restart really renegotiated ICE.
struct Recording<T> {
    inner: T,
    offer_ufrags: Arc<Mutex<Vec<String>>>,
}

impl<T: SignalTransport + Send> SignalTransport for Recording<T> {
    async fn send(&mut self, message: ClientMessage) -> Result<(), CallError> {
        if let ClientMessage::Offer { sdp } = &message {
            let ufrag = sdp
                .as_str()
                .lines()
                .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
                .expect("an offer carries an ICE ufrag")
                .to_owned();
            self.offer_ufrags.lock().unwrap().push(ufrag);
        }
        self.inner.send(message).await
    }

    async fn recv(&mut self) -> Option<ServerMessage> {
        self.inner.recv().await
    }
}

/// Step 2: the signaling driver, over an in-process link that relays
/// konsult-protocol messages the way the server does; then an ICE restart
/// keeps the call going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_a_direct_link_reach_two_way_media_and_survive_an_ice_restart() {
    let (therapist_link, mut patient_link) = direct_link(Role::Therapist, Role::Patient);
    let offer_ufrags = Arc::new(Mutex::new(Vec::new()));
    let mut therapist_link = Recording {
        inner: therapist_link,
        offer_ufrags: Arc::clone(&offer_ufrags),
    };
    let now = Instant::now();
    let mut therapist = Call::new(loopback(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut patient = Call::new(loopback(), Negotiation::Answerer, now)
        .await
        .unwrap();

    let (t, p) = tokio::join!(
        therapist.run_until_media(&mut therapist_link, MEDIA_TIMEOUT),
        patient.run_until_media(&mut patient_link, MEDIA_TIMEOUT),
    );
    let (t, p) = (t.unwrap(), p.unwrap());
    assert_flowed("therapist", &t);
    assert_flowed("patient", &p);
    // Each side's receiver reports confirm that the other side got its media.
    assert!(t.sent_acknowledged.audio_packets > 0 && t.sent_acknowledged.video_packets > 0);
    assert!(p.sent_acknowledged.audio_packets > 0 && p.sent_acknowledged.video_packets > 0);
    assert_eq!(offer_ufrags.lock().unwrap().len(), 1);

    // The therapist restarts ICE; both keep running and media keeps coming.
    for message in therapist.restart_ice().await.unwrap() {
        therapist_link.send(message).await.unwrap();
    }
    let run = Duration::from_secs(6);
    let (t2, p2) = tokio::join!(
        therapist.run_for(&mut therapist_link, run),
        patient.run_for(&mut patient_link, run),
    );
    let (t2, p2) = (t2.unwrap(), p2.unwrap());
    let ufrags = offer_ufrags.lock().unwrap().clone();
    assert_eq!(ufrags.len(), 2, "one restart offer was sent");
    assert_ne!(
        ufrags[0], ufrags[1],
        "the restart offer has new ICE credentials"
    );
    assert_eq!(
        therapist.peer().connection_state(),
        ConnectionState::Connected
    );
    assert_eq!(
        patient.peer().connection_state(),
        ConnectionState::Connected
    );
    assert!(
        p2.received.video.frames > p.received.video.frames + 10,
        "video kept flowing to the patient: {p:#?} then {p2:#?}"
    );
    assert!(
        t2.received.audio.frames > t.received.audio.frames + 10,
        "audio kept flowing to the therapist: {t:#?} then {t2:#?}"
    );

    therapist.close().await.unwrap();
    patient.close().await.unwrap();
}

/// Relay-only without a relay cannot connect: the driver gives up after
/// its timeout with a typed error and a report of what (not) flowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_without_a_relay_times_out_with_an_empty_report() {
    let relay_only = PeerConfig {
        ice_policy: IcePolicy::Relay,
        ..loopback()
    };
    let (mut a_link, mut b_link) = direct_link(Role::Therapist, Role::Patient);
    let now = Instant::now();
    let mut a = Call::new(relay_only.clone(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut b = Call::new(relay_only, Negotiation::Answerer, now)
        .await
        .unwrap();
    let wait = Duration::from_secs(3);
    let (ra, rb) = tokio::join!(
        a.run_until_media(&mut a_link, wait),
        b.run_until_media(&mut b_link, wait),
    );
    for result in [ra, rb] {
        match result {
            Err(CallError::Timeout { waited, report }) => {
                assert_eq!(waited, wait);
                assert_eq!(report.received.video.packets, 0);
                assert_eq!(report.selected_pair, None);
                assert!(!report.media_flowed_both_ways());
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// When one side leaves, the other's run loop ends with `PeerLeft`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_ends_the_other_sides_call() {
    let (mut a_link, mut b_link) = direct_link(Role::Therapist, Role::Patient);
    let now = Instant::now();
    let mut b = Call::new(loopback(), Negotiation::Answerer, now)
        .await
        .unwrap();
    a_link.send(ClientMessage::Leave {}).await.unwrap();
    let result = b.run_until_media(&mut b_link, MEDIA_TIMEOUT).await;
    assert!(matches!(result, Err(CallError::PeerLeft)), "{result:?}");
    b.close().await.unwrap();
}
