//! The relay counts the media it relays, per participant reference and
//! direction, from what it forwarded itself: RTP/RTCP-looking payloads only,
//! through Send/Data indications and ChannelData alike.

mod common;

use std::time::{Duration, Instant};

use common::*;
use konsult_relay::{Flow, MediaCounters, Reference};

/// Payloads a WebRTC transport also carries that are not media, each
/// relayed but never counted: a STUN Binding request (ICE check), a DTLS
/// handshake record, a payload that looks like ChannelData, and first bytes
/// just outside RTP/RTCP's 128..=191.
fn not_media() -> Vec<Vec<u8>> {
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7; 12]);
    vec![
        stun,
        vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0x40, 0x00, 0x00, 0x04, 0x80, 0x80, 0x80, 0x80],
        vec![127; 30],
        vec![192; 30],
        vec![255; 30],
    ]
}

/// Sends `count` RTP packets of growing sizes from `from` to `to`, with the
/// non-media payloads in between, waiting for each to arrive. Returns the
/// expected flow (without instants): packets and payload bytes.
async fn stream(from: &Participant, to: &Participant, count: u16, base_len: usize) -> (u64, u64) {
    let mut bytes = 0;
    let not_media = not_media();
    for seq in 0..count {
        let packet = rtp(seq, base_len + usize::from(seq) * 7);
        from.send(to, &packet).await;
        to.expect(&packet).await;
        bytes += packet.len() as u64;
        let other = &not_media[usize::from(seq) % not_media.len()];
        from.send(to, other).await;
        to.expect(other).await;
    }
    (u64::from(count), bytes)
}

fn assert_flow(flow: &Flow, (packets, bytes): (u64, u64), window: (Instant, Instant), what: &str) {
    assert_eq!((flow.packets, flow.bytes), (packets, bytes), "{what}");
    let (first, last) = (flow.first.expect(what), flow.last.expect(what));
    assert!(
        window.0 <= first && first <= last && last <= window.1,
        "{what}: {flow:?}"
    );
}

#[tokio::test]
async fn media_is_counted_per_participant_and_direction_and_nothing_else() {
    let relay = start_relay(true).await;
    let consultation = Reference::parse("consult-media").unwrap();
    let p1 = Participant::join(&relay, "consult-media.p1").await;
    let p2 = Participant::join(&relay, "consult-media.p2").await;
    // Another consultation in the same relay, to show counters stay apart.
    let q1 = Participant::join(&relay, "consult-other.p1").await;
    let q2 = Participant::join(&relay, "consult-other.p2").await;

    let start = Instant::now();
    meet(&p1, &p2).await;
    meet(&q1, &q2).await;
    assert!(
        relay
            .media_counters(&consultation)
            .values()
            .all(|c| *c == MediaCounters::default()),
        "no media yet: hellos are not media"
    );

    // The first packets go as Send indications and arrive as Data
    // indications while the turn client binds its channel; later ones are
    // ChannelData both ways. Both paths count.
    let p1_to_p2 = stream(&p1, &p2, 25, 60).await;
    let p2_to_p1 = stream(&p2, &p1, 18, 100).await;
    let q1_to_q2 = stream(&q1, &q2, 3, 40).await;
    let end = Instant::now();

    let counters = relay.media_counters(&consultation);
    assert_eq!(counters.len(), 2, "{counters:?}");
    let c1 = &counters[&p1.reference];
    let c2 = &counters[&p2.reference];
    let window = (start, end);
    assert_flow(&c1.sent, p1_to_p2, window, "p1 sent");
    assert_flow(&c1.received, p2_to_p1, window, "p1 received");
    assert_flow(&c2.sent, p2_to_p1, window, "p2 sent");
    assert_flow(&c2.received, p1_to_p2, window, "p2 received");
    println!(
        "p1 sent {} packets / {} bytes, received {} / {}",
        c1.sent.packets, c1.sent.bytes, c1.received.packets, c1.received.bytes
    );

    // Asking for one participant gives that participant only.
    let only_p1 = relay.media_counters(&p1.reference);
    assert_eq!(only_p1.len(), 1);
    assert_eq!(only_p1[&p1.reference], *c1);

    let other = relay.media_counters(&Reference::parse("consult-other").unwrap());
    assert_eq!(other.len(), 2);
    assert_eq!(other[&q1.reference].sent.packets, q1_to_q2.0);
    assert_eq!(other[&q2.reference].received.bytes, q1_to_q2.1);
    assert_eq!(other[&q2.reference].sent, Flow::default());
    assert!(relay
        .media_counters(&Reference::parse("consult-unknown").unwrap())
        .is_empty());

    // The counters outlive the allocations: p1 releases its allocation
    // (as when it expires), and its observed media is still there.
    let p1_reference = p1.reference.clone();
    p1.leave().await;
    let deadline = Instant::now() + PATIENCE;
    while relay.allocations_for(&p1_reference).await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "p1's allocation was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(relay.media_counters(&p1_reference)[&p1_reference], *c1);

    for p in [p2, q1, q2] {
        p.leave().await;
    }
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn raw_send_indications_count_as_sent_only_once_relayed() {
    let relay = start_relay(true).await;
    let echo = EchoPeer::start().await;
    let creds = issue("consult-raw.p1", 600);
    let reference = creds.username().reference().clone();
    let raw = RawTurn::new(relay.local_addr()).await;
    let session = raw
        .allocate(
            &creds.username().to_string(),
            secrecy::ExposeSecret::expose_secret(creds.password()),
        )
        .await
        .unwrap()
        .expect("allocation");

    // Without a permission the server drops the Send indication: nothing
    // was relayed, nothing is counted.
    raw.send_indication(echo.addr, &rtp(1, 50)).await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(echo.received(), 0);
    assert_eq!(
        relay.media_counters(&reference)[&reference],
        MediaCounters::default()
    );

    // With one, the payload goes to the peer (sent) and its echo comes back
    // as a Data indication (received).
    assert_eq!(
        raw.create_permission(&session, echo.addr).await.unwrap(),
        Ok(())
    );
    raw.send_indication(echo.addr, &rtp(2, 50)).await.unwrap();
    assert_eq!(
        raw.recv_data(PATIENCE).await.as_deref(),
        Some(&rtp(2, 50)[..])
    );
    raw.send_indication(echo.addr, b"not media").await.unwrap();
    assert_eq!(
        raw.recv_data(PATIENCE).await.as_deref(),
        Some(&b"not media"[..])
    );
    let counters = relay.media_counters(&reference)[&reference];
    assert_eq!((counters.sent.packets, counters.sent.bytes), (1, 50));
    assert_eq!(
        (counters.received.packets, counters.received.bytes),
        (1, 50)
    );
    relay.shutdown().await.unwrap();
}
