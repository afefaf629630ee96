//! The HTTP routes, with their OpenAPI document.

pub mod account;
pub mod admin;
pub mod billing;
pub mod clinical;
pub mod consultations;
pub mod fees;
pub mod join;
pub mod openapi;
pub mod patients;
pub mod privacy;

use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest request body accepted (fee tables are the biggest bodies).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Konsult API", description = "Clinic back end of Konsult: accounts, patients, courses, assessments, consultations, billing and audit."),
    tags(
        (name = "account"), (name = "admin"), (name = "patients"), (name = "clinical"),
        (name = "consultations"), (name = "billing"), (name = "fees"), (name = "join"), (name = "privacy")
    )
)]
struct ApiDoc;

/// The OpenAPI document of every endpoint, as served (see [`openapi`]).
pub fn openapi_document() -> serde_json::Value {
    let doc = api_router().split_for_parts().1;
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    openapi::complete(&mut value);
    value
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(account::router())
        .merge(admin::router())
        .merge(patients::router())
        .merge(clinical::router())
        .merge(consultations::router())
        .merge(billing::router())
        .merge(fees::router())
        .merge(join::router())
        .merge(privacy::router())
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    /// Why not ready: `database_unavailable`, `database_read_only` or
    /// `database_disk_full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    /// The reason in words (no address, user or password).
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    /// Things the operators should see to that do not stop serving, e.g.
    /// `fee_table_out_of_date`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'static str>,
    /// How many clinics lack a fee regulation step up to today.
    #[serde(skip_serializing_if = "Option::is_none")]
    fee_tables_out_of_date: Option<usize>,
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        reason: None,
        detail: None,
        warnings: Vec::new(),
        fee_tables_out_of_date: None,
    })
}

/// How long `/readyz` waits for the database.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the database answers within [`READY_WITHIN`] (and an SQLite
/// file can be written and has room); otherwise 503 with the reason. A
/// clinic whose fee table lacks a regulation step up to today is a warning
/// (fees are then unconfirmed), not a reason to stop serving.
async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    if let Err(not_ready) = state.store.readiness(READY_WITHIN).await {
        tracing::warn!(reason = not_ready.code(), detail = %not_ready, "not ready");
        let body = Health {
            status: "not_ready",
            version: env!("CARGO_PKG_VERSION"),
            reason: Some(not_ready.code()),
            detail: Some(not_ready.to_string()),
            warnings: Vec::new(),
            fee_tables_out_of_date: None,
        };
        let retry_after = crate::error::DATABASE_RETRY_AFTER.as_secs().to_string();
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, retry_after)],
            Json(body),
        )
            .into_response());
    }
    let today = konsult_domain::danish_day(state.clock.now());
    let mut out_of_date = 0;
    for clinic in state.store.clinic_ids().await? {
        let specialer = state.store.clinic(clinic).await?.specialer;
        let schedule = state.store.fee_schedule(clinic).await?;
        if schedule
            .missing_steps(today)
            .iter()
            .any(|(speciale, _)| specialer.contains(speciale))
        {
            out_of_date += 1;
        }
    }
    Ok(Json(Health {
        status: "ready",
        version: env!("CARGO_PKG_VERSION"),
        reason: None,
        detail: None,
        warnings: if out_of_date > 0 {
            vec!["fee_table_out_of_date"]
        } else {
            Vec::new()
        },
        fee_tables_out_of_date: Some(out_of_date),
    })
    .into_response())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_router().split_for_parts();
    let doc = std::sync::Arc::new(openapi_document());
    let hsts = state.settings.serves_tls();
    api.route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::metrics))
        .route(konsult_protocol::WS_PATH, get(crate::signaling::ws_handler))
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .merge(crate::web::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::security::headers(hsts, req, next)
        }))
        // Every request gets a fresh id: in its span, so each log line it
        // causes carries it, and in the response's `x-request-id`, so a
        // clinic can quote it. One a client sent is dropped (never logged).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(())
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(
            |mut request: axum::extract::Request| async move {
                request.headers_mut().remove(REQUEST_ID);
                request
            },
        ))
        .with_state(state)
}

/// The header that carries a request's id.
const REQUEST_ID: &str = "x-request-id";

/// A request's span: its id, method and route template (never the path
/// itself, which can hold a join link's token).
fn request_span(request: &axum::extract::Request) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        request_id = id,
        method = %request.method(),
        route
    )
}
