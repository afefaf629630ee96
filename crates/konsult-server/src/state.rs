//! Shared application state handed to every handler.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use konsult_store::Store;

use crate::config::Settings;

/// Where handlers get "now" from; tests move it by hand.
#[derive(Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant that tests set.
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => *t.lock().expect("clock lock"),
        }
    }

    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, t: DateTime<Utc>) {
        if let Clock::Manual(m) = self {
            *m.lock().expect("clock lock") = t;
        }
    }
}

/// Counts failed logins per key (account, client) in a sliding window.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// Failures allowed per window before logins are refused.
    pub const MAX_FAILURES: usize = 5;
    /// The window.
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    /// Whether `key` may try to log in now.
    pub fn allowed(&self, key: &str) -> bool {
        let mut map = self.failures.lock().expect("limiter lock");
        let now = Instant::now();
        match map.get_mut(key) {
            None => true,
            Some(q) => {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > Self::WINDOW)
                {
                    q.pop_front();
                }
                q.len() < Self::MAX_FAILURES
            }
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, key: &str) {
        let mut map = self.failures.lock().expect("limiter lock");
        if map.len() > 100_000 {
            // Bound memory under a flood of distinct keys.
            map.clear();
        }
        map.entry(key.to_owned())
            .or_default()
            .push_back(Instant::now());
    }

    /// Forgets failures after a successful login.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("limiter lock").remove(key);
    }
}

/// State of the running application.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub store: Store,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Time source.
    pub clock: Clock,
    /// Login throttling.
    pub login_limiter: Arc<LoginLimiter>,
    /// The base URL that join links point to.
    pub public_url: Arc<str>,
    /// Whether cookies get the `Secure` attribute (served over TLS).
    pub secure_cookies: bool,
    /// The signaling service behind `GET /ws` (and its TURN relay).
    pub signaling: crate::signaling::Signaling,
}
