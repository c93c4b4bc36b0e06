//! The one place where outcomes become HTTP statuses and JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::OrderStatus;
use crate::repository::RepositoryError;

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

/// Which upstream service a failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Payments,
    Kitchen,
}

impl Upstream {
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Payments => "payments",
            Upstream::Kitchen => "kitchen",
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            Upstream::Payments => "PAYMENTS_URL",
            Upstream::Kitchen => "KITCHEN_URL",
        }
    }
}

/// Everything a request can end in other than success, named by meaning.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("order not found")]
    OrderNotFound,
    #[error("{0}")]
    InvalidTransition(String),
    #[error("the body must be uncompressed JSON: Content-Type application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the service is temporarily unable to reach its database; retry shortly")]
    DatabaseUnavailable,
    #[error("{} is not configured: set {}", .0.name(), .0.setting())]
    UpstreamNotConfigured(Upstream),
    #[error("the {name} service is unavailable: {1}", name = .0.name())]
    UpstreamUnavailable(Upstream, String),
    #[error("the {} service did not answer in time", .0.name())]
    UpstreamTimeout(Upstream),
    #[error("the {name} service gave an unexpected answer: {1}", name = .0.name())]
    UpstreamBadResponse(Upstream, String),
    #[error("the payment was declined ({0}); the order was not paid")]
    PaymentDeclined(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(#[from] crate::auth::AuthError),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::OrderNotFound => StatusCode::NOT_FOUND,
            ApiError::InvalidTransition(_) | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::DatabaseUnavailable
            | ApiError::UpstreamNotConfigured(_)
            | ApiError::UpstreamUnavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::UpstreamBadResponse(..) => StatusCode::BAD_GATEWAY,
            ApiError::PaymentDeclined(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A single-field validation error.
    pub fn invalid(loc: Vec<Loc>, kind: &'static str, msg: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(loc, kind, msg)])
    }

    /// A refused status change, worded for the action attempted.
    pub fn refused(action: &str, current: OrderStatus) -> Self {
        ApiError::InvalidTransition(format!(
            "cannot {action} an order that is {}",
            current.as_str()
        ))
    }
}

impl From<RepositoryError> for ApiError {
    fn from(err: RepositoryError) -> Self {
        match err {
            RepositoryError::NotFound => ApiError::OrderNotFound,
            RepositoryError::Conflict { current } => ApiError::InvalidTransition(format!(
                "the order is {} and cannot be changed this way",
                current.as_str()
            )),
            RepositoryError::Busy => ApiError::Conflict(
                "a payment or cancellation of this order is under way; retry shortly".into(),
            ),
            RepositoryError::Unavailable(source) => {
                tracing::warn!(error = %source, "database unavailable");
                ApiError::DatabaseUnavailable
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match self {
            ApiError::Validation(fields) => ErrorDetail::Fields(fields),
            ApiError::Internal(reason) => {
                // The cause goes to the log only: it may hold SQL or internals.
                tracing::error!(%reason, "request failed");
                ErrorDetail::Message("internal server error".into())
            }
            other => ErrorDetail::Message(other.to_string()),
        };
        let mut response = (status, axum::Json(ErrorBody { detail })).into_response();
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
