//! TURN over TCP (RFC 8656 §3.1) on the relay's port, and over any stream
//! handed to [`konsult_relay::Relay::serve_stream`] (how Konsult's HTTPS
//! listener passes on TURN over TLS): frames back to back, ChannelData
//! padded to four bytes, the allocation tied to the connection.

mod common;

use std::time::Duration;

use common::*;
use konsult_relay::{Reference, Relay};
use secrecy::ExposeSecret;

/// ChannelData for `channel`, padded to four bytes as on a stream.
fn padded_channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = channel.to_be_bytes().to_vec();
    frame.extend((payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    frame.resize(frame.len().next_multiple_of(4), 0);
    frame
}

async fn allocated(raw: &RawTurn, reference: &str) -> Session {
    let creds = issue(reference, 600);
    raw.allocate(
        &creds.username().to_string(),
        creds.password().expose_secret(),
    )
    .await
    .unwrap()
    .expect("allocated")
}

/// Relays through `raw`'s allocation to an echo peer both ways, with a
/// Send indication and with ChannelData of an odd length.
async fn relays_both_ways(raw: &RawTurn, session: &Session) {
    let echo = EchoPeer::start().await;
    assert_eq!(
        raw.create_permission(session, echo.addr).await.unwrap(),
        Ok(())
    );
    raw.send_indication(echo.addr, b"indication").await.unwrap();
    assert_eq!(
        raw.recv_data(PATIENCE).await.as_deref(),
        Some(&b"indication"[..])
    );
    assert_eq!(
        raw.channel_bind(session, echo.addr, 0x4001).await.unwrap(),
        Ok(())
    );
    let payload = rtp(7, 173);
    raw.send_frame(&padded_channel_data(0x4001, &payload))
        .await
        .unwrap();
    let echoed = raw
        .recv_frame(tokio::time::Instant::now() + PATIENCE)
        .await
        .expect("ChannelData back");
    assert_eq!(echoed, padded_channel_data(0x4001, &payload));
}

#[tokio::test]
async fn turn_over_tcp_relays_both_ways_on_the_relay_port() {
    let relay = start_relay(true).await;
    let raw = RawTurn::tcp(relay.local_addr()).await;
    let session = allocated(&raw, "tcp").await;
    relays_both_ways(&raw, &session).await;
    let counters = relay.media_counters(&Reference::parse("tcp").unwrap());
    let seen = counters[&Reference::parse("tcp").unwrap()];
    assert_eq!((seen.sent.packets, seen.received.packets), (1, 1));
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn closing_the_connection_ends_its_allocation() {
    let relay = start_relay(true).await;
    let raw = RawTurn::tcp(relay.local_addr()).await;
    allocated(&raw, "closing").await;
    assert_eq!(relay.allocation_count().await.unwrap(), 1);
    drop(raw);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while relay.allocation_count().await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "allocation outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn closing_a_reference_closes_its_connections_too() {
    let relay = start_relay(true).await;
    let raw = RawTurn::tcp(relay.local_addr()).await;
    allocated(&raw, "revoked.p1").await;
    let closed = relay
        .close_reference(&Reference::parse("revoked").unwrap())
        .await
        .unwrap();
    assert_eq!(closed, 1);
    assert!(
        raw.closed_within(PATIENCE).await,
        "the connection is closed"
    );
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tcp_only_relay_serves_streams_and_ignores_udp() {
    let mut config = config(true);
    config.udp = false;
    let relay = Relay::start(config).await.unwrap();
    let raw = RawTurn::tcp(relay.local_addr()).await;
    let session = allocated(&raw, "tcp-only").await;
    relays_both_ways(&raw, &session).await;
    let udp = RawTurn::new(relay.local_addr()).await;
    let creds = issue("udp", 600);
    let tried = tokio::time::timeout(
        QUIET,
        udp.allocate(
            &creds.username().to_string(),
            creds.password().expose_secret(),
        ),
    )
    .await;
    assert!(!matches!(tried, Ok(Ok(_))), "UDP is not served");
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn any_stream_handed_over_is_served_until_the_relay_stops() {
    let relay = start_relay(true).await;
    let (client_end, relay_end) = tokio::io::duplex(64 * 1024);
    let client_addr = "127.0.0.1:44444".parse().unwrap();
    relay.serve_stream(relay_end, client_addr);
    let raw = RawTurn::over(Box::new(client_end), client_addr);
    let session = allocated(&raw, "handed-over").await;
    relays_both_ways(&raw, &session).await;
    relay.shutdown().await.unwrap();
    assert!(
        raw.closed_within(PATIENCE).await,
        "shutdown ends the stream"
    );
}

#[tokio::test]
async fn garbage_on_a_stream_closes_it_without_harm() {
    let relay = start_relay(true).await;
    let raw = RawTurn::tcp(relay.local_addr()).await;
    // First two bits 11: neither STUN nor ChannelData.
    raw.send_frame(&[0xC0, 0, 0, 0, 1, 2, 3, 4]).await.unwrap();
    assert!(raw.closed_within(PATIENCE).await);
    let other = RawTurn::tcp(relay.local_addr()).await;
    allocated(&other, "after-garbage").await;
    relay.shutdown().await.unwrap();
}
