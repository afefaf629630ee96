//! How many login attempts an account and a client get (security review,
//! issue 10 item 6): back-off, not lock-out.
//!
//! - **Per account**, failures from every client slow the next attempts
//!   down: from the fourth recent failure on, each attempt waits
//!   250 ms × 2ⁿ, at most [`LoginLimits::MAX_ACCOUNT_DELAY`]. An attempt is
//!   never refused for the account's sake, so an attacker cannot lock the
//!   owner out; the owner is at most a few seconds slower.
//! - **Per client**, [`LoginLimits::CLIENT_BUDGET`] recent failures are
//!   allowed; beyond them the client is refused (429 with `Retry-After`)
//!   until its failures have leaked away, one per
//!   [`LoginLimits::LEAK`].
//!
//! An attempt is reserved by [`LoginLimits::begin`] before the password is
//! hashed and counts at once, so concurrent guesses cannot slip past the
//! count. Failures leak away linearly rather than being cleared by a timer.
//!
//! Memory is bounded: each table holds at most
//! [`LoginLimits::MAX_ENTRIES`] keys; when full, entries whose failures
//! have leaked away go first, then those whose failures would leak away
//! soonest, one eighth at a time. Nothing is forgotten all at once, and a
//! hammered account or client outlives a flood of one-off keys.
//!
//! Keys are keyed hashes (HMAC-SHA-256 with a key made at start, never
//! stored) of the lower-cased e-mail and of the client's address (an IPv6
//! client by its /64), so neither an address nor an e-mail is kept.
//!
//! **In a cluster** the limits hold for all nodes together, or an attacker
//! behind a load balancer would get one budget per node: each node tells
//! the others of every failure and success (a `LoginOutcome` notice over
//! NATS, carrying only the two keys), and counts theirs as its own
//! ([`LoginLimiter::heard`]). The nodes derive the hashing key from the
//! data key they share, in memory, so their keys agree.
//!
//! [`LoginLimits`] is the core: no clock, no lock; time comes in as
//! `now`. [`LoginLimiter`] puts it behind a mutex for the handlers, and
//! [`Attempt`] releases a reservation that ends without an outcome.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::cluster::{Cluster, Notice};

/// A table key: a truncated keyed hash.
pub type Key = [u8; 16];

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Recent failures, leaking away one per [`LoginLimits::LEAK`].
    failures: f64,
    /// When `failures` was last brought up to date.
    at: Instant,
    /// Attempts reserved and not yet finished.
    in_flight: u32,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0.0,
            at: now,
            in_flight: 0,
        }
    }

    fn leak(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        self.failures =
            (self.failures - elapsed.as_secs_f64() / LoginLimits::LEAK.as_secs_f64()).max(0.0);
        self.at = now;
    }

    fn pressure(&self) -> f64 {
        self.failures + f64::from(self.in_flight)
    }
}

/// A table of entries with a bounded number of keys.
#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
}

impl Table {
    fn entry(&mut self, key: Key, now: Instant) -> &mut Entry {
        if !self.entries.contains_key(&key) && self.entries.len() >= LoginLimits::MAX_ENTRIES {
            self.make_room(now);
        }
        let entry = self.entries.entry(key).or_insert_with(|| Entry::new(now));
        entry.leak(now);
        entry
    }

    /// Drops the entries whose failures have leaked away; if that is not
    /// enough, the eighth whose failures would leak away soonest.
    /// Reserved entries stay.
    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, e| {
            let mut e = *e;
            e.leak(now);
            e.in_flight > 0 || e.failures > 0.0
        });
        if self.entries.len() < LoginLimits::MAX_ENTRIES {
            return;
        }
        // The entries that would be forgotten soonest anyway go first.
        let mut ages: Vec<(Instant, Key)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.in_flight == 0)
            .map(|(k, e)| (e.at + LoginLimits::LEAK.mul_f64(e.failures), *k))
            .collect();
        let evict = (LoginLimits::MAX_ENTRIES / 8).max(1).min(ages.len());
        if evict == 0 {
            return;
        }
        ages.select_nth_unstable(evict - 1);
        for (_, key) in &ages[..evict] {
            self.entries.remove(key);
        }
    }

    fn release(&mut self, key: &Key) {
        if let Some(e) = self.entries.get_mut(key) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The attempt may go ahead after `delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Go {
    /// How long to wait before checking the password.
    pub delay: Duration,
}

/// The client is refused until `retry_after` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When to try again.
    pub retry_after: Duration,
}

/// How a reserved attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Wrong e-mail or password: counts for the account and the client.
    Failed,
    /// Logged in: the account's failures are forgotten.
    Succeeded,
    /// Never checked (busy, an error): released without counting.
    Abandoned,
}

/// The limiter's core. Call [`LoginLimits::begin`] before checking a
/// password, then [`LoginLimits::finish`] exactly once with the same keys.
#[derive(Debug, Default)]
pub struct LoginLimits {
    accounts: Table,
    clients: Table,
}

impl LoginLimits {
    /// Recent failures a client may have before it is refused.
    pub const CLIENT_BUDGET: f64 = 10.0;
    /// One failure leaks away per this long.
    pub const LEAK: Duration = Duration::from_secs(60);
    /// Failures of an account before its attempts are slowed down.
    pub const ACCOUNT_FREE: u32 = 3;
    /// The first account delay, doubled per further failure.
    pub const ACCOUNT_BASE_DELAY: Duration = Duration::from_millis(250);
    /// The longest an attempt on a hammered account waits.
    pub const MAX_ACCOUNT_DELAY: Duration = Duration::from_secs(4);
    /// Keys per table (accounts, clients).
    pub const MAX_ENTRIES: usize = 50_000;

    /// Reserves an attempt on `account` from `client` (none when the
    /// client cannot be told apart), or refuses the client.
    pub fn begin(
        &mut self,
        now: Instant,
        account: Key,
        client: Option<Key>,
    ) -> Result<Go, Refused> {
        if let Some(client) = client {
            let c = self.clients.entry(client, now);
            let over = c.pressure() + 1.0 - Self::CLIENT_BUDGET;
            if over > 0.0 {
                let wait = Self::LEAK.mul_f64(over.ceil());
                return Err(Refused {
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
            c.in_flight += 1;
        }
        let a = self.accounts.entry(account, now);
        // Counted before this attempt is added: the n-th concurrent
        // attempt waits as if the n−1 before it had failed.
        let delay = Self::account_delay(a.pressure());
        a.in_flight += 1;
        Ok(Go { delay })
    }

    /// The delay of an attempt on an account with `pressure` recent
    /// failures and attempts in flight.
    fn account_delay(pressure: f64) -> Duration {
        let n = pressure.floor() as u32;
        if n < Self::ACCOUNT_FREE {
            return Duration::ZERO;
        }
        let doublings = (n - Self::ACCOUNT_FREE).min(16);
        Self::ACCOUNT_BASE_DELAY
            .saturating_mul(1 << doublings)
            .min(Self::MAX_ACCOUNT_DELAY)
    }

    /// Ends an attempt reserved by [`LoginLimits::begin`].
    pub fn finish(&mut self, now: Instant, account: Key, client: Option<Key>, outcome: Outcome) {
        self.accounts.release(&account);
        if let Some(client) = client {
            self.clients.release(&client);
        }
        self.count(now, account, client, outcome);
    }

    /// Counts the outcome of an attempt (made here or on another node of
    /// the cluster).
    pub fn count(&mut self, now: Instant, account: Key, client: Option<Key>, outcome: Outcome) {
        match outcome {
            Outcome::Failed => {
                self.accounts.entry(account, now).failures += 1.0;
                if let Some(client) = client {
                    self.clients.entry(client, now).failures += 1.0;
                }
            }
            Outcome::Succeeded => {
                self.accounts.entry(account, now).failures = 0.0;
            }
            Outcome::Abandoned => {}
        }
    }

    /// Keys held (accounts, clients).
    pub fn len(&self) -> (usize, usize) {
        (self.accounts.len(), self.clients.len())
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

/// [`LoginLimits`] shared by the handlers, with the hashing of keys.
pub struct LoginLimiter {
    limits: Mutex<LoginLimits>,
    secret: [u8; 32],
    /// The other nodes, told of each outcome.
    cluster: Option<Cluster>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self {
            limits: Mutex::default(),
            secret: rand::random(),
            cluster: None,
        }
    }
}

impl LoginLimiter {
    /// A limiter that holds for the whole `cluster`: its keys are hashed
    /// with `secret` (the same on every node) and its outcomes told.
    pub fn for_cluster(secret: [u8; 32], cluster: Cluster) -> Self {
        Self {
            limits: Mutex::default(),
            secret,
            cluster: Some(cluster),
        }
    }

    /// Counts an outcome another node told of (its keys in hex); malformed
    /// keys are ignored.
    pub fn heard(&self, account: &str, client: Option<&str>, failed: bool) {
        fn parse(hex_key: &str) -> Option<Key> {
            hex::decode(hex_key).ok()?.try_into().ok()
        }
        let Some(account) = parse(account) else {
            return;
        };
        let client = match client {
            Some(c) => match parse(c) {
                Some(key) => Some(key),
                None => return,
            },
            None => None,
        };
        let outcome = if failed {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        };
        self.limits
            .lock()
            .expect("limiter lock")
            .count(Instant::now(), account, client, outcome);
    }

    /// Keys held (accounts, clients).
    pub fn len(&self) -> (usize, usize) {
        self.limits.lock().expect("limiter lock").len()
    }

    /// Tells the other nodes of an outcome counted here.
    fn tell(&self, account: Key, client: Option<Key>, outcome: Outcome) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let failed = match outcome {
            Outcome::Failed => true,
            Outcome::Succeeded => false,
            Outcome::Abandoned => return,
        };
        let notice = Notice::LoginOutcome {
            account: hex::encode(account),
            client: client.map(hex::encode),
            failed,
        };
        tokio::spawn(async move { cluster.tell(notice).await });
    }

    fn key(&self, kind: &[u8], value: &[u8]) -> Key {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(kind);
        mac.update(&[0]);
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// Reserves an attempt on the account `email` from `client`; see
    /// [`LoginLimits::begin`].
    pub fn begin(
        self: &Arc<Self>,
        email: &str,
        client: Option<IpAddr>,
    ) -> Result<Attempt, Refused> {
        let account = self.key(b"account", email.trim().to_lowercase().as_bytes());
        let client = client.map(|ip| match ip {
            IpAddr::V4(v4) => self.key(b"client", &v4.octets()),
            // One IPv6 client usually holds a whole /64.
            IpAddr::V6(v6) => self.key(b"client", &v6.octets()[..8]),
        });
        let go =
            self.limits
                .lock()
                .expect("limiter lock")
                .begin(Instant::now(), account, client)?;
        Ok(Attempt {
            limiter: self.clone(),
            account,
            client,
            delay: go.delay,
            finished: false,
        })
    }
}

/// A reserved login attempt; dropped without an outcome it is released
/// uncounted.
pub struct Attempt {
    limiter: Arc<LoginLimiter>,
    account: Key,
    client: Option<Key>,
    delay: Duration,
    finished: bool,
}

impl Attempt {
    /// How long to wait before checking the password.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Ends the attempt.
    pub fn finish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Outcome) {
        if !self.finished {
            self.finished = true;
            self.limiter.limits.lock().expect("limiter lock").finish(
                Instant::now(),
                self.account,
                self.client,
                outcome,
            );
            self.limiter.tell(self.account, self.client, outcome);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.end(Outcome::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Key {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    }

    #[test]
    fn a_client_is_refused_beyond_its_budget_and_let_back_as_failures_leak() {
        let mut limits = LoginLimits::default();
        let t0 = Instant::now();
        let client = Some(key(1));
        for n in 0..10 {
            assert!(
                limits.begin(t0, key(100 + n), client).is_ok(),
                "attempt {n}"
            );
            limits.finish(t0, key(100 + n), client, Outcome::Failed);
        }
        let refused = limits.begin(t0, key(999), client).unwrap_err();
        assert_eq!(refused.retry_after, LoginLimits::LEAK);
        // Another client is not affected.
        assert!(limits.begin(t0, key(999), Some(key(2))).is_ok());
        // One failure has leaked away a minute later.
        assert!(limits
            .begin(t0 + LoginLimits::LEAK, key(999), client)
            .is_ok());
    }

    #[test]
    fn concurrent_attempts_count_before_they_finish() {
        let mut limits = LoginLimits::default();
        let t0 = Instant::now();
        let admitted = (0..20)
            .filter(|n| limits.begin(t0, key(100 + n), Some(key(1))).is_ok())
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_hammered_account_slows_down_but_never_refuses() {
        let mut limits = LoginLimits::default();
        let t0 = Instant::now();
        let owner = key(7);
        let mut delays = Vec::new();
        for attacker in 0..40 {
            let go = limits.begin(t0, owner, Some(key(1000 + attacker))).unwrap();
            delays.push(go.delay);
            limits.finish(t0, owner, Some(key(1000 + attacker)), Outcome::Failed);
        }
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3], Duration::from_millis(250));
        assert_eq!(delays[4], Duration::from_millis(500));
        assert_eq!(*delays.last().unwrap(), LoginLimits::MAX_ACCOUNT_DELAY);
        // The owner from their own client: delayed, not refused.
        let go = limits.begin(t0, owner, Some(key(1))).unwrap();
        assert_eq!(go.delay, LoginLimits::MAX_ACCOUNT_DELAY);
        limits.finish(t0, owner, Some(key(1)), Outcome::Succeeded);
        assert_eq!(
            limits.begin(t0, owner, Some(key(1))).unwrap().delay,
            Duration::ZERO
        );
    }

    #[test]
    fn abandoned_attempts_do_not_count() {
        let mut limits = LoginLimits::default();
        let t0 = Instant::now();
        for _ in 0..50 {
            limits.begin(t0, key(5), Some(key(1))).unwrap();
            limits.finish(t0, key(5), Some(key(1)), Outcome::Abandoned);
        }
        assert_eq!(
            limits.begin(t0, key(5), Some(key(1))).unwrap().delay,
            Duration::ZERO
        );
    }

    #[test]
    fn memory_is_bounded_and_the_newest_failures_are_kept() {
        let mut limits = LoginLimits::default();
        let t0 = Instant::now();
        let hammered = key(u32::MAX);
        let attacker = key(u32::MAX - 1);
        // The attacker's failures, then a flood of distinct keys from many
        // clients, with the attacker hammering on as the flood goes on.
        let n = u32::try_from(LoginLimits::MAX_ENTRIES).unwrap() * 3;
        for i in 0..n {
            let now = t0 + Duration::from_millis(u64::from(i));
            limits.begin(now, key(i), Some(key(i))).unwrap();
            limits.finish(now, key(i), Some(key(i)), Outcome::Failed);
            if i % 1000 == 0 {
                if let Ok(_go) = limits.begin(now, hammered, Some(attacker)) {
                    limits.finish(now, hammered, Some(attacker), Outcome::Failed);
                }
            }
            let (accounts, clients) = limits.len();
            assert!(accounts <= LoginLimits::MAX_ENTRIES && clients <= LoginLimits::MAX_ENTRIES);
        }
        // Neither table was emptied, and the recent lock survived.
        let (accounts, clients) = limits.len();
        assert!(accounts > LoginLimits::MAX_ENTRIES / 2, "{accounts}");
        assert!(clients > LoginLimits::MAX_ENTRIES / 2, "{clients}");
        let now = t0 + Duration::from_millis(u64::from(n));
        assert!(limits.begin(now, key(0), Some(attacker)).is_err());
        assert_eq!(
            limits.begin(now, hammered, None).unwrap().delay,
            LoginLimits::MAX_ACCOUNT_DELAY
        );
    }
}
