//! Who is calling: the therapist session from the cookie, CSRF checks on
//! every state-changing request, roles, and password hashing.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Method;
use axum_extra::extract::CookieJar;
use konsult_store::audit::Actor;
use konsult_store::therapists::{Role, Session};

use crate::error::ApiError;
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "konsult_session";
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

/// Reads the session cookie's token, if any.
pub fn session_token(parts: &Parts) -> Option<String> {
    CookieJar::from_headers(&parts.headers)
        .get(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = session_token(parts).ok_or(ApiError::Unauthorized)?;
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
                return Err(ApiError::Forbidden(
                    "missing or wrong CSRF token (x-csrf-token header)".into(),
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
            return Err(ApiError::Forbidden(
                "only a clinic admin may do this".into(),
            ));
        }
        Ok(Admin(session))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

/// A hash to verify against when the account does not exist, so that a
/// wrong e-mail and a wrong password take the same time.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password").expect("argon2 works"))
}

/// Validates a new password: at least 10 characters.
pub fn check_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 10 {
        return Err(ApiError::BadRequest(
            "the password must have at least 10 characters".into(),
        ));
    }
    if password.len() > 1024 {
        return Err(ApiError::BadRequest("the password is too long".into()));
    }
    Ok(())
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
}
