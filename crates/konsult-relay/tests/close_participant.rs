//! Closing one participant's reference evicts that participant alone, and
//! within a second; closing the consultation's reference evicts everyone and
//! refuses fresh credentials of every participant; closing again (as a
//! server does on start-up) is cheap.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use konsult_relay::{Reference, Relay};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

/// The longest the brief allows between a close and the last relayed
/// datagram.
const SILENCE_WITHIN: Duration = Duration::from_secs(1);

async fn allocate_fresh(relay: &Relay, reference: &str) -> Outcome<Session> {
    let creds = issue(reference, 600);
    RawTurn::new(relay.local_addr())
        .await
        .allocate(
            &creds.username().to_string(),
            creds.password().expose_secret(),
        )
        .await
        .expect("the relay answers")
}

/// Media from one participant to another every 5 ms, and the arrival time
/// of every packet, until stopped.
struct Stream {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stream {
    fn start(from: &Arc<Participant>, to: &Arc<Participant>) -> Self {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sender = tokio::spawn({
            let (from, to, stop) = (Arc::clone(from), Arc::clone(to), Arc::clone(&stop));
            async move {
                let mut seq = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    // After an eviction sending may fail; keep trying, as
                    // a browser would.
                    let _ = from.conn.send_to(&rtp(seq, 160), to.relayed).await;
                    seq = seq.wrapping_add(1);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let receiver = tokio::spawn({
            let (to, arrivals) = (Arc::clone(to), Arc::clone(&arrivals));
            async move {
                while let Some(payload) = to.recv(Duration::from_secs(60)).await {
                    if payload.first() == Some(&0x80) {
                        arrivals.lock().unwrap().push(Instant::now());
                    }
                }
            }
        });
        Self {
            arrivals,
            stop,
            tasks: vec![sender, receiver],
        }
    }

    fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }

    /// The last arrival after `since`, if any.
    fn last_after(&self, since: Instant) -> Option<Instant> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t > since)
            .max()
    }

    /// The last arrival before `until`, if any.
    fn last_before(&self, until: Instant) -> Option<Instant> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t <= until)
            .max()
    }

    async fn flowing(&self) {
        let deadline = Instant::now() + PATIENCE;
        let before = self.count();
        while self.count() < before + 20 {
            assert!(Instant::now() < deadline, "media is not flowing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.abort();
        }
    }
}

/// On a multi-threaded runtime, as in the server: the relay's tasks run in
/// parallel with the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_participant_silences_it_within_a_second_and_the_other_carries_on() {
    let relay = start_relay(true).await;
    let echo = EchoPeer::start().await;
    let consultation = Reference::parse("consult-evict").unwrap();
    let p1 = Arc::new(Participant::join(&relay, "consult-evict.p1").await);
    let p2 = Arc::new(Participant::join(&relay, "consult-evict.p2").await);
    meet(&p1, &p2).await;
    assert_eq!(relay.allocations_for(&consultation).await.unwrap(), 2);

    let to_p2 = Stream::start(&p1, &p2);
    let to_p1 = Stream::start(&p2, &p1);
    to_p2.flowing().await;
    to_p1.flowing().await;

    // Evict p1 (its join link was revoked) while media flows both ways.
    let closing = Instant::now();
    assert_eq!(relay.close_reference(&p1.reference).await.unwrap(), 1);
    let closed = Instant::now();
    let p1_at_close = relay.media_counters(&p1.reference)[&p1.reference];
    let p2_at_close = relay.media_counters(&p2.reference)[&p2.reference];
    tokio::time::sleep(SILENCE_WITHIN + Duration::from_millis(500)).await;

    // At the clients: the last datagram relayed to or from p1, and the
    // last one before the close (to show media flowed up to it).
    let last = [to_p2.last_after(closing), to_p1.last_after(closing)]
        .into_iter()
        .flatten()
        .max();
    let silence = last.map_or(Duration::ZERO, |t| t - closing);
    let flowing_until = [to_p2.last_before(closing), to_p1.last_before(closing)]
        .into_iter()
        .flatten()
        .max()
        .map(|t| closing - t);
    println!(
        "close_reference(p1) took {:?} under media load; the last datagram relayed for p1 \
         arrived {:?} after the close began ({} after it returned); before the close, the \
         last one arrived {:?} before it began",
        closed - closing,
        silence,
        last.map_or("none".to_owned(), |t| format!(
            "{:?}",
            t.saturating_duration_since(closed)
        )),
        flowing_until.expect("media flowed before the close"),
    );
    assert!(
        silence < SILENCE_WITHIN,
        "p1 still relayed {silence:?} after the close"
    );
    assert!(
        closed - closing < SILENCE_WITHIN,
        "close took {:?}",
        closed - closing
    );
    // At the relay: not one datagram of p1 counted after the close returned.
    assert_eq!(
        relay.media_counters(&p1.reference)[&p1.reference],
        p1_at_close
    );
    let p2_now = relay.media_counters(&p2.reference)[&p2.reference];
    assert_eq!(
        p2_now.received, p2_at_close.received,
        "nothing reaches p2 through p1's allocation"
    );

    // p2 keeps its allocation and relays on: its stream still leaves the
    // relay (towards p1's closed relayed address), and it reaches a peer
    // (once the dead stream to p2 no longer reads p2's socket).
    to_p2.stop();
    assert!(p2_now.sent.packets > p2_at_close.sent.packets);
    assert_eq!(relay.allocations_for(&p2.reference).await.unwrap(), 1);
    assert_eq!(
        round_trip(p2.conn.as_ref(), echo.addr, b"still here")
            .await
            .unwrap(),
        b"still here"
    );
    // p1's credentials are refused, fresh ones included; p2's are not.
    assert_eq!(
        allocate_fresh(&relay, "consult-evict.p1").await.err(),
        Some(401)
    );
    assert!(allocate_fresh(&relay, "consult-evict.p2").await.is_ok());

    // Closing the consultation ends p2 too (the stream p2 → p1 is still
    // running): measured at the relay, from the last instant it counted.
    let closing = Instant::now();
    assert_eq!(relay.close_reference(&consultation).await.unwrap(), 2);
    let closed = Instant::now();
    let p2_at_close = relay.media_counters(&p2.reference)[&p2.reference];
    let last_counted = p2_at_close.sent.last.expect("p2 sent media");
    let relative = if last_counted > closing {
        format!("{:?} after", last_counted - closing)
    } else {
        format!("{:?} before", closing - last_counted)
    };
    println!(
        "close_reference(consultation) took {:?}; the relay counted p2's last datagram \
         {relative} the close began",
        closed - closing
    );
    assert!(last_counted <= closed);
    let echoed = echo.received();
    let _ = p2.conn.send_to(b"after the end", echo.addr).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        echo.received(),
        echoed,
        "p2's media no longer leaves the relay"
    );
    assert_eq!(
        relay.media_counters(&p2.reference)[&p2.reference],
        p2_at_close
    );
    assert_eq!(relay.allocations_for(&consultation).await.unwrap(), 0);

    // Fresh credentials of every participant, and of the consultation
    // itself, are refused; another consultation is not affected.
    for reference in [
        "consult-evict.p1",
        "consult-evict.p2",
        "consult-evict.p3",
        "consult-evict",
    ] {
        assert_eq!(
            allocate_fresh(&relay, reference).await.err(),
            Some(401),
            "{reference}"
        );
    }
    assert!(allocate_fresh(&relay, "consult-next.p1").await.is_ok());
    // The evidence stays readable after the close.
    assert_eq!(relay.media_counters(&consultation).len(), 2);

    to_p1.stop();
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn closing_again_on_start_up_is_cheap_and_idempotent() {
    let relay = start_relay(false).await;
    let references: Vec<Reference> = (0..1000)
        .map(|i| match i % 3 {
            0 => format!("consult-{i}"),
            n => format!("consult-{}.p{n}", i - n),
        })
        .map(|r| Reference::parse(&r).unwrap())
        .collect();

    // What a server does on start-up: close again everything it closed in
    // the last 24 hours, in one call.
    let started = Instant::now();
    assert_eq!(relay.close_references(&references).await.unwrap(), 0);
    let batch = started.elapsed();
    // And one by one, twice over: each call is cheap when nothing is in
    // flight.
    let started = Instant::now();
    for reference in references
        .iter()
        .take(100)
        .chain(references.iter().take(100))
    {
        assert_eq!(relay.close_reference(reference).await.unwrap(), 0);
    }
    let single = started.elapsed() / 200;
    println!(
        "re-closing 1000 references took {batch:?}; one close_reference took {single:?} on average"
    );
    assert!(batch < Duration::from_secs(1), "{batch:?}");
    assert!(single < Duration::from_millis(50), "{single:?}");

    assert_eq!(
        allocate_fresh(&relay, "consult-0.p7").await.err(),
        Some(401)
    );
    assert_eq!(
        allocate_fresh(&relay, "consult-0.p1").await.err(),
        Some(401)
    );
    assert!(
        allocate_fresh(&relay, "consult-1").await.is_ok(),
        "consult-1 was never closed"
    );
    relay.shutdown().await.unwrap();
}
