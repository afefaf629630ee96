//! A per-client token bucket for anonymous endpoints (the patient's join
//! page): each client may make [`Rate::burst`] requests at once and
//! [`Rate::per_minute`] a minute after that; beyond, 429 with `Retry-After`.
//!
//! Clients are kept as keyed hashes of their address (HMAC-SHA-256 with a
//! key made at start, never stored; an IPv6 client by its /64), never the
//! address. Memory is bounded: at most [`RateLimiter::MAX_CLIENTS`] buckets;
//! when full, buckets that have refilled (idle clients) go first, then the
//! fullest eighth, so a busy client outlives a flood of one-off addresses.
//!
//! [`Buckets`] is the core, with time as an argument; [`RateLimiter`] puts it
//! behind a mutex with the hashing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How fast a client may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests a minute after the burst.
    pub per_minute: u32,
}

type Key = [u8; 16];

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every client seen recently.
#[derive(Debug)]
pub struct Buckets {
    rate: Rate,
    max: usize,
    buckets: HashMap<Key, Bucket>,
}

impl Buckets {
    /// Empty buckets at `rate`, at most `max` clients.
    pub fn new(rate: Rate, max: usize) -> Buckets {
        Buckets {
            rate,
            max: max.max(8),
            buckets: HashMap::new(),
        }
    }

    fn refill_per_second(&self) -> f64 {
        f64::from(self.rate.per_minute.max(1)) / 60.0
    }

    fn level(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.refill_per_second()).min(f64::from(self.rate.burst))
    }

    /// Takes one token for `key`: `Ok` to go on, `Err(wait)` when the
    /// client must wait that long first.
    pub fn take(&mut self, now: Instant, key: Key) -> Result<(), Duration> {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max {
            self.evict(now);
        }
        let full = f64::from(self.rate.burst);
        let bucket = self.buckets.get(&key).copied().unwrap_or(Bucket {
            tokens: full,
            at: now,
        });
        let tokens = self.level(&bucket, now);
        if tokens >= 1.0 {
            self.buckets.insert(
                key,
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
            Ok(())
        } else {
            self.buckets.insert(key, Bucket { tokens, at: now });
            Err(Duration::from_secs_f64(
                (1.0 - tokens) / self.refill_per_second(),
            ))
        }
    }

    /// Drops idle (refilled) buckets, or if none, the fullest eighth.
    fn evict(&mut self, now: Instant) {
        let full = f64::from(self.rate.burst);
        let before = self.buckets.len();
        let levels: Vec<(Key, f64)> = self
            .buckets
            .iter()
            .map(|(k, b)| (*k, self.level(b, now)))
            .collect();
        for (key, level) in &levels {
            if *level >= full {
                self.buckets.remove(key);
            }
        }
        if self.buckets.len() < before {
            return;
        }
        let mut levels = levels;
        levels.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (key, _) in levels.iter().take((before / 8).max(1)) {
            self.buckets.remove(key);
        }
    }

    /// Clients held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// No client held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// [`Buckets`] shared by handlers, keyed by hashed client addresses.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
    secret: [u8; 32],
}

impl RateLimiter {
    /// Clients held at most.
    pub const MAX_CLIENTS: usize = 50_000;

    /// A limiter at `rate`.
    pub fn new(rate: Rate) -> RateLimiter {
        RateLimiter {
            buckets: Mutex::new(Buckets::new(rate, Self::MAX_CLIENTS)),
            secret: rand::random(),
        }
    }

    /// Takes a token for `client`; `Err(wait)` beyond the rate. A request
    /// whose client is unknown (behind a proxy that names none) is not
    /// limited here.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let Some(ip) = client else {
            return Ok(());
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()[..8]),
        }
        let digest = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        self.buckets
            .lock()
            .expect("rate limiter lock")
            .take(Instant::now(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3,
        per_minute: 60,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = Buckets::new(RATE, 100);
        let t = Instant::now();
        let key = [1; 16];
        for _ in 0..3 {
            assert!(b.take(t, key).is_ok());
        }
        let wait = b.take(t, key).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // One a second after that.
        assert!(b.take(t + Duration::from_secs(1), key).is_ok());
        assert!(b.take(t + Duration::from_secs(1), key).is_err());
        // Another client is not affected.
        assert!(b.take(t, [2; 16]).is_ok());
    }

    #[test]
    fn memory_is_bounded_and_a_busy_client_is_kept() {
        let mut b = Buckets::new(RATE, 64);
        let t = Instant::now();
        let busy = [0xff; 16];
        for _ in 0..3 {
            b.take(t, busy).unwrap();
        }
        assert!(b.take(t, busy).is_err());
        for n in 0..10_000u32 {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&n.to_be_bytes());
            let _ = b.take(t, key);
            assert!(b.len() <= 64);
        }
        assert!(b.take(t, busy).is_err(), "the busy client is still limited");
    }
}
