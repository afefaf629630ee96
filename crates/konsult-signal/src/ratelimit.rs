//! Per-connection rate limit.

use std::time::{Duration, Instant};

/// A token bucket of `burst` tokens refilled at `rate` per second, written
/// as the equivalent generic cell rate algorithm (GCRA): one instant (the
/// theoretical arrival time) instead of a token count, so there is no
/// floating point and no refill bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    /// When the bucket would be full again if nothing more arrived.
    tat: Instant,
    /// Time one token takes to refill.
    interval: Duration,
    /// How far `tat` may run ahead of now: `(burst - 1) * interval`.
    tolerance: Duration,
}

impl RateLimiter {
    /// A full bucket at `now`. `rate` and `burst` are clamped to at least 1.
    pub(crate) fn new(now: Instant, rate_per_second: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / rate_per_second.max(1);
        RateLimiter {
            tat: now,
            interval,
            tolerance: interval
                .checked_mul(burst.max(1) - 1)
                .unwrap_or(Duration::MAX),
        }
    }

    /// Takes one token; `false` (and nothing taken) if the bucket is empty.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let tat = self.tat.max(now);
        if tat.saturating_duration_since(now) > self.tolerance {
            return false;
        }
        self.tat = tat + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(t0, 20, 50);
        for i in 0..50 {
            assert!(rl.try_take(t0), "message {i} of the burst");
        }
        assert!(!rl.try_take(t0));
        // One token every 50 ms.
        assert!(!rl.try_take(t0 + Duration::from_millis(49)));
        assert!(rl.try_take(t0 + Duration::from_millis(50)));
        assert!(!rl.try_take(t0 + Duration::from_millis(50)));
        // After 2.5 s idle the bucket is full again, and not more than full.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..50 {
            assert!(rl.try_take(later));
        }
        assert!(!rl.try_take(later));
    }
}
