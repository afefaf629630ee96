//! Request extractors that answer bad input with problem details.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::error::Error as _;

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
            // axum's rejection wraps the error of serde_path_to_error, which
            // names the field; its inner serde_json error says what is wrong.
            let located = e
                .source()
                .and_then(|s| s.source())
                .and_then(|s| s.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>());
            let (path, message) = match located {
                Some(l) => (l.path().to_string(), l.inner().to_string()),
                None => (".".to_owned(), String::new()),
            };
            field_problem(&path, &message, format!("invalid field: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(
            "invalid_json",
            "Forespørgslen kunne ikke læses (den er ikke gyldig JSON).",
            "the body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request(
            "json_content_type",
            "Forespørgslen skal sendes som JSON (Content-Type: application/json).",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(_) => ApiError::bad_request(
            "body_unreadable",
            "Forespørgslen kunne ikke læses. Den er måske for stor.",
            "the body could not be read (too large?)",
        ),
        other => ApiError::bad_request(
            "invalid_body",
            "Forespørgslen kunne ikke læses.",
            other.body_text(),
        ),
    }
}

/// The 400 of a value that did not deserialize, told by what serde said
/// (`message`) about which field (`path`, `.` for the whole). Field names
/// stay as the API spells them, in both languages.
fn field_problem(path: &str, message: &str, en: String) -> ApiError {
    // serde's own wording: "unknown field `x`, expected …", "missing field `x`".
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = quoted("unknown field `") {
        ApiError::bad_request(
            "unknown_field",
            format!("Feltet \"{field}\" kendes ikke her."),
            en,
        )
    } else if let Some(field) = quoted("missing field `") {
        ApiError::bad_request("missing_field", format!("Feltet \"{field}\" mangler."), en)
    } else if path != "." && !path.is_empty() {
        ApiError::bad_request(
            "invalid_field",
            format!("Feltet \"{path}\" har en ugyldig værdi."),
            en,
        )
    } else {
        ApiError::bad_request(
            "invalid_field",
            "Forespørgslen har en ugyldig værdi eller form.",
            en,
        )
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
                let located = e.source().and_then(|s| s.source()).and_then(|s| {
                    s.downcast_ref::<serde_path_to_error::Error<serde::de::value::Error>>()
                });
                let (path, message) = match located {
                    Some(l) => (l.path().to_string(), l.inner().to_string()),
                    None => (".".to_owned(), String::new()),
                };
                Err(field_problem(&path, &message, e.body_text()))
            }
            Err(e) => Err(ApiError::bad_request(
                "invalid_query",
                "Adressens parametre kunne ikke læses.",
                e.body_text(),
            )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body1 {
        name: String,
    }

    async fn refusal(body: &'static str, content_type: &str) -> crate::error::Problem {
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        match ApiJson::<Body1>::from_request(req, &()).await {
            Ok(_) => panic!("{body} was accepted"),
            Err(e) => e.problem(),
        }
    }

    /// The cases are told apart by serde's own wording; this fails when a
    /// new serde says it differently.
    #[tokio::test]
    async fn json_refusals_name_the_field_in_danish() {
        let json = "application/json";
        for (body, content_type, code, danish) in [
            (
                r#"{"name": "X", "is_admin": true}"#,
                json,
                "unknown_field",
                "Feltet \"is_admin\" kendes ikke her.",
            ),
            (r#"{}"#, json, "missing_field", "Feltet \"name\" mangler."),
            (
                r#"{"name": 42}"#,
                json,
                "invalid_field",
                "Feltet \"name\" har en ugyldig værdi.",
            ),
            (
                r#"{"name": "#,
                json,
                "invalid_json",
                "Forespørgslen kunne ikke læses (den er ikke gyldig JSON).",
            ),
            (
                "name=X",
                "application/x-www-form-urlencoded",
                "json_content_type",
                "Forespørgslen skal sendes som JSON (Content-Type: application/json).",
            ),
        ] {
            let problem = refusal(body, content_type).await;
            assert_eq!(problem.kind, "urn:konsult:problem:bad_request", "{body}");
            assert_eq!(problem.errors[0].code, code, "{body}: {problem:?}");
            assert_eq!(problem.errors[0].da, danish, "{body}");
            assert_eq!(problem.detail.as_ref(), Some(&problem.errors[0].en));
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Period {
        from: chrono::NaiveDate,
    }

    #[tokio::test]
    async fn query_refusals_name_the_field_in_danish() {
        for (query, code, danish) in [
            ("", "missing_field", "Feltet \"from\" mangler."),
            (
                "from=yesterday",
                "invalid_field",
                "Feltet \"from\" har en ugyldig værdi.",
            ),
        ] {
            let req = Request::builder()
                .uri(format!("/?{query}"))
                .body(Body::empty())
                .unwrap();
            let (mut parts, _) = req.into_parts();
            let problem = match ApiQuery::<Period>::from_request_parts(&mut parts, &()).await {
                Ok(_) => panic!("{query} was accepted"),
                Err(e) => e.problem(),
            };
            assert_eq!(problem.errors[0].code, code, "{query}: {problem:?}");
            assert_eq!(problem.errors[0].da, danish, "{query}");
        }
    }
}
