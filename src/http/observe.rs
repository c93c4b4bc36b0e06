//! The outermost layer of every route, in one service with no boxing and
//! no clone of the stack below it: the request id (the caller's, or a new
//! UUID), the request's span and its log line, its local trace when
//! OpenTelemetry does not trace it, the request metrics, panics answered as
//! 500s, and every framework error rewritten as JSON.
//! `GET /healthz` is answered here, before the layers below.

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;
use uuid::Uuid;

use super::{fallback, health, log_response, metrics::method_label, request_span};
use crate::metrics::Metrics;
use crate::telemetry::local::{self, LocalTrace};

pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub(super) struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// A new request id: a random UUID, formatted without a `String`.
fn new_request_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

/// The route template as a metrics label. Templates are few and fixed, so
/// each is kept once for the life of the process.
fn route_label(request: &Request) -> &'static str {
    static ROUTES: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());
    let Some(route) = request.extensions().get::<MatchedPath>() else {
        return "unmatched";
    };
    let route = route.as_str();
    let find = |routes: &[&'static str]| routes.iter().copied().find(|known| *known == route);
    if let Some(known) = find(&ROUTES.read().unwrap_or_else(|e| e.into_inner())) {
        return known;
    }
    let mut routes = ROUTES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = find(&routes) {
        return known;
    }
    let kept: &'static str = Box::leak(route.into());
    routes.push(kept);
    kept
}

fn healthz() -> Response {
    let mut response = Response::new(Body::from(&br#"{"status":"ok"}"#[..]));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = match request.headers().get(REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let method = method_label(request.method());
        let route = route_label(&request);
        let mut state = Finish {
            started,
            method,
            route,
            request_id,
            metrics: self.metrics.clone(),
            logged: false,
            span: Span::none(),
            trace: None,
        };
        if request.method() == Method::GET && request.uri().path() == health::HEALTHZ_PATH {
            return ObserveFuture {
                inner: None,
                ready: Some(healthz()),
                state,
            };
        }
        state.logged = !super::is_operational(request.uri().path());
        if state.logged {
            state.span = request_span(&request, method, route);
            if !request.headers().contains_key(super::TRACEPARENT) {
                state.trace = local::mint("request", opentelemetry::trace::SpanKind::Server);
            }
        }
        let inner = {
            let _local = local::enter(state.trace);
            let _entered = state.span.enter();
            catch_unwind(AssertUnwindSafe(|| self.inner.call(request)))
        };
        match inner {
            Ok(inner) => ObserveFuture {
                inner: Some(inner),
                ready: None,
                state,
            },
            Err(panic) => ObserveFuture {
                inner: None,
                ready: Some(fallback::panic_response(panic)),
                state,
            },
        }
    }
}

/// What the response is finished with.
struct Finish {
    started: Instant,
    method: &'static str,
    route: &'static str,
    request_id: HeaderValue,
    metrics: Arc<Metrics>,
    /// Not an operational path: the request has a span and a log line.
    logged: bool,
    span: Span,
    /// The request's own trace when OpenTelemetry does not trace it.
    trace: Option<LocalTrace>,
}

impl Finish {
    fn finish(&mut self, response: Response) -> Response {
        let mut response = fallback::as_json_error(response);
        if !response.headers().contains_key(REQUEST_ID) {
            response
                .headers_mut()
                .insert(REQUEST_ID, self.request_id.clone());
        }
        let latency = self.started.elapsed();
        self.metrics
            .observe_request(self.method, self.route, response.status().as_u16(), latency);
        if self.logged {
            let _local = local::enter(self.trace);
            let _entered = self.span.enter();
            log_response(&response, latency, &self.span);
        }
        response
    }
}

pin_project! {
    pub(super) struct ObserveFuture<F> {
        #[pin]
        inner: Option<F>,
        ready: Option<Response>,
        state: Finish,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.ready.take() {
            Some(response) => response,
            None => {
                let _local = local::enter(this.state.trace);
                let _entered = this.state.span.enter();
                let inner = this.inner.as_pin_mut().expect("polled after completion");
                match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Ok(response))) => response,
                    Ok(Poll::Ready(Err(never))) => match never {},
                    Err(panic) => fallback::panic_response(panic),
                }
            }
        };
        Poll::Ready(Ok(this.state.finish(response)))
    }
}
