//! The embedded relay relays UDP for a `turn`-crate client holding TURN REST
//! credentials, and answers STUN Binding requests.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use konsult_relay::Relay;
use stun::agent::TransactionId;
use stun::fingerprint::FINGERPRINT;
use stun::message::{Getter, Message, BINDING_REQUEST, BINDING_SUCCESS};
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use webrtc_util::Conn;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn turn_client_relays_datagrams_to_a_loopback_peer_and_back() {
    let relay = start_relay(true).await;
    let echo = EchoPeer::start().await;
    let creds = issue("consult-relay-a", 600);
    let client = turn_client_for(relay.local_addr(), &creds).await;

    let conn = client
        .allocate()
        .await
        .expect("allocation with REST credentials");
    let relayed = conn.local_addr().unwrap();
    assert_eq!(relayed.ip(), LOCALHOST, "advertises the listen IP");
    assert_ne!(relayed.port(), relay.local_addr().port());
    assert_eq!(relay.allocation_count().await.unwrap(), 1);

    // The first datagram goes as a Send indication while the channel is
    // being bound, later ones as ChannelData: both paths must relay.
    for i in 0..5 {
        let payload = format!("hej fra konsult #{i}");
        let echoed = round_trip(&conn, echo.addr, payload.as_bytes())
            .await
            .unwrap();
        assert_eq!(echoed, payload.as_bytes());
    }
    assert_eq!(echo.received(), 5);

    conn.close().await.unwrap();
    client.close().await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn answers_stun_binding_requests_with_the_clients_address() {
    let relay = start_relay(false).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut request = Message::new();
    request
        .build(&[
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
            Box::new(FINGERPRINT),
        ])
        .unwrap();
    socket
        .send_to(&request.raw, relay.local_addr())
        .await
        .unwrap();

    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("binding response")
        .unwrap();
    assert_eq!(from, relay.local_addr());
    let mut response = Message {
        raw: buf[..n].to_vec(),
        ..Default::default()
    };
    response.decode().unwrap();
    assert_eq!(response.typ, BINDING_SUCCESS);
    assert_eq!(response.transaction_id, request.transaction_id);
    let mut mapped = XorMappedAddress::default();
    mapped.get_from(&response).unwrap();
    assert_eq!(
        SocketAddr::new(mapped.ip, mapped.port),
        socket.local_addr().unwrap()
    );

    // The turn crate's own client agrees (it is what a headless peer uses).
    let client = turn_client(relay.local_addr(), "", "").await;
    let reflexive = client.send_binding_request().await.unwrap();
    assert_eq!(reflexive.ip(), LOCALHOST);
    client.close().await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn advertises_the_configured_public_ip_and_port_range() {
    let mut config = config(true);
    // A documentation address: only advertised, never sent to.
    config.public_ip = Some("203.0.113.10".parse().unwrap());
    config.relay_ports = Some(40_000..=40_999);
    let relay = Relay::start(config).await.unwrap();
    let creds = issue("consult-public-ip", 600);
    let raw = RawTurn::new(relay.local_addr()).await;
    let session = raw
        .allocate(
            &creds.username().to_string(),
            secrecy::ExposeSecret::expose_secret(creds.password()),
        )
        .await
        .unwrap()
        .expect("allocation");
    assert_eq!(
        session.relayed.ip(),
        "203.0.113.10".parse::<IpAddr>().unwrap()
    );
    assert!((40_000..=40_999).contains(&session.relayed.port()));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_answering() {
    let relay = start_relay(false).await;
    let addr = relay.local_addr();
    relay.shutdown().await.unwrap();

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut request = Message::new();
    request
        .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .unwrap();
    socket.send_to(&request.raw, addr).await.unwrap();
    let mut buf = [0u8; 1500];
    let answered = tokio::time::timeout(QUIET, socket.recv_from(&mut buf)).await;
    assert!(
        !matches!(answered, Ok(Ok(_))),
        "a shut-down relay must not answer"
    );
}
