//! Request extractors that answer bad input with problem details.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Json<T>` whose rejections (malformed JSON, wrong types, unknown fields,
/// wrong content type, oversized body) become a 400 problem.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            ApiError::BadRequest(format!("invalid field: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::BadRequest("the body is not valid JSON".into())
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::BadRequest("expected Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(_) => {
            ApiError::BadRequest("the body could not be read (too large?)".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// `Query<T>` with problem-details rejections.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::BadRequest(e.body_text()))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// A path id that must be a UUID; anything else is a 404 (an unknown id).
pub struct IdPath(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("resource"))?;
        raw.parse()
            .map(IdPath)
            .map_err(|_| ApiError::NotFound("resource"))
    }
}
