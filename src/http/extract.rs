//! Request extractors whose every rejection is an [`ApiError`], so malformed
//! input gets the same JSON error shape as everything else.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use uuid::Uuid;

use super::cursor;
use super::error::{ApiError, Loc};
use super::state::AppState;
use super::validation;
use crate::domain::NewOrder;
use crate::repository::{Cursor, ListFilter};

/// `application/json`, or any `application/*+json`, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body of a request that must be JSON: refused when it is declared
/// otherwise, compressed, too large, unreadable or empty.
async fn json_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(is_json);
    // A compressed body would be parsed as if it were plain JSON.
    let encoded = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if !json || encoded {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.max_body_bytes,
            }
        } else {
            ApiError::invalid(vec!["body".into()], "body_read", rejection.body_text())
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            vec!["body".into()],
            "missing",
            "Field required",
        ));
    }
    Ok(bytes)
}

fn json_invalid(bytes: &[u8], err: &serde_json::Error) -> ApiError {
    let position = byte_offset(bytes, err.line(), err.column());
    ApiError::invalid(
        vec!["body".into(), position.into()],
        "json_invalid",
        format!("JSON decode error: {err}"),
    )
}

/// An order in a JSON body (`POST /orders`, `PUT /orders/{id}`), validated:
/// refused as [`json_bytes`] says, and with every problem of the order named.
pub struct OrderBody(pub NewOrder);

impl FromRequest<AppState> for OrderBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        match validation::new_order_from_json(&bytes) {
            Ok(Ok(order)) => Ok(OrderBody(order)),
            Ok(Err(errors)) => Err(ApiError::Validation(errors)),
            Err(err) => Err(json_invalid(&bytes, &err)),
        }
    }
}

/// serde_json reports (line, column); FastAPI reports a byte offset.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = bytes
        .split(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// The `{order_id}` path segment, which must be a UUID.
pub struct OrderIdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for OrderIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = |msg: String| {
            ApiError::invalid(vec!["path".into(), "order_id".into()], "uuid_parsing", msg)
        };
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| invalid(rejection.body_text()))?;
        let id = Uuid::try_parse(&raw)
            .map_err(|err| invalid(format!("Input should be a valid UUID, {err}")))?;
        // The request's span names the order, so its trace is found by id.
        tracing::Span::current().record("order.id", tracing::field::display(id));
        Ok(OrderIdPath(id))
    }
}

/// Query parameters of `GET /orders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: ListFilter,
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl ListQuery {
    pub const DEFAULT_LIMIT: u32 = 50;
    /// Larger requests are served this many orders (and a `next` link).
    pub const MAX_LIMIT: u32 = 200;
}

/// pydantic's lax booleans, which FastAPI clients already send.
fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::invalid(vec!["query".into()], "query_parsing", rejection.body_text())
            })?;
        let mut query = ListQuery {
            filter: ListFilter::All,
            limit: Self::DEFAULT_LIMIT,
            after: None,
        };
        let mut errors = Vec::new();
        let loc = |name: &str| vec![Loc::from("query"), Loc::from(name)];
        for (name, value) in &pairs {
            match name.as_str() {
                "cancelled" => match parse_bool(value) {
                    Some(true) => query.filter = ListFilter::OnlyCancelled,
                    Some(false) => query.filter = ListFilter::ExceptCancelled,
                    None => errors.push(super::error::FieldError::new(
                        loc("cancelled"),
                        "bool_parsing",
                        "Input should be a valid boolean, unable to interpret input",
                    )),
                },
                "limit" => match value.parse::<i64>() {
                    Ok(limit) if limit >= 1 => {
                        query.limit = limit.min(i64::from(Self::MAX_LIMIT)) as u32
                    }
                    Ok(_) => errors.push(super::error::FieldError::new(
                        loc("limit"),
                        "greater_than_equal",
                        "Input should be greater than or equal to 1",
                    )),
                    Err(_) => errors.push(super::error::FieldError::new(
                        loc("limit"),
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                    )),
                },
                "cursor" => match cursor::decode(value) {
                    Some(after) => query.after = Some(after),
                    None => errors.push(super::error::FieldError::new(
                        loc("cursor"),
                        "value_error",
                        "Value error, not a cursor returned by this service",
                    )),
                },
                // Unknown parameters are ignored, as FastAPI does.
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(query)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    #[test]
    fn offsets_count_bytes_across_lines() {
        assert_eq!(byte_offset(b"{\n  x", 2, 3), 4);
        assert_eq!(byte_offset(b"{", 1, 1), 0);
    }

    #[test]
    fn booleans_follow_pydantic() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("off"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}

/// The optional `Idempotency-Key` header of `POST /orders`: 1 to 255
/// visible ASCII characters, bare or as a quoted string (the IETF draft
/// sends it as a structured-field string).
pub struct IdempotencyKeyHeader(pub Option<String>);

impl IdempotencyKeyHeader {
    pub const NAME: &'static str = "idempotency-key";
    pub const MAX_LEN: usize = 255;

    fn parse(raw: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(raw).ok()?.trim();
        let text = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) if !inner.is_empty() => inner,
            _ => text,
        };
        let visible = text.bytes().all(|b| (0x21..=0x7e).contains(&b));
        (visible && (1..=Self::MAX_LEN).contains(&text.len())).then(|| text.to_owned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(Self::NAME) {
            None => Ok(Self(None)),
            Some(value) => Self::parse(value.as_bytes())
                .map(|key| Self(Some(key)))
                .ok_or_else(|| {
                    ApiError::invalid(
                        vec!["header".into(), Self::NAME.into()],
                        "string_pattern_mismatch",
                        format!(
                            "Idempotency-Key must be 1 to {} visible ASCII characters",
                            Self::MAX_LEN
                        ),
                    )
                }),
        }
    }
}

#[cfg(test)]
mod idempotency_key_tests {
    use super::IdempotencyKeyHeader;

    #[test]
    fn accepts_bare_and_quoted_keys() {
        let parse = |raw: &str| IdempotencyKeyHeader::parse(raw.as_bytes());
        assert_eq!(parse("abc-123").as_deref(), Some("abc-123"));
        assert_eq!(parse("\"abc-123\"").as_deref(), Some("abc-123"));
        assert_eq!(parse("\"").as_deref(), Some("\""));
        assert_eq!(parse(""), None);
        assert_eq!(parse("has space"), None);
        assert_eq!(parse(&"k".repeat(256)), None);
        assert_eq!(parse(&"k".repeat(255)).map(|k| k.len()), Some(255));
    }
}
