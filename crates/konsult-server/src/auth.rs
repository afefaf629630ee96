//! Who is calling: the therapist session from the cookie, CSRF checks on
//! every state-changing request, roles, and password hashing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum_extra::extract::CookieJar;
use konsult_store::audit::Actor;
use konsult_store::therapists::{Role, Session};

use crate::error::ApiError;
use crate::state::AppState;

/// Name of the session cookie over plain HTTP (local use).
pub const SESSION_COOKIE: &str = "konsult_session";
/// Name of the session cookie when cookies are Secure (served over TLS, or
/// behind a TLS-terminating proxy). The `__Host-` prefix makes the browser
/// accept it only with `Secure`, `Path=/` and no `Domain`, so a sibling
/// host or a plain-HTTP page cannot set or shadow it (RFC 6265bis §4.1.3.2).
pub const SECURE_SESSION_COOKIE: &str = "__Host-konsult_session";
/// Header that state-changing requests must carry with the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A logged-in therapist (any role). Extracting it on a POST, PUT, PATCH
/// or DELETE also checks the CSRF token.
#[derive(Debug, Clone)]
pub struct Auth(pub Session);

impl Auth {
    /// The audit actor of this session.
    pub fn actor(&self) -> Actor {
        Actor::Therapist(self.0.therapist)
    }
}

/// A logged-in clinic admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Session);

impl Admin {
    /// The audit actor of this session.
    pub fn actor(&self) -> Actor {
        Actor::Therapist(self.0.therapist)
    }
}

/// A logged-in member of the clinical staff (a therapist or an admin, not
/// a secretary): needed for journal notes, assessments, safety
/// confirmations, completing consultations and patient exports.
#[derive(Debug, Clone)]
pub struct Clinician(pub Session);

impl Clinician {
    /// The audit actor of this session.
    pub fn actor(&self) -> Actor {
        Actor::Therapist(self.0.therapist)
    }
}

impl FromRequestParts<AppState> for Clinician {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(session) = Auth::from_request_parts(parts, state).await?;
        if !session.role.is_clinical() {
            return Err(ApiError::forbidden(
                "clinicians_only",
                "Det kan kun klinikkens behandlere gøre, ikke en sekretær.",
                "only the clinic's clinicians may do this, not a secretary",
            ));
        }
        Ok(Clinician(session))
    }
}

/// The session cookie's name: [`SECURE_SESSION_COOKIE`] when cookies are
/// Secure, else [`SESSION_COOKIE`]. Only that name is read.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// Reads the session cookie's token from request headers, if any.
pub fn session_token_in(headers: &HeaderMap, state: &AppState) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(session_cookie_name(state.secure_cookies))
        .map(|c| c.value().to_owned())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = session_token_in(&parts.headers, state).ok_or(ApiError::Unauthorized)?;
        let session = state
            .store
            .session(&token, state.clock.now())
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), session.csrf_token.as_bytes()) {
                return Err(ApiError::forbidden(
                    "csrf",
                    "Siden er for gammel til at gemme ændringer. Genindlæs siden, og prøv igen.",
                    "missing or wrong CSRF token (x-csrf-token header)",
                ));
            }
        }
        Ok(Auth(session))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(session) = Auth::from_request_parts(parts, state).await?;
        if session.role != Role::Admin {
            return Err(ApiError::forbidden(
                "admin_only",
                "Det kan kun klinikkens administrator gøre.",
                "only a clinic admin may do this",
            ));
        }
        Ok(Admin(session))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password with argon2id (the crate's default parameters, OWASP's
/// recommendation for argon2id).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password failed: {e}"))
}

/// Checks a password against its stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Password checks for logins, bounded so that a flood of failed logins
/// can neither exhaust memory nor starve a correct one (security review,
/// issue 10 item 1).
///
/// Each argon2id check needs 19 MiB. At most `concurrency` run at once
/// (one per core), each on a blocking thread with a memory block taken
/// from a pool and put back: the process never holds more than
/// `concurrency` such blocks, and they are reused rather than freed into
/// the allocator (whose per-thread arenas kept gigabytes after a flood). A
/// check that waits longer than `queue_timeout` for its turn is refused
/// with [`Busy`], so the queue stays short and a legitimate login behind
/// it stays quick.
pub struct PasswordChecks {
    permits: Arc<tokio::sync::Semaphore>,
    concurrency: u32,
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    queue_timeout: Duration,
}

/// The password checks are all busy; try again after `retry_after`.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    /// When to try again.
    pub retry_after: Duration,
}

impl PasswordChecks {
    /// How long a login waits for a free check before it is refused.
    pub const QUEUE_TIMEOUT: Duration = Duration::from_millis(1500);

    /// Checks for this machine: one at a time per core, up to four.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores.clamp(1, 4), Self::QUEUE_TIMEOUT)
    }

    /// At most `concurrency` checks at once; waiting at most `queue_timeout`.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Self {
        let concurrency = concurrency.clamp(1, 1024);
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            concurrency: u32::try_from(concurrency).expect("at most 1024"),
            memory: Arc::default(),
            queue_timeout,
        }
    }

    /// Takes every check until the returned permit is dropped, as a rush of
    /// logins would: logins meanwhile wait their queue time, then get
    /// [`Busy`]. For tests of that path, without burning the CPU.
    #[doc(hidden)]
    pub async fn occupy_all(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_many_owned(self.concurrency)
            .await
            .expect("the semaphore is never closed")
    }

    /// Whether `password` matches the PHC string `hash`.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, Busy> {
        let busy = Busy {
            retry_after: Duration::from_secs(1),
        };
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy)?
            .map_err(|_| busy)?;
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let mut blocks = memory
                .lock()
                .expect("memory pool")
                .pop()
                .unwrap_or_default();
            let ok = verify_with_memory(&password, &hash, &mut blocks);
            memory.lock().expect("memory pool").push(blocks);
            drop(permit);
            ok
        })
        .await
        .map_err(|_| busy)
    }
}

/// [`verify_password`] in `blocks` (grown to the hash's memory cost when
/// that is the default's or less; a larger one gets memory of its own).
fn verify_with_memory(password: &str, hash: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let needed = params.block_count();
    let mut own = Vec::new();
    let memory = if needed <= Params::default().block_count() {
        blocks.resize(needed.max(blocks.len()), Block::default());
        &mut blocks[..needed]
    } else {
        own.resize(needed, Block::default());
        &mut own[..]
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
        .is_ok()
        && constant_time_eq(&out, expected.as_bytes())
}

/// A hash to verify against when the account does not exist, so that a
/// wrong e-mail and a wrong password take the same time.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password").expect("argon2 works"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn checks_in_pooled_memory_agree_with_argon2() {
        let h = hash_password("correct horse battery").unwrap();
        let mut blocks = Vec::new();
        assert!(verify_with_memory("correct horse battery", &h, &mut blocks));
        assert!(!verify_with_memory("wrong horse battery", &h, &mut blocks));
        assert!(!verify_with_memory("x", "not a hash", &mut blocks));
        assert_eq!(blocks.len(), Params::default().block_count());
        // Another parameter set in the same (larger) memory.
        let params = Params::new(8 * 1024, 3, 1, None).unwrap();
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(
                b"pw 12345678",
                &SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap(),
            )
            .unwrap()
            .to_string();
        assert!(verify_with_memory("pw 12345678", &other, &mut blocks));
        assert!(!verify_with_memory("pw 12345679", &other, &mut blocks));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_waited_for() {
        let checks = Arc::new(PasswordChecks::new(1, Duration::from_millis(1)));
        let h = hash_password("correct horse battery").unwrap();
        let runs = (0..4).map(|_| {
            let (checks, h) = (checks.clone(), h.clone());
            tokio::spawn(async move { checks.verify("correct horse battery".into(), h).await })
        });
        let results: Vec<_> = futures_util::future::join_all(runs).await;
        let refused = results
            .iter()
            .filter(|r| r.as_ref().unwrap().is_err())
            .count();
        assert!(refused >= 1, "nobody was refused");
        assert!(results.iter().any(|r| matches!(r, Ok(Ok(true)))));
    }
}
