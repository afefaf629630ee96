//! A connection's queue of outbound frames: its room's hub task writes, the
//! connection's pump reads and sends.
//!
//! A participant may wait for hours and receive a handful of frames, and a
//! node holds tens of thousands of them, so the queue must cost next to
//! nothing while it is empty. Tokio's bounded channel allocates its first
//! block of 32 slots and cache-padded counters at creation (about 1.5 KiB, a
//! sixth of all a waiting participant costs); this queue is one small
//! allocation (a `VecDeque` that allocates only while frames wait and gives
//! its memory back once drained, a `Notify`, two flags), ~100 bytes.
//!
//! There is one writer (the hub task) and one reader (the pump). The
//! queue is the truth and the `Notify` only a wake-up: the reader always
//! looks at the queue before it waits, so a lost or spurious wake-up never
//! loses or delays a frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::hub::Outbound;

/// A drained queue keeps at most this many slots; a burst's larger buffer
/// is given back.
const KEEP_SLOTS: usize = 4;

/// Why [`Outbox::try_send`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity: the connection does not read.
    Full,
    /// The connection is gone.
    Gone,
}

/// The hub's end. Dropping it ends the queue: the pump gets what is
/// queued, then `None`.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The pump's end.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    outbox_gone: AtomicBool,
    inbox_gone: AtomicBool,
    ready: Notify,
}

/// A queue of at most `capacity` frames.
pub fn outbox(capacity: usize) -> (Outbox, Inbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        capacity,
        outbox_gone: AtomicBool::new(false),
        inbox_gone: AtomicBool::new(false),
        ready: Notify::new(),
    });
    (
        Outbox {
            shared: Arc::clone(&shared),
        },
        Inbox { shared },
    )
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        // Nothing panics while holding the lock; a poisoned queue is still
        // a queue.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, frame: Outbound) -> Result<(), Refused> {
        let mut queue = self.queue();
        if queue.len() >= self.capacity {
            return Err(Refused::Full);
        }
        queue.push_back(frame);
        Ok(())
    }
}

impl Outbox {
    /// Queues `frame` for the connection, or says why not, at once.
    pub fn try_send(&self, frame: Outbound) -> Result<(), Refused> {
        if self.shared.inbox_gone.load(Ordering::Acquire) {
            return Err(Refused::Gone);
        }
        self.shared.push(frame)?;
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.outbox_gone.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }
}

impl Inbox {
    /// The next frame; `None` once the hub dropped its end and every frame
    /// queued before is taken. Cancel-safe: a frame is taken only when it is
    /// returned.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(frame) = self.pop() {
                return Some(frame);
            }
            if self.shared.outbox_gone.load(Ordering::Acquire) {
                // Whatever came before the drop.
                return self.pop();
            }
            // `notify_one` keeps a wake-up for a reader not yet waiting, so
            // a frame queued since `pop` wakes this at once.
            self.shared.ready.notified().await;
        }
    }

    /// Queues `frame` behind the frames already queued, if the hub still
    /// writes to this connection and there is room.
    pub fn push_behind(&self, frame: Outbound) -> bool {
        !self.shared.outbox_gone.load(Ordering::Acquire) && self.shared.push(frame).is_ok()
    }

    fn pop(&self) -> Option<Outbound> {
        let mut queue = self.shared.queue();
        let frame = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP_SLOTS {
            *queue = VecDeque::new();
        }
        frame
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.shared.inbox_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(n: u32) -> Outbound {
        Outbound::Frame(n.to_string())
    }

    fn text(frame: Option<Outbound>) -> Option<String> {
        match frame {
            Some(Outbound::Frame(text)) => Some(text),
            Some(Outbound::Close { reason, .. }) => Some(format!("close {reason}")),
            None => None,
        }
    }

    #[tokio::test]
    async fn frames_come_in_order_then_none_after_the_hub_drops_its_end() {
        let (outbox, mut inbox) = outbox(8);
        for n in 0..3 {
            outbox.try_send(frame(n)).unwrap();
        }
        drop(outbox);
        for n in 0..3 {
            assert_eq!(text(inbox.recv().await), Some(n.to_string()));
        }
        assert_eq!(text(inbox.recv().await), None);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_for_a_frame_and_for_the_end() {
        let (outbox, mut inbox) = outbox(8);
        let reader = tokio::spawn(async move {
            let first = text(inbox.recv().await);
            let end = text(inbox.recv().await);
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        outbox.try_send(frame(7)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(outbox);
        let (first, end) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the reader woke")
            .unwrap();
        assert_eq!(first.as_deref(), Some("7"));
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn a_full_queue_and_a_gone_reader_refuse() {
        let (outbox, inbox) = outbox(2);
        outbox.try_send(frame(0)).unwrap();
        outbox.try_send(frame(1)).unwrap();
        assert_eq!(outbox.try_send(frame(2)), Err(Refused::Full));
        assert!(!inbox.push_behind(frame(3)), "full for the pump too");
        drop(inbox);
        assert_eq!(outbox.try_send(frame(4)), Err(Refused::Gone));
    }

    #[tokio::test]
    async fn the_pump_queues_behind_while_the_hub_writes_and_not_after() {
        let (outbox, mut inbox) = outbox(8);
        outbox.try_send(frame(0)).unwrap();
        let close = Outbound::Close {
            code: 1003,
            reason: "binary",
        };
        assert!(inbox.push_behind(close.clone()));
        assert_eq!(text(inbox.recv().await).as_deref(), Some("0"));
        assert_eq!(text(inbox.recv().await).as_deref(), Some("close binary"));
        drop(outbox);
        assert!(!inbox.push_behind(close));
    }

    #[tokio::test]
    async fn a_drained_queue_gives_its_burst_back() {
        let (outbox, mut inbox) = outbox(512);
        for n in 0..100 {
            outbox.try_send(frame(n)).unwrap();
        }
        for _ in 0..100 {
            inbox.recv().await.unwrap();
        }
        assert!(inbox.shared.queue().capacity() <= KEEP_SLOTS);
    }
}
