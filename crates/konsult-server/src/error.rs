//! The one HTTP error type: every failure is answered with RFC 9457
//! problem details (`application/problem+json`). Internal errors are logged
//! with their cause chain and answered with a generic message.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use konsult_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem details body (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:konsult:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Each failed criterion or field, with a stable code and messages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
}

/// One named reason inside a problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemItem {
    /// Stable code, e.g. `no_in_clinic_visit_before`.
    pub code: String,
    /// Danish explanation.
    pub da: String,
    /// English explanation.
    pub en: String,
}

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a value is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401: not logged in, or the session expired.
    #[error("not logged in")]
    Unauthorized,
    /// 403: logged in but not allowed (role, CSRF).
    #[error("{0}")]
    Forbidden(String),
    /// 404: not found, or another clinic's (never told apart).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: conflicts with the current state; nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// 422: understood but refused by a rule, with every reason named.
    #[error("{title}")]
    Rule {
        /// Stable problem code.
        code: &'static str,
        /// Summary.
        title: String,
        /// Each reason.
        items: Vec<ProblemItem>,
    },
    /// 429: too many attempts.
    #[error("too many attempts, try again later")]
    TooManyRequests,
    /// 500: our fault; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Rule { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The problem details body of this error.
    pub fn problem(&self) -> Problem {
        let (status, code) = self.parts();
        let (title, detail, errors) = match self {
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                ("Internal error".to_owned(), None, Vec::new())
            }
            ApiError::Rule { title, items, .. } => (title.clone(), None, items.clone()),
            other => (
                status.canonical_reason().unwrap_or("Error").to_owned(),
                Some(other.to_string()),
                Vec::new(),
            ),
        };
        Problem {
            kind: format!("urn:konsult:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&problem).unwrap_or_default(),
        )
            .into_response()
    }
}

/// Result alias of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
