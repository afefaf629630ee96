//! Without `allow_loopback`, the relay refuses loopback and other special
//! peers: CreatePermission and ChannelBind get 403 Forbidden IP, Send
//! indications are dropped, and nothing reaches the peer.

mod common;

use std::net::SocketAddr;

use common::*;
use secrecy::ExposeSecret;
use stun::message::METHOD_CREATE_PERMISSION;
use turn::proto::peeraddr::PeerAddress;
use webrtc_util::Conn;

#[tokio::test]
async fn turn_client_gets_403_for_a_loopback_peer() {
    let relay = start_relay(false).await;
    let echo = EchoPeer::start().await;
    let creds = issue("consult-deny-a", 600);
    let client = turn_client_for(relay.local_addr(), &creds).await;
    let conn = client
        .allocate()
        .await
        .expect("allocation itself is allowed");

    let err = conn
        .send_to(b"to the relay host's loopback", echo.addr)
        .await
        .expect_err("permission to 127.0.0.1 must be refused");
    assert!(
        err.to_string().contains("403"),
        "expected 403 Forbidden IP, got: {err}"
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(echo.received(), 0, "nothing may reach the loopback peer");

    conn.close().await.unwrap();
    client.close().await.unwrap();
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn permission_channel_bind_and_send_to_loopback_are_refused() {
    let relay = start_relay(false).await;
    let echo = EchoPeer::start().await;
    let creds = issue("consult-deny-b", 600);
    let raw = RawTurn::new(relay.local_addr()).await;
    let session = raw
        .allocate(
            &creds.username().to_string(),
            creds.password().expose_secret(),
        )
        .await
        .unwrap()
        .expect("allocation");

    // The exact answer: 403 with coturn's reason phrase.
    let response = raw
        .signed(
            &session,
            METHOD_CREATE_PERMISSION,
            vec![Box::new(PeerAddress {
                ip: echo.addr.ip(),
                port: echo.addr.port(),
            })],
        )
        .await
        .unwrap();
    assert_eq!(error_code(&response), Some(403));
    assert_eq!(error_reason(&response).as_deref(), Some("Forbidden IP"));

    assert_eq!(
        raw.channel_bind(&session, echo.addr, 0x4000).await.unwrap(),
        Err(403)
    );

    raw.send_indication(echo.addr, b"sneaky").await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(echo.received(), 0);
    relay.shutdown().await.unwrap();
}

/// Permission requests are refused before anything is sent, so naming
/// these addresses sends no traffic to them.
#[tokio::test]
async fn private_link_local_cgnat_multicast_and_reserved_peers_get_403() {
    let relay = start_relay(true).await; // even with loopback allowed
    let creds = issue("consult-deny-c", 600);
    let raw = RawTurn::new(relay.local_addr()).await;
    let session = raw
        .allocate(
            &creds.username().to_string(),
            creds.password().expose_secret(),
        )
        .await
        .unwrap()
        .expect("allocation");
    for peer in [
        "10.1.2.3:5000",
        "172.16.0.1:5000",
        "192.168.1.10:5000",
        "100.64.0.1:5000",
        "169.254.169.254:80",
        "224.0.0.251:5353",
        "255.255.255.255:9",
        "0.0.0.0:9",
        "192.0.2.1:9",
        "198.18.0.1:9",
        "240.0.0.1:9",
    ] {
        let peer: SocketAddr = peer.parse().unwrap();
        assert_eq!(
            raw.create_permission(&session, peer).await.unwrap(),
            Err(403),
            "CreatePermission {peer}"
        );
        assert_eq!(
            raw.channel_bind(&session, peer, 0x4001).await.unwrap(),
            Err(403),
            "ChannelBind {peer}"
        );
    }
    relay.shutdown().await.unwrap();
}

/// The control for the tests above: the same requests succeed and data flows
/// when the policy allows loopback.
#[tokio::test]
async fn with_allow_loopback_the_same_requests_succeed() {
    let relay = start_relay(true).await;
    let echo = EchoPeer::start().await;
    let creds = issue("consult-deny-d", 600);
    let raw = RawTurn::new(relay.local_addr()).await;
    let session = raw
        .allocate(
            &creds.username().to_string(),
            creds.password().expose_secret(),
        )
        .await
        .unwrap()
        .expect("allocation");
    assert_eq!(
        raw.create_permission(&session, echo.addr).await.unwrap(),
        Ok(())
    );
    raw.send_indication(echo.addr, b"allowed").await.unwrap();
    assert_eq!(
        raw.recv_data(PATIENCE).await.as_deref(),
        Some(&b"allowed"[..])
    );
    assert_eq!(echo.received(), 1);
    assert_eq!(
        raw.channel_bind(&session, echo.addr, 0x4000).await.unwrap(),
        Ok(())
    );
    relay.shutdown().await.unwrap();
}
