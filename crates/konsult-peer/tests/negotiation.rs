//! How a call reacts to a failed connection and to restart requests: the
//! offerer sends an ICE restart offer (new credentials), the answerer asks
//! for one, and a call stops trying after a bounded number of restarts.
//! No connectivity is needed: only descriptions are exchanged.

use std::time::Instant;

use konsult_peer::{Call, ConnectionState, Negotiation, NetworkScope, PeerConfig, PeerEvent};
use konsult_protocol::{ClientMessage, ServerBody};

fn loopback() -> PeerConfig {
    PeerConfig {
        network: NetworkScope::Loopback,
        ..PeerConfig::default()
    }
}

fn ufrag(message: &ClientMessage) -> String {
    let ClientMessage::Offer { sdp } = message else {
        panic!("expected an offer, got {}", message.type_name());
    };
    sdp.as_str()
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("an ICE ufrag")
        .to_owned()
}

/// Offer and answer between two calls, returning the offer.
async fn negotiate(offerer: &mut Call, answerer: &mut Call) -> ClientMessage {
    let offer = offerer.start().await.unwrap().remove(0);
    let ClientMessage::Offer { sdp } = offer.clone() else {
        panic!("the offerer starts with an offer");
    };
    let answer = answerer
        .handle_signal(ServerBody::Offer { sdp })
        .await
        .unwrap()
        .remove(0);
    let ClientMessage::Answer { sdp } = answer else {
        panic!("the answerer answers");
    };
    assert!(offerer
        .handle_signal(ServerBody::Answer { sdp })
        .await
        .unwrap()
        .is_empty());
    offer
}

const FAILED: PeerEvent = PeerEvent::ConnectionState(ConnectionState::Failed);

#[tokio::test]
async fn a_failed_connection_makes_the_offerer_send_a_restart_offer_and_the_answerer_ask_for_one() {
    let now = Instant::now();
    let mut offerer = Call::new(loopback(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut answerer = Call::new(loopback(), Negotiation::Answerer, now)
        .await
        .unwrap();
    let first = negotiate(&mut offerer, &mut answerer).await;

    let restart = offerer.handle_event(FAILED).await.unwrap();
    assert_eq!(restart.len(), 1);
    assert_ne!(ufrag(&restart[0]), ufrag(&first), "new ICE credentials");
    assert_eq!(offerer.ice_restarts(), 1);

    let ask = answerer.handle_event(FAILED).await.unwrap();
    assert_eq!(ask, vec![ClientMessage::IceRestart {}]);

    offerer.close().await.unwrap();
    answerer.close().await.unwrap();
}

#[tokio::test]
async fn a_restart_request_is_answered_with_a_restart_offer_once_the_pending_offer_is_answered() {
    let now = Instant::now();
    let mut offerer = Call::new(loopback(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut answerer = Call::new(loopback(), Negotiation::Answerer, now)
        .await
        .unwrap();

    // The request arrives while the first offer still waits for its answer.
    let offer = offerer.start().await.unwrap().remove(0);
    assert!(offerer
        .handle_signal(ServerBody::IceRestart {})
        .await
        .unwrap()
        .is_empty());
    let ClientMessage::Offer { sdp } = offer.clone() else {
        unreachable!()
    };
    let ClientMessage::Answer { sdp: answer } = answerer
        .handle_signal(ServerBody::Offer { sdp })
        .await
        .unwrap()
        .remove(0)
    else {
        panic!("the answerer answers");
    };
    // The answer releases the postponed restart offer.
    let restart = offerer
        .handle_signal(ServerBody::Answer { sdp: answer })
        .await
        .unwrap();
    assert_eq!(restart.len(), 1);
    assert_ne!(ufrag(&restart[0]), ufrag(&offer));

    // An answerer only waits for the offer when asked to restart.
    assert!(answerer
        .handle_signal(ServerBody::IceRestart {})
        .await
        .unwrap()
        .is_empty());

    offerer.close().await.unwrap();
    answerer.close().await.unwrap();
}

#[tokio::test]
async fn restarts_on_failure_are_bounded() {
    let now = Instant::now();
    let mut offerer = Call::new(loopback(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut answerer = Call::new(loopback(), Negotiation::Answerer, now)
        .await
        .unwrap();
    negotiate(&mut offerer, &mut answerer).await;

    let mut offers = 0;
    for _ in 0..10 {
        let messages = offerer.handle_event(FAILED).await.unwrap();
        let Some(ClientMessage::Offer { sdp }) = messages.into_iter().next() else {
            continue;
        };
        offers += 1;
        let ClientMessage::Answer { sdp: answer } = answerer
            .handle_signal(ServerBody::Offer { sdp })
            .await
            .unwrap()
            .remove(0)
        else {
            panic!("the answerer answers");
        };
        offerer
            .handle_signal(ServerBody::Answer { sdp: answer })
            .await
            .unwrap();
    }
    assert_eq!(offers, 5);
    assert_eq!(offerer.ice_restarts(), 5);
    // Requests from the other side do not get past the bound either.
    assert!(offerer
        .handle_signal(ServerBody::IceRestart {})
        .await
        .unwrap()
        .is_empty());

    offerer.close().await.unwrap();
    answerer.close().await.unwrap();
}

#[tokio::test]
async fn a_colliding_offer_is_ignored_by_the_offerer_and_a_stray_answer_changes_nothing() {
    let now = Instant::now();
    let mut offerer = Call::new(loopback(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut other = Call::new(loopback(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let _ = offerer.start().await.unwrap();
    let ClientMessage::Offer { sdp } = other.start().await.unwrap().remove(0) else {
        unreachable!()
    };
    // Glare: the offerer keeps its own offer and does not answer.
    assert!(offerer
        .handle_signal(ServerBody::Offer { sdp: sdp.clone() })
        .await
        .unwrap()
        .is_empty());

    // An answer when no offer is pending is dropped, not applied.
    let mut answerer = Call::new(loopback(), Negotiation::Answerer, now)
        .await
        .unwrap();
    assert!(answerer
        .handle_signal(ServerBody::Answer { sdp })
        .await
        .unwrap()
        .is_empty());

    for call in [offerer, other, answerer] {
        call.close().await.unwrap();
    }
}
