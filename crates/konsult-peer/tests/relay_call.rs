//! Two relay-only peers complete a call through Konsult's embedded TURN
//! relay on 127.0.0.1, with TURN REST credentials as the server hands out.

use std::time::{Duration, Instant, SystemTime};

use konsult_peer::{
    direct_link, Call, CandidateType, IcePolicy, IceServer, Negotiation, NetworkScope, PeerConfig,
};
use konsult_protocol::Role;
use konsult_relay::{Reference, Relay, RelayConfig, TurnCredentials};
use secrecy::{ExposeSecret, SecretString};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_peers_call_through_the_embedded_relay() {
    let secret = SecretString::from("peer-relay-test-secret");
    let mut config = RelayConfig::new(secret.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    // Both peers' relay addresses are on loopback here.
    config.peer_policy.allow_loopback = true;
    let relay = Relay::start(config).await.unwrap();

    let reference = Reference::parse("0b6f2c1e-8d2a-4f0e-9c3b-5a7d1e2f3a4b").unwrap();
    let credentials = TurnCredentials::issue(
        &secret,
        &reference,
        SystemTime::now(),
        Duration::from_secs(600),
    )
    .unwrap();
    let peer_config = PeerConfig {
        ice_servers: vec![IceServer {
            urls: vec![format!("turn:{}?transport=udp", relay.local_addr())],
            username: Some(credentials.username().to_string()),
            credential: Some(credentials.password().expose_secret().to_owned()),
        }],
        ice_policy: IcePolicy::Relay,
        network: NetworkScope::Loopback,
        ..PeerConfig::default()
    };

    let (mut a_link, mut b_link) = direct_link(Role::Therapist, Role::Patient);
    let now = Instant::now();
    let mut therapist = Call::new(peer_config.clone(), Negotiation::Offerer, now)
        .await
        .unwrap();
    let mut patient = Call::new(peer_config, Negotiation::Answerer, now)
        .await
        .unwrap();
    let timeout = Duration::from_secs(60);
    let (t, p) = tokio::join!(
        therapist.run_until_media(&mut a_link, timeout),
        patient.run_until_media(&mut b_link, timeout),
    );
    for (who, report) in [("therapist", t.unwrap()), ("patient", p.unwrap())] {
        assert!(report.media_flowed_both_ways(), "{who}: {report:#?}");
        let pair = report.selected_pair.expect("a selected pair");
        assert_eq!(pair.local, CandidateType::Relay, "{who}: {pair:?}");
        assert!(pair.relayed());
    }
    assert!(relay.allocation_count().await.unwrap() >= 2);

    therapist.close().await.unwrap();
    patient.close().await.unwrap();
    relay.shutdown().await.unwrap();
}
