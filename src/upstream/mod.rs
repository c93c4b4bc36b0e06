//! Clients of the payments and kitchen services.
//!
//! Each sits behind a trait so tests and other transports can stand in;
//! the HTTP implementations share one `reqwest` client (one connection pool,
//! one TLS configuration) with connect and whole-call timeouts.

pub mod kitchen;
pub mod payments;

use std::future::Future;
use std::time::Duration;

use tracing::field::Empty;
use tracing::{Instrument, Span};

pub use kitchen::{CancelOutcome, Kitchen, KitchenClient, ScheduleStatus};
pub use payments::{Payment, PaymentStatus, Payments, PaymentsClient, Refund, RefundStatus};

/// The services this one calls, named as operators and metrics know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Payments,
    Kitchen,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Payments => "payments",
            Service::Kitchen => "kitchen",
        }
    }
}

/// How a call to another service failed. What matters for money is
/// whether the request may have been acted on: only [`NotSent`] says it
/// was not; after any other failure the work may have been done.
///
/// [`NotSent`]: UpstreamError::NotSent
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (refused, DNS): nothing was sent.
    #[error("cannot connect: {0}")]
    NotSent(String),
    /// It answered 503: it says it cannot serve now.
    #[error("answered 503 Service Unavailable")]
    Unavailable,
    /// The request went out and no answer came in time.
    #[error("no answer within the timeout")]
    Timeout,
    /// The request went out and the connection broke before an answer.
    #[error("the connection broke before an answer: {0}")]
    Lost(String),
    /// An answer outside the contract: another status, or a body that does
    /// not parse.
    #[error("{0}")]
    BadResponse(String),
    /// A refusal the contract names as final (a 4xx that says the request
    /// will not be done, whatever it is retried with): `reason` is the
    /// answer's `detail`, or its first bytes.
    #[error("refused it ({status}): {reason}")]
    Refused { status: u16, reason: String },
}

impl UpstreamError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::NotSent(_) => "unreachable",
            UpstreamError::Unavailable => "unavailable",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Lost(_) => "lost",
            UpstreamError::BadResponse(_) => "bad_response",
            UpstreamError::Refused { .. } => "refused",
        }
    }

    /// True when the other service cannot have acted on the request.
    pub fn nothing_sent(&self) -> bool {
        matches!(self, UpstreamError::NotSent(_))
    }
}

/// The client every upstream call uses.
pub fn http_client(connect_timeout: Duration, timeout: Duration) -> reqwest::Client {
    // rustls needs a process-wide crypto provider; installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(concat!("orders-service/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with these settings always builds")
}

impl From<reqwest::Error> for UpstreamError {
    fn from(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            UpstreamError::Timeout
        } else if err.is_decode() || err.is_body() {
            UpstreamError::BadResponse(format!("unreadable body: {}", root_cause(&err)))
        } else if err.is_connect() {
            UpstreamError::NotSent(root_cause(&err))
        } else {
            // Sent, then reset or closed before an answer.
            UpstreamError::Lost(root_cause(&err))
        }
    }
}

/// The innermost error message ("Connection refused"), not reqwest's wrapper.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Reads a success body of the expected status, or explains what came instead.
async fn expect_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    expected: reqwest::StatusCode,
) -> Result<T, UpstreamError> {
    let status = response.status();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Err(UpstreamError::Unavailable);
    }
    if status != expected {
        return Err(UpstreamError::BadResponse(format!(
            "answered {status} instead of {expected}"
        )));
    }
    let bytes = response.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|err| {
        UpstreamError::BadResponse(format!("answered a body outside its contract: {err}"))
    })
}

/// The longest reason of a refusal kept, in characters.
const REASON_CHARS: usize = 300;

/// A final refusal: its status and what its body says (the `detail` of a
/// JSON body, else the first characters of the body).
async fn refusal(response: reqwest::Response) -> UpstreamError {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| {
            json.get("detail")
                .and_then(|d| d.as_str())
                .map(str::to_owned)
        })
        .unwrap_or(body);
    let reason = if reason.trim().is_empty() {
        "no reason given".to_owned()
    } else {
        reason.chars().take(REASON_CHARS).collect()
    };
    UpstreamError::Refused { status, reason }
}

/// A status the contract does not promise.
fn unexpected(status: reqwest::StatusCode) -> UpstreamError {
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        UpstreamError::Unavailable
    } else {
        UpstreamError::BadResponse(format!("answered {status}"))
    }
}

/// The client span of one call, named and attributed the way the
/// OpenTelemetry conventions for HTTP clients say; `template` is the path
/// with its ids as `{placeholders}`, so spans group by operation. The ids
/// the call concerns are recorded by the caller.
fn call_span(service: Service, method: &'static str, template: &'static str) -> Span {
    tracing::info_span!(
        "upstream call",
        otel.name = format!("{method} {template}"),
        otel.kind = "client",
        otel.status_code = Empty,
        peer.service = service.name(),
        http.request.method = method,
        url.template = template,
        url.full = Empty,
        server.address = Empty,
        server.port = Empty,
        http.response.status_code = Empty,
        "error.type" = Empty,
        order.id = Empty,
        payment.id = Empty,
        payment.attempt_key = Empty,
        kitchen.schedule_id = Empty,
    )
}

/// Runs a call in its span and records how it failed, if it did.
async fn traced<T>(
    span: Span,
    call: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    let result = call.instrument(span.clone()).await;
    if let Err(error) = &result {
        span.record("otel.status_code", "error");
        span.record("error.type", error.kind());
    }
    result
}

/// Sends a request in the current span (a [`call_span`]), with its trace
/// context in `traceparent`, and records the answer's status.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, UpstreamError> {
    let span = Span::current();
    let (client, request) = request.build_split();
    let mut request = request.map_err(|err| UpstreamError::NotSent(root_cause(&err)))?;
    let url = request.url();
    span.record("url.full", url.as_str());
    if let Some(host) = url.host_str() {
        span.record("server.address", host);
    }
    if let Some(port) = url.port_or_known_default() {
        span.record("server.port", port);
    }
    crate::trace_context::inject(&span, request.headers_mut());
    let response = client.execute(request).await?;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 400 {
        span.record("otel.status_code", "error");
        span.record("error.type", status.to_string());
    }
    Ok(response)
}

/// The header every call that changes something carries, so that a retry
/// of a call whose answer was lost is recognised as the same request.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// `base` + `path`, tolerating a trailing slash on the configured URL.
fn join(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn join_tolerates_trailing_slashes() {
        assert_eq!(
            super::join("http://p:80/", "/payments"),
            "http://p:80/payments"
        );
        assert_eq!(
            super::join("http://p/api", "/payments"),
            "http://p/api/payments"
        );
    }
}
