//! The one place where outcomes become HTTP statuses and JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use std::sync::Arc;

use crate::config;
use crate::lifecycle::{Activity, LifecycleError};
use crate::repository::RepositoryError;
use crate::upstream::{Service, UpstreamError};

/// One element of a path to the offending input, as FastAPI writes it:
/// `["body", "order", 0, "quantity"]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Loc {
    Key(String),
    Index(usize),
}

impl From<&str> for Loc {
    fn from(key: &str) -> Self {
        Loc::Key(key.to_owned())
    }
}

impl From<usize> for Loc {
    fn from(index: usize) -> Self {
        Loc::Index(index)
    }
}

fn loc_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    ArrayBuilder::new()
        .items(
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::String))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ),
        )
        .examples([serde_json::json!(["body", "order", 0, "quantity"])])
        .description(Some(
            "Where the bad value is: `body`, `path` or `query`, then keys and indexes.",
        ))
        .build()
}

/// One validation failure (FastAPI/pydantic shape).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where the bad value is: a location (`body`, `path`, `query`) then keys and indexes.
    #[schema(schema_with = loc_schema)]
    pub loc: Vec<Loc>,
    /// What is wrong, for a person.
    #[schema(example = "Input should be greater than or equal to 1")]
    pub msg: String,
    /// What is wrong, for a program (pydantic's error type names).
    #[serde(rename = "type")]
    #[schema(example = "greater_than_equal")]
    pub kind: &'static str,
}

impl FieldError {
    pub fn new(loc: Vec<Loc>, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            loc,
            msg: msg.into(),
            kind,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub detail: ErrorDetail,
}

/// A sentence, or for validation errors the list of what failed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ErrorDetail {
    Message(String),
    Fields(Vec<FieldError>),
}

/// Everything a request can end in other than success. Outcomes of the
/// lifecycle and of storage arrive as they are and are put into words here
/// only, so that the layers below never speak HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("the body must be uncompressed JSON: Content-Type application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A repeated `Idempotency-Key` whose order was deleted since.
    #[error("the order placed with this Idempotency-Key has been deleted")]
    KeyedOrderDeleted,
    #[error(transparent)]
    Unauthorized(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Storage(#[from] RepositoryError),
    /// A bug: logged with its source, answered without it.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Each variant's status, so the table of answers reads in one place.
fn storage_status(err: &RepositoryError) -> StatusCode {
    match err {
        RepositoryError::NotFound => StatusCode::NOT_FOUND,
        RepositoryError::Conflict { .. }
        | RepositoryError::Busy
        | RepositoryError::LeaseLost
        | RepositoryError::PaymentUnsettled => StatusCode::CONFLICT,
        RepositoryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        RepositoryError::Database(_) | RepositoryError::Corrupt(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn storage_detail(err: &RepositoryError) -> String {
    match err {
        RepositoryError::NotFound => "order not found".into(),
        RepositoryError::Conflict { current } => format!(
            "the order is {} and cannot be changed this way",
            current.as_str()
        ),
        RepositoryError::Busy | RepositoryError::LeaseLost => {
            "a payment or cancellation of this order is under way; retry shortly".into()
        }
        RepositoryError::PaymentUnsettled => unsettled_detail().into(),
        RepositoryError::Unavailable(_) => {
            "the service is temporarily unable to reach its database; retry shortly".into()
        }
        RepositoryError::Database(_) | RepositoryError::Corrupt(_) => INTERNAL_SERVER_ERROR.into(),
    }
}

const INTERNAL_SERVER_ERROR: &str = "internal server error";

fn unsettled_detail() -> &'static str {
    "the outcome of a payment of this order is not known yet (its answer was lost); it is \
     being settled, retry shortly"
}

/// The variable that configures a service, for a message that says what to set.
fn setting_of(service: Service) -> &'static str {
    match service {
        Service::Payments => config::PAYMENTS_URL.name,
        Service::Kitchen => config::KITCHEN_URL.name,
    }
}

fn upstream_status(error: &UpstreamError) -> StatusCode {
    match error {
        UpstreamError::NotSent(_) | UpstreamError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::Lost(_) | UpstreamError::BadResponse(_) | UpstreamError::Refused { .. } => {
            StatusCode::BAD_GATEWAY
        }
    }
}

fn upstream_detail(service: Service, error: &UpstreamError) -> String {
    let name = service.name();
    match error {
        UpstreamError::NotSent(reason) => {
            format!("the {name} service is unavailable: {reason}")
        }
        UpstreamError::Lost(reason) => {
            format!("the {name} service's answer was lost: {reason}")
        }
        UpstreamError::Unavailable => {
            format!("the {name} service is unavailable: it answered 503")
        }
        UpstreamError::Timeout => format!("the {name} service did not answer in time"),
        UpstreamError::BadResponse(reason) => {
            format!("the {name} service gave an unexpected answer: {reason}")
        }
        UpstreamError::Refused { status, reason } => {
            format!("the {name} service refused ({status}): {reason}")
        }
    }
}

fn lifecycle_status(err: &LifecycleError) -> StatusCode {
    match err {
        LifecycleError::NotFound | LifecycleError::NothingOpen => StatusCode::NOT_FOUND,
        LifecycleError::NothingToResolve(_) => StatusCode::CONFLICT,
        LifecycleError::Refused { .. } | LifecycleError::Busy(..) => StatusCode::CONFLICT,
        LifecycleError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
        LifecycleError::ChargeUnrecorded(err) => storage_status(err),
        LifecycleError::Upstream { error, .. } => upstream_status(error),
        // A charge whose answer was lost after it was sent: 504 when no
        // answer came in time, 502 for any other (a broken connection, a
        // 5xx, a body outside the contract), 503 only when this attempt's
        // request could not be sent at all.
        LifecycleError::ChargeUnknown { error } => match error {
            UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::NotSent(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
        LifecycleError::Declined { .. } => StatusCode::PAYMENT_REQUIRED,
        LifecycleError::PaymentUnsettled { .. }
        | LifecycleError::KeyExpired
        | LifecycleError::KitchenRefused
        | LifecycleError::KitchenRejected { .. } => StatusCode::CONFLICT,
        LifecycleError::Storage(err) => storage_status(err),
    }
}

fn lifecycle_detail(err: &LifecycleError) -> String {
    match err {
        LifecycleError::NotFound => "order not found".into(),
        LifecycleError::NothingOpen => "nothing is open or needs attention for this order".into(),
        LifecycleError::NothingToResolve(resolution) => format!(
            "this order has no needs_attention item that {} ends",
            resolution.as_str()
        ),
        LifecycleError::Refused { action, status } => format!(
            "cannot {} an order that is {}",
            action.as_str(),
            status.as_str()
        ),
        LifecycleError::Busy(Some(activity), _) => format!(
            "another request is {} this order right now; retry shortly",
            match activity {
                Activity::Paying => "paying for",
                Activity::Cancelling => "cancelling",
            }
        ),
        LifecycleError::Busy(None, _) => storage_detail(&RepositoryError::Busy),
        LifecycleError::NotConfigured(service) => format!(
            "{} is not configured: set {}",
            service.name(),
            setting_of(*service)
        ),
        LifecycleError::Upstream { service, error } => upstream_detail(*service, error),
        LifecycleError::Declined { payment_id } => {
            format!("the payment was declined (payment {payment_id}); the order was not paid")
        }
        LifecycleError::ChargeUnrecorded(_) => {
            "the charge went through but the service could not record it yet (its database \
             failed); the order is not unchanged: it is recorded as paid by the \
             background reconciler, or by paying again, which is safe and never charges twice"
                .into()
        }
        LifecycleError::ChargeUnknown { error } => format!(
            "{}; whether the charge went through is not known yet: paying again is safe \
             (it asks about the same charge and never charges twice)",
            upstream_detail(Service::Payments, error)
        ),
        LifecycleError::PaymentUnsettled { pending: true } => {
            "a payment of this order is pending with the payments service; it is settled \
             shortly, retry then"
                .into()
        }
        LifecycleError::PaymentUnsettled { pending: false } => unsettled_detail().into(),
        LifecycleError::KeyExpired => {
            "a charge of this order has been open longer than the payments service remembers \
             its key; it is not sent again (it could charge twice) and waits for an operator"
                .into()
        }
        LifecycleError::KitchenRefused => {
            "the kitchen can no longer cancel this order: it is being made".into()
        }
        LifecycleError::KitchenRejected { reason } => format!(
            "the kitchen refused to make this order ({reason}); it is cancelled and its \
             charge is refunded"
        ),
        LifecycleError::Storage(err) => storage_detail(err),
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::KeyedOrderDeleted => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Lifecycle(err) => lifecycle_status(err),
            ApiError::Storage(err) => storage_status(err),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The sentence a client reads; never the internals of a server error.
    fn detail(self) -> ErrorDetail {
        ErrorDetail::Message(match self {
            ApiError::Validation(fields) => return ErrorDetail::Fields(fields),
            ApiError::Lifecycle(err) => lifecycle_detail(&err),
            ApiError::Storage(err) => storage_detail(&err),
            ApiError::Internal(_) => INTERNAL_SERVER_ERROR.into(),
            other => other.to_string(),
        })
    }

    /// A single-field validation error.
    /// Whether a pay or cancel answered this way would be answered the same
    /// way if sent again: the order is missing, its status forbids the
    /// action, payments declined the charge, or the kitchen refused. Only a
    /// final answer is kept for an `Idempotency-Key`; the others (busy,
    /// unsettled, unavailable, outcome unknown) tell the client to retry.
    pub fn is_final(&self) -> bool {
        match self {
            ApiError::Lifecycle(err) => matches!(
                err,
                LifecycleError::NotFound
                    | LifecycleError::Refused { .. }
                    | LifecycleError::Declined { .. }
                    | LifecycleError::KitchenRefused
                    | LifecycleError::KitchenRejected { .. }
                    | LifecycleError::Storage(
                        RepositoryError::NotFound | RepositoryError::Conflict { .. }
                    )
            ),
            ApiError::Storage(err) => matches!(
                err,
                RepositoryError::NotFound | RepositoryError::Conflict { .. }
            ),
            _ => false,
        }
    }

    pub fn invalid(loc: Vec<Loc>, kind: &'static str, msg: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(loc, kind, msg)])
    }

    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(err))
    }
}

/// A server error's cause, carried on the response so that the request log
/// line, and nothing else, reports it.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub Arc<str>);

/// `err: its source: its source's source`, the whole chain on one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let cause = status.is_server_error().then(|| chain(&self));
        let holder_left = match &self {
            ApiError::Lifecycle(LifecycleError::Busy(_, left)) => *left,
            _ => None,
        };
        let mut response = (
            status,
            axum::Json(ErrorBody {
                detail: self.detail(),
            }),
        )
            .into_response();
        if let Some(cause) = cause {
            response
                .extensions_mut()
                .insert(ErrorCause(Arc::from(cause)));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(left) = holder_left {
            // When the order's holder lets go at the latest.
            let seconds = left.as_millis().div_ceil(1000).max(1) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `{"detail": "..."}` for statuses produced outside the handlers.
pub fn detail_response(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = ErrorBody {
        detail: ErrorDetail::Message(detail.into()),
    };
    (status, axum::Json(body)).into_response()
}

/// For tests and the fallback: the JSON a detail message serialises to.
pub fn detail_json(detail: &str) -> Value {
    serde_json::json!({ "detail": detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderStatus;
    use crate::lifecycle::Action;

    fn answer(err: impl Into<ApiError>) -> (u16, String) {
        let err = err.into();
        let status = err.status().as_u16();
        match err.detail() {
            ErrorDetail::Message(text) => (status, text),
            ErrorDetail::Fields(_) => (status, "fields".into()),
        }
    }

    #[test]
    fn each_outcome_has_its_status_and_a_sentence_that_says_why() {
        let lost = UpstreamError::Lost("reset".into());
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (LifecycleError::NotFound.into(), 404, "order not found"),
            (
                LifecycleError::Refused {
                    action: Action::Pay,
                    status: OrderStatus::Cancelled,
                }
                .into(),
                409,
                "cannot pay an order that is cancelled",
            ),
            (
                LifecycleError::Busy(Some(Activity::Paying), None).into(),
                409,
                "retry shortly",
            ),
            (LifecycleError::Busy(None, None).into(), 409, "under way"),
            (
                LifecycleError::NotConfigured(Service::Kitchen).into(),
                503,
                "set KITCHEN_URL",
            ),
            (
                LifecycleError::Upstream {
                    service: Service::Kitchen,
                    error: UpstreamError::Timeout,
                }
                .into(),
                504,
                "kitchen service did not answer in time",
            ),
            (
                LifecycleError::Upstream {
                    service: Service::Payments,
                    error: UpstreamError::NotSent("refused".into()),
                }
                .into(),
                503,
                "payments service is unavailable: refused",
            ),
            (
                LifecycleError::ChargeUnknown { error: lost }.into(),
                502,
                "paying again is safe",
            ),
            (
                LifecycleError::ChargeUnknown {
                    error: UpstreamError::Timeout,
                }
                .into(),
                504,
                "not known yet",
            ),
            (
                LifecycleError::Declined {
                    payment_id: uuid::Uuid::nil(),
                }
                .into(),
                402,
                "declined",
            ),
            (
                LifecycleError::PaymentUnsettled { pending: true }.into(),
                409,
                "pending",
            ),
            (
                LifecycleError::PaymentUnsettled { pending: false }.into(),
                409,
                "not known yet",
            ),
            (
                LifecycleError::KitchenRefused.into(),
                409,
                "kitchen can no longer cancel",
            ),
            (
                LifecycleError::KitchenRejected {
                    reason: "no oat milk".into(),
                }
                .into(),
                409,
                "refused to make this order (no oat milk)",
            ),
            (
                RepositoryError::PaymentUnsettled.into(),
                409,
                "not known yet",
            ),
            (
                RepositoryError::Conflict {
                    current: OrderStatus::Paid,
                }
                .into(),
                409,
                "the order is paid",
            ),
            (
                RepositoryError::Unavailable(sqlx::Error::PoolTimedOut).into(),
                503,
                "database; retry shortly",
            ),
            (
                RepositoryError::Corrupt("bad row".into()).into(),
                500,
                "internal server error",
            ),
            (ApiError::KeyedOrderDeleted, 409, "has been deleted"),
        ];
        for (err, status, words) in cases {
            let (got, text) = answer(err);
            assert_eq!(got, status, "{text}");
            assert!(text.contains(words), "{status}: {text}");
        }
    }

    #[test]
    fn a_server_error_keeps_its_cause_for_the_log_and_out_of_the_body() {
        let err = ApiError::Storage(RepositoryError::Database(sqlx::Error::Protocol(
            "secret detail".into(),
        )));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let cause = response.extensions().get::<ErrorCause>().expect("a cause");
        assert!(cause.0.contains("secret detail"), "{}", cause.0);
        let (_, text) = answer(ApiError::Storage(RepositoryError::Database(
            sqlx::Error::Protocol("secret detail".into()),
        )));
        assert_eq!(text, "internal server error");
    }
}
