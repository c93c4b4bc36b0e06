//! The safety net that keeps every error body JSON: responses produced by
//! axum or tower layers (405, 408, 413, timeouts) come with an empty or
//! plain-text body; this rewrites them as `{"detail": "<reason>"}`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::detail_response;

/// What a request cut off by `REQUEST_TIMEOUT_MS` answers.
pub const REQUEST_TIMED_OUT: StatusCode = StatusCode::GATEWAY_TIMEOUT;

/// `response` with a JSON body when it is an error whose body is not JSON.
pub fn as_json_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let already_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if already_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let detail = match status {
        REQUEST_TIMED_OUT => {
            "the request took too long to answer; what it started goes on, so its outcome is \
             not known yet, and retrying it is safe"
        }
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => {
            "the request took too long and was abandoned"
        }
        StatusCode::PAYLOAD_TOO_LARGE => "request body is too large",
        other => other.canonical_reason().unwrap_or("Error"),
    };
    let body = serde_json::to_vec(&super::error::detail_json(detail)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// Unknown routes.
pub async fn not_found() -> Response {
    detail_response(StatusCode::NOT_FOUND, "Not Found")
}

/// A panic in a handler: logged, and answered like any other server error.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    detail_response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_cut_off_answers_504_in_json_saying_a_retry_is_safe() {
        let cut_off = Response::builder()
            .status(REQUEST_TIMED_OUT)
            .body(Body::empty())
            .unwrap();
        let answer = as_json_error(cut_off);
        assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        let body = futures_body(answer);
        assert!(body.contains("retrying it is safe"), "{body}");
    }

    fn futures_body(response: Response) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
