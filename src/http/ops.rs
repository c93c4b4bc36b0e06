//! The operator's listener (`OPS_ADDR`): its own router on its own port,
//! never routed by the Service or the ingress (reached with `kubectl
//! port-forward`). It calls the lifecycle like the public routes do:
//!
//! - `GET /ops/stuck`: every item that is open or needs attention;
//! - `POST /ops/orders/{id}/retry`: tries the order's open items now;
//! - `POST /ops/orders/{id}/resolve` with `{"resolution": ..., "note": ...}`:
//!   ends a `needs_attention` item; the end is stored with its time and
//!   logged (target `audit`).
//!
//! Every error is `{"detail": ...}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::error::{ApiError, detail_response};
use super::state::AppState;
use crate::lifecycle::{Resolution, StuckItem};

/// The longest note an operator may store with a resolution.
const NOTE_CHARS: usize = 2_000;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ops/stuck", get(stuck))
        .route("/ops/orders/{id}/retry", post(retry))
        .route("/ops/orders/{id}/resolve", post(resolve))
        .fallback(super::fallback::not_found)
        .with_state(state)
        .layer(axum::middleware::map_response(
            |response: Response| async move { super::fallback::as_json_error(response) },
        ))
}

fn item_json(item: &StuckItem) -> Value {
    json!({
        "order_id": item.order_id,
        "kind": item.kind,
        "state": if item.needs_attention { "needs_attention" } else { item.state.as_str() },
        "item_state": item.state,
        "attempts": item.attempts,
        "age_seconds": item.age_secs,
        "last_error": item.last_error,
        "next_try": item.next_try.and_then(|at| at.format(&Rfc3339).ok()),
    })
}

async fn stuck(State(state): State<AppState>) -> Response {
    match state.lifecycle.stuck().await {
        Ok(items) => {
            let items: Vec<Value> = items.iter().map(item_json).collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// Why a request to this listener is refused before the lifecycle sees it:
/// always a 422 with this detail.
struct Unprocessable(String);

impl IntoResponse for Unprocessable {
    fn into_response(self) -> Response {
        detail_response(StatusCode::UNPROCESSABLE_ENTITY, self.0)
    }
}

/// An order id in the path, or why it is not one.
fn order_id(text: &str) -> Result<Uuid, Unprocessable> {
    text.parse()
        .map_err(|_| Unprocessable(format!("{text:?} is not an order id (a UUID)")))
}

async fn retry(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match order_id(&id) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    match state.lifecycle.retry_now(id).await {
        Ok(items) => {
            let items: Vec<Value> = items.iter().map(item_json).collect();
            axum::Json(json!({ "order_id": id, "still_open": items })).into_response()
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveRequest {
    resolution: String,
    note: String,
}

/// The resolution and note of a resolve request, or a 422 saying why not.
fn resolve_request(body: &[u8]) -> Result<(Resolution, String), Unprocessable> {
    let unprocessable = Unprocessable;
    let request: ResolveRequest = serde_json::from_slice(body).map_err(|err| {
        unprocessable(format!(
            "the body must be {{\"resolution\": ..., \"note\": ...}}: {err}"
        ))
    })?;
    let Some(resolution) = Resolution::parse(&request.resolution) else {
        let known: Vec<&str> = Resolution::ALL.iter().map(|r| r.as_str()).collect();
        return Err(unprocessable(format!(
            "resolution must be one of {}, not {:?}",
            known.join(", "),
            request.resolution
        )));
    };
    let note = request.note.trim();
    if note.is_empty() {
        return Err(unprocessable(
            "note must say what was done (it is kept as the audit trail)".into(),
        ));
    }
    if note.chars().count() > NOTE_CHARS {
        return Err(unprocessable(format!(
            "note must be at most {NOTE_CHARS} characters"
        )));
    }
    Ok((resolution, note.to_owned()))
}

async fn resolve(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let id = match order_id(&id) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let (resolution, note) = match resolve_request(&body) {
        Ok(request) => request,
        Err(refused) => return refused.into_response(),
    };
    match state.lifecycle.resolve(id, resolution, &note).await {
        Ok(kind) => axum::Json(json!({
            "order_id": id,
            "kind": kind,
            "resolution": resolution.as_str(),
            "note": note,
        }))
        .into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}
