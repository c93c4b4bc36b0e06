//! CORS: tower-http's layer, with a short way for requests that name no
//! origin.
//!
//! The layer answers preflights and adds the CORS headers to every
//! response. For a request without an `Origin` header (every call from
//! another service, most requests) what it adds depends on the settings
//! alone, yet it builds a header map, fills it and merges it into each
//! response, some 2,000 instructions a request, 4% of a get. Here those
//! headers are learnt from the layer itself once, when the stack is built,
//! and such requests get them set the way the layer sets them (`Vary`
//! appended to what the route set, the others replacing). Requests with an
//! origin, and every `OPTIONS`, go through the layer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_http::cors::{self, AllowOrigin, Any};

use super::observe::REQUEST_ID;

/// `None`: any origin.
fn rules(origins: Option<&[String]>) -> cors::CorsLayer {
    let origin = match origins {
        None => AllowOrigin::from(Any),
        Some(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    cors::CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            REQUEST_ID,
        ])
        .expose_headers([
            header::LOCATION,
            header::LINK,
            REQUEST_ID,
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600))
}

#[derive(Clone)]
pub(super) struct CorsLayer {
    rules: cors::CorsLayer,
    without_origin: Arc<WithoutOrigin>,
}

impl CorsLayer {
    pub(super) fn new(origins: Option<&[String]>) -> Self {
        let rules = rules(origins);
        let without_origin = Arc::new(WithoutOrigin::learn(&rules));
        Self {
            rules,
            without_origin,
        }
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Cors<S> {
        Cors {
            inner: self.rules.layer(inner),
            without_origin: self.without_origin.clone(),
        }
    }
}

/// What the layer adds to the response of a request without an origin.
#[derive(Debug, PartialEq)]
struct WithoutOrigin {
    vary: Option<HeaderValue>,
    /// Each name once, with its values in order.
    replace: Vec<(HeaderName, Vec<HeaderValue>)>,
}

impl WithoutOrigin {
    /// Runs the layer once around a route that sets no header: what the
    /// response then carries is exactly what the layer adds.
    fn learn(rules: &cors::CorsLayer) -> Self {
        let route =
            service_fn(|_: Request| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
        let request = Request::get("/")
            .body(Body::empty())
            .expect("a valid request");
        let mut call = pin!(rules.layer(route).oneshot(request));
        // Origins are matched by value, never by an asynchronous predicate,
        // so the layer answers at the first poll.
        let Poll::Ready(Ok(response)) = call.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        else {
            unreachable!("the CORS layer answers a plain request at once")
        };
        Self::from_headers(response.headers())
    }

    fn from_headers(headers: &HeaderMap) -> Self {
        // The layer appends the first `Vary` value it made.
        let vary = headers.get(header::VARY).cloned();
        let replace = headers
            .keys()
            .filter(|name| *name != header::VARY)
            .map(|name| {
                (
                    name.clone(),
                    headers.get_all(name).iter().cloned().collect(),
                )
            })
            .collect();
        Self { vary, replace }
    }

    fn apply(&self, headers: &mut HeaderMap) {
        if let Some(vary) = &self.vary {
            headers.append(header::VARY, vary.clone());
        }
        for (name, values) in &self.replace {
            let mut values = values.iter();
            if let Some(first) = values.next() {
                headers.insert(name.clone(), first.clone());
            }
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
}

#[derive(Clone)]
pub(super) struct Cors<S> {
    inner: cors::Cors<S>,
    without_origin: Arc<WithoutOrigin>,
}

impl<S> Service<Request> for Cors<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::OPTIONS || request.headers().contains_key(header::ORIGIN) {
            CorsFuture::Layer {
                future: self.inner.call(request),
            }
        } else {
            CorsFuture::WithoutOrigin {
                future: self.inner.get_mut().call(request),
                headers: self.without_origin.clone(),
            }
        }
    }
}

pin_project! {
    #[project = CorsFutureProj]
    pub(super) enum CorsFuture<F> {
        Layer {
            #[pin]
            future: cors::ResponseFuture<F>,
        },
        WithoutOrigin {
            #[pin]
            future: F,
            headers: Arc<WithoutOrigin>,
        },
    }
}

impl<F, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CorsFutureProj::Layer { future } => future.poll(cx),
            CorsFutureProj::WithoutOrigin { future, headers } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                headers.apply(response.headers_mut());
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route that sets headers of its own, some of which CORS replaces.
    async fn route(_: Request) -> Result<Response, Infallible> {
        let mut response = Response::new(Body::from("{}"));
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("authorization"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-mine"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }

    async fn headers_from(
        service: impl Service<Request, Response = Response, Error = Infallible>,
        request: Request,
    ) -> HeaderMap {
        service.oneshot(request).await.unwrap().headers().clone()
    }

    fn requests() -> Vec<fn() -> Request> {
        vec![
            || Request::get("/orders").body(Body::empty()).unwrap(),
            || {
                Request::post("/orders")
                    .header("access-control-request-private-network", "true")
                    .body(Body::empty())
                    .unwrap()
            },
            || {
                Request::get("/orders")
                    .header(header::ORIGIN, "https://a.example")
                    .body(Body::empty())
                    .unwrap()
            },
            || {
                Request::get("/orders")
                    .header(header::ORIGIN, "https://elsewhere.example")
                    .body(Body::empty())
                    .unwrap()
            },
            || {
                Request::options("/orders")
                    .header(header::ORIGIN, "https://a.example")
                    .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                    .body(Body::empty())
                    .unwrap()
            },
            || Request::options("/orders").body(Body::empty()).unwrap(),
        ]
    }

    /// Every request gets, header for header and in the same order, what
    /// tower-http's layer alone gives it, for both kinds of settings.
    #[tokio::test]
    async fn responses_carry_what_the_layer_alone_gives() {
        let list = ["https://a.example".to_owned()];
        for origins in [None, Some(&list[..])] {
            for request in requests() {
                let ours =
                    headers_from(CorsLayer::new(origins).layer(service_fn(route)), request()).await;
                let theirs = headers_from(rules(origins).layer(service_fn(route)), request()).await;
                let pairs = |h: &HeaderMap| {
                    h.iter()
                        .map(|(n, v)| (n.clone(), v.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(pairs(&ours), pairs(&theirs), "{origins:?} {:?}", request());
            }
        }
    }

    /// Any origin: the answer never depends on the request, so nothing
    /// varies; a list: a cache must keep answers apart by origin.
    #[test]
    fn a_request_without_origin_is_told_what_varies_and_the_exposed_headers() {
        let names = |learnt: &WithoutOrigin| {
            learnt
                .replace
                .iter()
                .map(|(n, _)| n.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let any = WithoutOrigin::learn(&rules(None));
        assert_eq!(any.vary, None);
        assert_eq!(
            names(&any),
            [
                "access-control-expose-headers",
                "access-control-allow-origin"
            ]
        );
        let list = WithoutOrigin::learn(&rules(Some(&["https://a.example".to_owned()])));
        assert_eq!(list.vary, Some(HeaderValue::from_static("origin")));
        assert_eq!(names(&list), ["access-control-expose-headers"]);
    }
}
