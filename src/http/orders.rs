//! `/orders`: the seven operations of the public contract.

use crate::telemetry::local;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::cursor;
use super::dto::{CreateOrder, OrderResponse, OrdersPage};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdempotencyKeyHeader, ListQuery, OrderBody, OrderIdPath};
use super::identity::Caller;
use super::keyed;
use super::order_json::{OrderJson, OrdersJson};
use super::state::AppState;
use crate::domain::{NewOrder, Order};
use crate::lifecycle::Paid;
use crate::repository::{
    IdempotencyKey, KeyedAction, KeyedCreate, ListFilter, PageRequest, RepositoryError,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", get(list_orders).post(create_order))
        .route(
            "/orders/{order_id}",
            get(get_order).put(replace_order).delete(delete_order),
        )
        .route("/orders/{order_id}/pay", post(pay_order))
        .route("/orders/{order_id}/cancel", post(cancel_order))
}

/// The `next` link repeats the filter and page size with the new cursor.
fn next_link(query: &ListQuery, next: &crate::repository::Cursor) -> String {
    let mut params = Vec::new();
    match query.filter {
        ListFilter::All => {}
        ListFilter::OnlyCancelled => params.push("cancelled=true".to_owned()),
        ListFilter::ExceptCancelled => params.push("cancelled=false".to_owned()),
    }
    params.push(format!("limit={}", query.limit));
    params.push(format!("cursor={}", cursor::encode(next)));
    format!("</orders?{}>; rel=\"next\"", params.join("&"))
}

/// List the caller's orders, newest first.
///
/// Pages hold `limit` orders (default 50, at most 200: larger values are
/// served 200). When more orders follow, the response carries a
/// `Link: </orders?...&cursor=...>; rel="next"` header; following it walks
/// every order exactly once, even while new orders are placed.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    operation_id = "list_orders",
    security(("bearer" = [])),
    params(
        ("cancelled" = Option<bool>, Query, description = "`true`: only cancelled orders; `false`: all but cancelled ones; absent: all."),
        ("limit" = Option<i64>, Query, minimum = 1, description = "Page size: default 50; values above 200 are served 200."),
        ("cursor" = Option<String>, Query, pattern = "^[0-9a-fA-F]{48}$", description = "Opaque position, copied from the `next` link of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of orders", body = OrdersPage,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when more orders follow"))),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 422, description = "Invalid query parameter", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    query: ListQuery,
) -> Result<Response, ApiError> {
    let page = state
        .repo
        .list(
            caller.id(),
            PageRequest {
                filter: query.filter,
                limit: query.limit,
                after: query.after,
            },
        )
        .await?;
    let mut response = OrdersJson(page.orders).into_response();
    if let Some(next) = page.next
        && let Ok(link) = HeaderValue::from_str(&next_link(&query, &next))
    {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// Place an order.
///
/// With an `Idempotency-Key` header, a repeat of the same request by the
/// same user within the key's lifetime (24 hours by default) returns the
/// order the first request created, with `Idempotent-Replayed: true`,
/// instead of placing a second one; the same key with a different order
/// answers 422.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    operation_id = "create_order",
    security(("bearer" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
            description = "Makes retries safe: a repeat with the same key returns the first order."),
    ),
    request_body = CreateOrder,
    responses(
        (status = 201, description = "The order was placed (or, for a repeated key, had been)", body = OrderResponse,
            headers(
                ("Location" = String, description = "`/orders/{order_id}`"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers a repeated key"),
            )),
        (status = 409, description = "The order placed with this key was deleted since", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 422, description = "Invalid order or key, or the key was used for a different order", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn create_order(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    OrderBody(order): OrderBody,
) -> Result<Response, ApiError> {
    let Some(key) = key else {
        let order = state.repo.create(caller.id(), &order).await?;
        return created(order, false);
    };
    let request = canonical_request(&order);
    let keyed = IdempotencyKey {
        key: &key,
        request: &request,
        expires_at: crate::domain::order::now_micros() + state.idempotency_key_ttl,
    };
    match state
        .repo
        .create_with_key(caller.id(), &order, keyed)
        .await?
    {
        KeyedCreate::Created(order) => created(order, false),
        KeyedCreate::Replayed(id) => match state.repo.get(caller.id(), id).await {
            Ok(order) => created(order, true),
            Err(RepositoryError::NotFound) => Err(ApiError::KeyedOrderDeleted),
            Err(other) => Err(other.into()),
        },
        KeyedCreate::KeyReused => Err(ApiError::invalid(
            vec!["header".into(), IdempotencyKeyHeader::NAME.into()],
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different order",
        )),
    }
}

/// The validated order as canonical JSON (defaults applied), so that
/// `{"quantity": 1}` and no quantity count as the same request.
fn canonical_request(order: &NewOrder) -> String {
    let items: Vec<serde_json::Value> = order
        .items
        .as_slice()
        .iter()
        .map(|item| {
            serde_json::json!([
                item.product.as_str(),
                item.size.as_str(),
                item.quantity.get()
            ])
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn created(order: Order, replayed: bool) -> Result<Response, ApiError> {
    tracing::Span::current().record("order.id", tracing::field::display(order.id));
    let location =
        HeaderValue::from_str(&format!("/orders/{}", order.id)).map_err(ApiError::internal)?;
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        OrderJson(order),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(keyed::REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Get one order.
#[utoipa::path(
    get,
    path = "/orders/{order_id}",
    tag = "orders",
    operation_id = "get_order",
    security(("bearer" = [])),
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
) -> Result<OrderJson, ApiError> {
    let order = state.repo.get(caller.id(), id).await?;
    Ok(OrderJson(order))
}

/// Replace the items of an order that is still `created`.
#[utoipa::path(
    put,
    path = "/orders/{order_id}",
    tag = "orders",
    operation_id = "replace_order",
    security(("bearer" = [])),
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    request_body = CreateOrder,
    responses(
        (status = 200, description = "The order with its new items", body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is no longer `created`, or a payment of it is not settled yet", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 422, description = "Invalid order or `order_id`", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn replace_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    OrderBody(order): OrderBody,
) -> Result<OrderJson, ApiError> {
    // Tracked like pay and cancel: settling an open payment first calls
    // payments, which a client hanging up must not cut short.
    let (lifecycle, owner) = (state.lifecycle.clone(), caller.into_id());
    let order = state
        .tasks
        .spawn(local::carried(async move {
            lifecycle.replace(&owner, id, &order).await
        }))
        .await
        .map_err(ApiError::internal)??;
    Ok(OrderJson(order))
}

/// Delete an order that is not paid for and in flight.
#[utoipa::path(
    delete,
    path = "/orders/{order_id}",
    tag = "orders",
    operation_id = "delete_order",
    security(("bearer" = [])),
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is paid, being made or on its way, or a payment of it is not settled yet", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn delete_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
) -> Result<StatusCode, ApiError> {
    let (lifecycle, owner) = (state.lifecycle.clone(), caller.into_id());
    state
        .tasks
        .spawn(local::carried(
            async move { lifecycle.delete(&owner, id).await },
        ))
        .await
        .map_err(ApiError::internal)??;
    Ok(StatusCode::NO_CONTENT)
}

/// Pay for an order: charge it, then have the kitchen schedule it.
///
/// Allowed while `created`, and while `paid` (which only retries the
/// scheduling). Each charge is recorded before payments is called and sent
/// with its own idempotency key, reused until payments answers: when an
/// answer is lost (504, 502), paying again is safe and never charges twice.
/// A pending payment answers 202 with the order; it is settled, and the
/// order scheduled, in the background. A failure leaves the order in the
/// last state that truly happened.
#[utoipa::path(
    post,
    path = "/orders/{order_id}/pay",
    tag = "orders",
    operation_id = "pay_order",
    security(("bearer" = [])),
    params(
        ("order_id" = uuid::Uuid, Path, description = "The order's id"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
            description = "The same key gets the same answer: once this request was answered finally (200, 402, 404, 409 for the order's status or the kitchen's refusal), a repeat with the key within its lifetime gets that answer again, with `Idempotent-Replayed: true`. Answers that say to retry (202, 409 busy or unsettled, 5xx) are not kept: a repeat does the work again, which is safe."),
    ),
    responses(
        (status = 200, description = "Paid and scheduled: status `progress`", body = OrderResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this answers a repeated key"))),
        (status = 202, description = "The payment is pending: the order stays `created` and is settled and scheduled in the background", body = OrderResponse,
            headers(("Retry-After" = String, description = "Seconds after which to look at the order again"))),
        (status = 402, description = "The payment was declined; the order stays `created` and paying again makes a new payment", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order cannot be paid in its status, or another payment of it is under way", body = ErrorBody,
            headers(("Retry-After" = String, description = "When another request holds the order: seconds until its hold ends at the latest"))),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID, or the Idempotency-Key is malformed or was used for a different request", body = ErrorBody),
        (status = 502, description = "Payments or kitchen answered unexpectedly, or the connection broke; paying again is safe", body = ErrorBody),
        (status = 503, description = "Payments, kitchen or the database unavailable or not configured", body = ErrorBody),
        (status = 504, description = "Payments or kitchen did not answer in time; paying again is safe", body = ErrorBody),
    )
)]
pub async fn pay_order(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    OrderIdPath(id): OrderIdPath,
) -> Result<Response, ApiError> {
    let (lifecycle, owner) = (state.lifecycle.clone(), caller.id().to_owned());
    let work = async move {
        Ok(match lifecycle.pay(&owner, id).await? {
            Paid::Scheduled(order) => OrderJson(order).into_response(),
            Paid::Pending { order, retry_in } => (
                StatusCode::ACCEPTED,
                [(header::RETRY_AFTER, HeaderValue::from(seconds_up(retry_in)))],
                OrderJson(order),
            )
                .into_response(),
        })
    };
    keyed::run(&state, caller.into_id(), key, KeyedAction::Pay, id, work).await
}

/// Whole seconds, rounded up: a client told to come back never comes back
/// before the time, and never after less than a second.
fn seconds_up(duration: std::time::Duration) -> u64 {
    duration.as_millis().div_ceil(1000).max(1) as u64
}

/// Cancel an order.
///
/// Directly while `created` or `paid` and nothing can be being made; once
/// the kitchen may be making it, only after the kitchen confirms it dropped
/// the schedule. An order that was charged is refunded (in the background,
/// exactly once). A payment whose outcome is not known yet is settled first.
#[utoipa::path(
    post,
    path = "/orders/{order_id}/cancel",
    tag = "orders",
    operation_id = "cancel_order",
    security(("bearer" = [])),
    params(
        ("order_id" = uuid::Uuid, Path, description = "The order's id"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
            description = "The same key gets the same answer: once this request was answered finally (200, 402, 404, 409 for the order's status or the kitchen's refusal), a repeat with the key within its lifetime gets that answer again, with `Idempotent-Replayed: true`. Answers that say to retry (202, 409 busy or unsettled, 5xx) are not kept: a repeat does the work again, which is safe."),
    ),
    responses(
        (status = 200, description = "Cancelled (and refunded, if it was charged)", body = OrderResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this answers a repeated key"))),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Already cancelled, dispatched or delivered; the kitchen can no longer cancel it; a payment of it is not settled yet; or another request holds it", body = ErrorBody,
            headers(("Retry-After" = String, description = "When another request holds the order: seconds until its hold ends at the latest"))),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID, or the Idempotency-Key is malformed or was used for a different request", body = ErrorBody),
        (status = 502, description = "The kitchen answered unexpectedly", body = ErrorBody),
        (status = 503, description = "Kitchen, payments or the database unavailable or not configured", body = ErrorBody),
        (status = 504, description = "The kitchen did not answer in time", body = ErrorBody),
    )
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    OrderIdPath(id): OrderIdPath,
) -> Result<Response, ApiError> {
    let (lifecycle, owner) = (state.lifecycle.clone(), caller.id().to_owned());
    let work = async move {
        let order = lifecycle.cancel(&owner, id).await?;
        Ok(OrderJson(order).into_response())
    };
    keyed::run(&state, caller.into_id(), key, KeyedAction::Cancel, id, work).await
}
