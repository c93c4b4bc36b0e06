//! The HTTP surface: routes, extractors, errors and the middleware stack.

mod cors;
pub mod cursor;
pub mod docs;
pub mod dto;
pub mod error;
pub mod extract;
pub mod fallback;
pub mod health;
pub mod identity;
mod keyed;
pub mod metrics;
mod observe;
pub mod ops;
mod order_json;
pub mod orders;
pub mod state;
pub mod validation;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tracing::Span;

use observe::REQUEST_ID;

pub use state::{AppState, Shared};

/// Settings of the middleware stack.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// `None`: any origin.
    pub cors_origins: Option<Vec<String>>,
}

/// Paths that probes and scrapers hit every few seconds: not worth a log line.
fn is_operational(path: &str) -> bool {
    [
        health::HEALTHZ_PATH,
        health::READYZ_PATH,
        health::METRICS_PATH,
    ]
    .contains(&path)
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The server span of a request: named and attributed the way the
/// OpenTelemetry conventions for HTTP servers say, and a child of the
/// caller's span when the request carries a `traceparent`. Without an
/// exporter, and without a caller's trace, the span is only made when the
/// log level shows it, and then without OpenTelemetry's part.
fn request_span(request: &Request, method: &'static str, route: &'static str) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let traceparent = request.headers().contains_key(TRACEPARENT);
    let span = crate::telemetry::in_callers_trace(traceparent, || {
        tracing::info_span!(
            "request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            method = %request.method(),
            route,
            request_id,
            http.request.method = method,
            http.route = route,
            url.path = request.uri().path(),
            url.scheme = "http",
            http.response.status_code = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            order.id = tracing::field::Empty,
        )
    });
    if traceparent {
        crate::trace_context::continue_from(&span, request.headers());
    }
    span
}

/// The request's log line (its span entered), and its outcome on the span.
fn log_response(response: &Response, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let latency_ms = latency.as_secs_f64() * 1_000.0;
    if response.status().is_server_error() {
        // A server span fails on 5xx only: a 4xx is the client's mistake.
        span.record("otel.status_code", "error");
        span.record("error.type", status.to_string());
        // The one place a failed request's cause is logged: the error that
        // made the response left it there.
        let cause = response
            .extensions()
            .get::<error::ErrorCause>()
            .map(|cause| &*cause.0);
        if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status, latency_ms, cause, "request failed");
        } else {
            tracing::warn!(status, latency_ms, cause, "request failed");
        }
    } else {
        tracing::info!(status, latency_ms, "request served");
    }
}

/// The whole application, ready to serve or to drive with `oneshot` in tests.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let registry = state.metrics.clone();
    let api = Router::new()
        .merge(orders::routes())
        .merge(health::routes())
        .merge(docs::routes())
        .fallback(fallback::not_found)
        .with_state(state);

    // One stack, outermost first, around each route (so that the route
    // template is known to the outer layer), built once.
    let layers = ServiceBuilder::new()
        .layer(observe::ObserveLayer::new(registry))
        .layer(cors::CorsLayer::new(settings.cors_origins.as_deref()))
        // 504, not 503: a pay or cancel cut off here goes on detached (a
        // charge may still go through), so the outcome is unknown, and
        // retrying (with the same key) is safe.
        .layer(TimeoutLayer::with_status_code(
            fallback::REQUEST_TIMED_OUT,
            settings.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    api.layer(layers)
}
