//! `Idempotency-Key` on `POST /orders/{id}/pay` and `/cancel`: the same key
//! gets the same answer (see `repository::action_keys` for which answers
//! are kept, and why the others are not).

use crate::telemetry::local;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::IdempotencyKeyHeader;
use super::state::AppState;
use crate::domain::OrderId;
use crate::domain::order::now_micros;
use crate::repository::{ActionKey, KeyedAction};

/// The header that marks an answer given again for a repeated key.
pub const REPLAYED: &str = "idempotent-replayed";

/// Runs `work`, the `action` of `owner` on order `id`, under the caller's
/// `key` when there is one. The whole of it (the work, then keeping its
/// answer) runs detached and tracked: a client that hangs up, or the
/// request timeout, must stop neither the state machine between a charge
/// and its record nor the keeping of the answer, and shutdown waits for it.
pub async fn run<F>(
    state: &AppState,
    owner: String,
    key: Option<String>,
    action: KeyedAction,
    id: OrderId,
    work: F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    let repo = state.repo.clone();
    let expires_at = now_micros() + state.idempotency_key_ttl;
    let task = async move {
        let Some(key) = key else {
            return work.await;
        };
        match repo
            .action_key(&owner, &key, action, id, expires_at)
            .await?
        {
            ActionKey::Reused => Err(ApiError::invalid(
                vec!["header".into(), IdempotencyKeyHeader::NAME.into()],
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            )),
            ActionKey::Answered { status, body } => Ok(replayed(status, body)),
            ActionKey::Open => {
                let answer = work.await;
                let keep = match &answer {
                    Ok(response) => response.status() == StatusCode::OK,
                    Err(err) => err.is_final(),
                };
                if !keep {
                    return answer;
                }
                let (parts, body) = answer
                    .unwrap_or_else(IntoResponse::into_response)
                    .into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .map_err(ApiError::internal)?;
                let text = String::from_utf8_lossy(&bytes);
                if let Err(err) = repo
                    .answer_action_key(&owner, &key, parts.status.as_u16(), &text)
                    .await
                {
                    // The answer stands; a repeat of the key does the work
                    // again, which is safe, and may be answered differently.
                    tracing::warn!(order_id = %id, action = action.as_str(), error = %err,
                        "the answer could not be kept for its Idempotency-Key");
                }
                Ok(Response::from_parts(parts, Body::from(bytes)))
            }
        }
    };
    state
        .tasks
        .spawn(local::carried(task))
        .await
        .map_err(ApiError::internal)?
}

/// The answer kept for a key, given again.
fn replayed(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static(REPLAYED),
                HeaderValue::from_static("true"),
            ),
        ],
        body,
    )
        .into_response()
}
