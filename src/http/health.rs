//! Operational endpoints, kept out of the public ingress and the request log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::detail_response;
use super::state::AppState;

pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .route(METRICS_PATH, get(super::metrics::expose))
}

/// Liveness: the process serves. Never touches the database, so an outage
/// does not restart every pod.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the schema is at this build's version and we are not draining.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check(&state.repo).await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(reason) => detail_response(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}
