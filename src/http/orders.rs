//! `/orders`: the seven operations of the public contract.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::cursor;
use super::dto::{CreateOrder, OrderResponse, OrdersPage};
use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, ListQuery, OrderIdPath};
use super::identity::Caller;
use super::state::AppState;
use super::validation;
use crate::repository::{ListFilter, PageRequest};

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
    params(
        ("cancelled" = Option<bool>, Query, description = "`true`: only cancelled orders; `false`: all but cancelled ones; absent: all."),
        ("limit" = Option<i64>, Query, minimum = 1, description = "Page size: default 50; values above 200 are served 200."),
        ("cursor" = Option<String>, Query, pattern = "^[0-9a-fA-F]{48}$", description = "Opaque position, copied from the `next` link of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of orders", body = OrdersPage,
            headers(("Link" = String, description = "`<...>; rel=\"next\"` when more orders follow"))),
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
    let body = OrdersPage {
        orders: page.orders.into_iter().map(OrderResponse::from).collect(),
    };
    let mut response = Json(body).into_response();
    if let Some(next) = page.next
        && let Ok(link) = HeaderValue::from_str(&next_link(&query, &next))
    {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// Place an order.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    operation_id = "create_order",
    request_body = CreateOrder,
    responses(
        (status = 201, description = "The order was placed", body = OrderResponse,
            headers(("Location" = String, description = "`/orders/{order_id}`"))),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid order", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn create_order(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let order = validation::new_order(&body).map_err(ApiError::Validation)?;
    let order = state.repo.create(caller.id(), &order).await?;
    let location = HeaderValue::from_str(&format!("/orders/{}", order.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(OrderResponse::from(order)),
    )
        .into_response())
}

/// Get one order.
#[utoipa::path(
    get,
    path = "/orders/{order_id}",
    tag = "orders",
    operation_id = "get_order",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
) -> Result<Json<OrderResponse>, ApiError> {
    let order = state.repo.get(caller.id(), id).await?;
    Ok(Json(order.into()))
}

/// Replace the items of an order that is still `created`.
#[utoipa::path(
    put,
    path = "/orders/{order_id}",
    tag = "orders",
    operation_id = "replace_order",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    request_body = CreateOrder,
    responses(
        (status = 200, description = "The order with its new items", body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is no longer `created`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Invalid order or `order_id`", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn replace_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
    JsonBody(body): JsonBody,
) -> Result<Json<OrderResponse>, ApiError> {
    let order = validation::new_order(&body).map_err(ApiError::Validation)?;
    let order = state
        .repo
        .replace(caller.id(), id, &order)
        .await
        .map_err(|err| refusal("replace", err))?;
    Ok(Json(order.into()))
}

/// Delete an order that is not paid for and in flight.
#[utoipa::path(
    delete,
    path = "/orders/{order_id}",
    tag = "orders",
    operation_id = "delete_order",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is paid, being made or on its way", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    )
)]
pub async fn delete_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
) -> Result<StatusCode, ApiError> {
    state
        .repo
        .delete(caller.id(), id)
        .await
        .map_err(|err| refusal("delete", err))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pay for an order: charge it, then have the kitchen schedule it.
///
/// Allowed while `created`, and while `paid` (which only retries the
/// scheduling: the customer is never charged twice). A failure leaves the
/// order in the last state that truly happened.
#[utoipa::path(
    post,
    path = "/orders/{order_id}/pay",
    tag = "orders",
    operation_id = "pay_order",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Paid and scheduled: status `progress`", body = OrderResponse),
        (status = 402, description = "The payment was declined; the order stays `created`", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order cannot be paid in its status, or another payment of it is under way", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
        (status = 502, description = "Payments or kitchen answered unexpectedly", body = ErrorBody),
        (status = 503, description = "Payments, kitchen or the database unavailable or not configured", body = ErrorBody),
        (status = 504, description = "Payments or kitchen did not answer in time", body = ErrorBody),
    )
)]
pub async fn pay_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
) -> Result<Json<OrderResponse>, ApiError> {
    let order = state.lifecycle.pay(caller.id(), id).await?;
    Ok(Json(order.into()))
}

/// Cancel an order.
///
/// Directly while `created` or `paid`; while `progress` only once the
/// kitchen confirms it cancelled the schedule.
#[utoipa::path(
    post,
    path = "/orders/{order_id}/cancel",
    tag = "orders",
    operation_id = "cancel_order",
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Cancelled", body = OrderResponse),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Already cancelled, dispatched or delivered", body = ErrorBody),
        (status = 422, description = "`order_id` is not a UUID", body = ErrorBody),
        (status = 502, description = "The kitchen refused or answered unexpectedly", body = ErrorBody),
        (status = 503, description = "Kitchen or the database unavailable or not configured", body = ErrorBody),
        (status = 504, description = "The kitchen did not answer in time", body = ErrorBody),
    )
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    caller: Caller,
    OrderIdPath(id): OrderIdPath,
) -> Result<Json<OrderResponse>, ApiError> {
    let order = state.lifecycle.cancel(caller.id(), id).await?;
    Ok(Json(order.into()))
}

/// Words a 409 for the action the client attempted.
fn refusal(action: &str, err: crate::repository::RepositoryError) -> ApiError {
    match err {
        crate::repository::RepositoryError::Conflict { current } => {
            ApiError::refused(action, current)
        }
        other => other.into(),
    }
}
