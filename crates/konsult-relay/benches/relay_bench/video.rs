//! Video-like load: calls of two browsers relaying to each other through
//! one relay, as a relay-only consultation does.
//!
//! Each call is two allocations, A and B, with credentials of their own
//! participant references. Each binds a channel to the other's relayed
//! address (ChannelBind, which also installs the permission) and sends
//! RTP-looking ChannelData of `packet_bytes`, paced to `bitrate` each way.
//! Every payload carries its sequence number and the instant it was sent,
//! so the receiver knows what was lost and each packet's transit time
//! (client → relay → relayed socket → relay → other client, all in this
//! process's clock).
//!
//! Two figures come out per relay: loss (packets sent but never received)
//! and jitter. Jitter is taken two ways: the 99th percentile over all
//! packets of how far a packet's transit time lies from its stream's median
//! transit (what a receiver's jitter buffer must absorb for 99 % of
//! packets), and RFC 3550's interarrival jitter estimate of each stream
//! (what a browser's RTCP receiver report would say), of which the worst
//! stream is reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use konsult_relay::{Reference, TurnCredentials};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};

use super::relays::{RunningRelay, SECRET};
use super::turn_client::{channel_data, parse_channel_data, Allocation};

/// The channel each side binds to the other (the first of RFC 8656's range).
const CHANNEL: u16 = 0x4000;
/// How long receivers keep listening after the senders stop, for packets
/// still in flight.
const DRAIN: Duration = Duration::from_millis(500);
/// Bytes of the payload header: RTP's first two bytes (version 2, a dynamic
/// payload type, so Konsult counts it as media), then the sequence number
/// and the send instant.
const HEADER: usize = 16;

/// What a video run sends.
#[derive(Debug, Clone, Copy)]
pub struct VideoLoad {
    /// Calls, each two allocations sending to each other.
    pub calls: usize,
    /// Payload bit rate of each direction of a call.
    pub bitrate_bps: u64,
    /// Payload bytes of each packet (a full-size video packet).
    pub packet_bytes: usize,
    /// How long the senders send.
    pub duration: Duration,
}

impl VideoLoad {
    /// Time between two packets of one direction.
    fn packet_interval(&self) -> Duration {
        Duration::from_secs_f64(self.packet_bytes as f64 * 8.0 / self.bitrate_bps as f64)
    }
}

/// The outcome of one run on one relay.
#[derive(Debug, Clone, Copy, Default)]
pub struct VideoOutcome {
    /// Packets sent, over all directions of all calls.
    pub sent: u64,
    /// Distinct packets received.
    pub received: u64,
    /// 99th percentile over all packets of |transit − the stream's median
    /// transit|.
    pub p99_jitter: Duration,
    /// The largest RFC 3550 interarrival jitter of any stream at the end.
    pub worst_rfc3550_jitter: Duration,
    /// Mean payload bit rate each direction actually sent.
    pub sent_bps_per_direction: f64,
    /// The relay process's CPU time while media flowed.
    pub relay_cpu: Duration,
    /// How long media flowed.
    pub duration: Duration,
}

impl VideoOutcome {
    /// Lost packets in percent of those sent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.sent.saturating_sub(self.received) as f64 * 100.0 / self.sent as f64
    }
}

/// One packet as its receiver saw it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    sequence: u32,
    transit_ns: i64,
}

/// Sets up `load.calls` calls on `relay`, runs the media, and measures.
pub async fn run(relay: &mut RunningRelay, load: VideoLoad) -> anyhow::Result<VideoOutcome> {
    let secret = SecretString::from(SECRET);
    let mut sides = Vec::with_capacity(load.calls * 2);
    for call in 0..load.calls {
        let consultation = Reference::parse(&format!("bench-video-{call}"))?;
        let mut a = allocate(relay.addr, &secret, &consultation, "a").await?;
        let mut b = allocate(relay.addr, &secret, &consultation, "b").await?;
        a.channel_bind(CHANNEL, b.relayed)
            .await
            .with_context(|| format!("call {call}: A binds a channel"))?;
        b.channel_bind(CHANNEL, a.relayed)
            .await
            .with_context(|| format!("call {call}: B binds a channel"))?;
        // Each side sends on its own socket and receives the other's.
        sides.push((a.socket(), b.socket()));
        sides.push((b.socket(), a.socket()));
    }

    // One clock for send and receive instants: transit times need no
    // synchronisation because both ends are in this process.
    let epoch = Instant::now();
    let interval = load.packet_interval();
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + load.duration;
    let streams = sides.len();
    let mut senders = Vec::with_capacity(streams);
    let mut receivers = Vec::with_capacity(streams);
    for (index, (from, to)) in sides.into_iter().enumerate() {
        // Spread the streams' first packets over one interval, as
        // independent browsers' are, instead of sending them in lockstep.
        let offset = interval.mul_f64(index as f64 / streams as f64);
        senders.push(tokio::spawn(send_stream(
            from,
            start + offset,
            end,
            interval,
            load.packet_bytes,
            epoch,
        )));
        receivers.push(tokio::spawn(receive_stream(to, end + DRAIN, epoch)));
    }

    tokio::time::sleep_until(start).await;
    let cpu_before = relay.sample()?.cpu;
    let mut sent_per_stream = Vec::with_capacity(streams);
    for sender in senders {
        sent_per_stream.push(sender.await??);
    }
    let cpu_after = relay.sample()?.cpu;
    let mut arrivals = Vec::with_capacity(streams);
    for receiver in receivers {
        arrivals.push(receiver.await??);
    }
    relay.ensure_running()?;

    let mut outcome = VideoOutcome {
        relay_cpu: cpu_after.saturating_sub(cpu_before),
        duration: load.duration,
        ..Default::default()
    };
    let mut deviations_ns: Vec<u64> = Vec::new();
    for (sent, arrived) in sent_per_stream.iter().zip(&arrivals) {
        let stream = StreamFigures::of(*sent, arrived);
        outcome.sent += u64::from(*sent);
        outcome.received += stream.received;
        outcome.worst_rfc3550_jitter = outcome.worst_rfc3550_jitter.max(stream.rfc3550_jitter);
        deviations_ns.extend(stream.deviations_ns);
    }
    outcome.p99_jitter = Duration::from_nanos(percentile(&mut deviations_ns, 0.99));
    let bits_sent = outcome.sent as f64 * load.packet_bytes as f64 * 8.0;
    outcome.sent_bps_per_direction = bits_sent / load.duration.as_secs_f64() / streams as f64;
    Ok(outcome)
}

async fn allocate(
    relay: SocketAddr,
    secret: &SecretString,
    consultation: &Reference,
    participant: &str,
) -> anyhow::Result<Allocation> {
    let reference = Reference::for_participant(consultation, participant)?;
    let credentials = TurnCredentials::issue(
        secret,
        &reference,
        SystemTime::now(),
        Duration::from_secs(3600),
    )?;
    Allocation::new(
        relay,
        &credentials.username().to_string(),
        credentials.password().expose_secret(),
    )
    .await
    .with_context(|| format!("allocate for {reference}"))
}

/// Sends one direction of a call from `start` until `end`, one packet per
/// `interval`; returns how many it sent. Ticks missed while the machine
/// was busy are sent at once, so the stream keeps its bit rate.
async fn send_stream(
    socket: Arc<UdpSocket>,
    start: Instant,
    end: Instant,
    interval: Duration,
    packet_bytes: usize,
    epoch: Instant,
) -> anyhow::Result<u32> {
    let mut ticks = tokio::time::interval_at(start, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut payload = vec![0u8; packet_bytes.max(HEADER)];
    payload[0] = 0x80; // RTP version 2
    payload[1] = 96; // a dynamic payload type, as video uses
    let mut frame = Vec::with_capacity(payload.len() + 4);
    let mut sequence: u32 = 0;
    loop {
        ticks.tick().await;
        let now = Instant::now();
        if now >= end {
            return Ok(sequence);
        }
        payload[2..4].copy_from_slice(&(sequence as u16).to_be_bytes());
        payload[4..8].copy_from_slice(&sequence.to_be_bytes());
        let sent_ns = now.duration_since(epoch).as_nanos() as u64;
        payload[8..16].copy_from_slice(&sent_ns.to_be_bytes());
        channel_data(CHANNEL, &payload, &mut frame);
        socket
            .send(&frame)
            .await
            .context("send media to the relay")?;
        sequence += 1;
    }
}

/// Receives one direction of a call until `until`.
async fn receive_stream(
    socket: Arc<UdpSocket>,
    until: Instant,
    epoch: Instant,
) -> anyhow::Result<Vec<Arrival>> {
    let mut arrivals = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(read) = tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
        let n = read.context("receive media from the relay")?;
        let received_ns = epoch.elapsed().as_nanos() as i64;
        let Some((_, payload)) = parse_channel_data(&buf[..n]) else {
            continue; // a late control message
        };
        if payload.len() < HEADER {
            continue;
        }
        let sequence = u32::from_be_bytes(payload[4..8].try_into().expect("4 bytes"));
        let sent_ns = u64::from_be_bytes(payload[8..16].try_into().expect("8 bytes"));
        arrivals.push(Arrival {
            sequence,
            transit_ns: received_ns - sent_ns as i64,
        });
    }
    Ok(arrivals)
}

/// What one stream's arrivals say.
struct StreamFigures {
    received: u64,
    rfc3550_jitter: Duration,
    deviations_ns: Vec<u64>,
}

impl StreamFigures {
    fn of(sent: u32, arrivals: &[Arrival]) -> Self {
        // Distinct sequence numbers of this run (a duplicate is not a
        // packet more).
        let mut seen = vec![false; sent as usize];
        let mut received = 0;
        for arrival in arrivals {
            if let Some(slot) = seen.get_mut(arrival.sequence as usize) {
                if !*slot {
                    *slot = true;
                    received += 1;
                }
            }
        }
        // RFC 3550 §6.4.1: J += (|D| - J) / 16, D the change of transit
        // time between consecutive arrivals.
        let mut jitter = 0.0f64;
        for pair in arrivals.windows(2) {
            let change = (pair[1].transit_ns - pair[0].transit_ns).unsigned_abs() as f64;
            jitter += (change - jitter) / 16.0;
        }
        let mut transits: Vec<i64> = arrivals.iter().map(|a| a.transit_ns).collect();
        transits.sort_unstable();
        let median = transits.get(transits.len() / 2).copied().unwrap_or(0);
        let deviations_ns = transits
            .iter()
            .map(|t| (t - median).unsigned_abs())
            .collect();
        Self {
            received,
            rfc3550_jitter: Duration::from_nanos(jitter as u64),
            deviations_ns,
        }
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank; 0 when empty.
pub fn percentile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
