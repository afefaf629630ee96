//! The HTTP routes, with their OpenAPI document.

pub mod account;
pub mod admin;
pub mod billing;
pub mod clinical;
pub mod consultations;
pub mod join;
pub mod patients;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
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
        (name = "consultations"), (name = "billing"), (name = "join")
    )
)]
struct ApiDoc;

/// The OpenAPI document of every endpoint.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(account::router())
        .merge(admin::router())
        .merge(patients::router())
        .merge(clinical::router())
        .merge(consultations::router())
        .merge(billing::router())
        .merge(join::router())
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(Json(Health {
        status: "ready",
        version: env!("CARGO_PKG_VERSION"),
    }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_router().split_for_parts();
    let doc = std::sync::Arc::new(doc);
    let hsts = state.settings.serves_tls();
    api.route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
        .with_state(state)
}
