//! Shared application state handed to every handler.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use konsult_store::Store;

use crate::auth::PasswordChecks;
use crate::config::Settings;
pub use crate::login_limits::LoginLimiter;

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

/// State of the running application.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub store: Store,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Time source.
    pub clock: Clock,
    /// Login throttling per account and client.
    pub login_limiter: Arc<LoginLimiter>,
    /// Requests per client on the anonymous join-link endpoints.
    pub join_limiter: Arc<crate::rate_limit::RateLimiter>,
    /// Bounded password checks.
    pub password_checks: Arc<PasswordChecks>,
    /// The base URL that join links point to.
    pub public_url: Arc<str>,
    /// Whether cookies get the `Secure` attribute (served over TLS).
    pub secure_cookies: bool,
    /// The signaling service behind `GET /ws` (and its TURN relay).
    pub signaling: crate::signaling::Signaling,
    /// `serve --demo` on an empty installation: the demo clinic and its
    /// patient's join link, shown on the demo clinic's dashboard (held in
    /// memory only, like the console line that prints it).
    pub demo_link: Arc<std::sync::OnceLock<(konsult_domain::ClinicId, String)>>,
}
