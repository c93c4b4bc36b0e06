//! W3C trace context (`traceparent`, `tracestate`) in HTTP headers: read
//! from requests that come in, written onto calls that go out, so the
//! callers' and the upstream services' spans join one trace. Work that
//! OpenTelemetry does not trace passes on its local trace instead
//! ([`crate::telemetry::local`]).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::local;

/// Makes `span` a child of the trace context in `headers`, if they carry a
/// valid one; otherwise it stays the root of a new trace.
pub fn continue_from(span: &Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    use opentelemetry::trace::TraceContextExt;
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled, and then nothing is traced.
        let _ = span.set_parent(parent);
    }
}

/// The current span's `traceparent`, to keep with work that outlives the
/// request (the reconciler links its span back to it); `None` when nothing
/// is traced.
pub fn current() -> Option<String> {
    let mut fields = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut fields);
    fields
        .remove("traceparent")
        .or_else(|| local::current().map(|trace| trace.traceparent()))
}

/// Links `span` to the trace a stored `traceparent` names: the reconciler's
/// work starts a trace of its own (its request ended long ago) that points
/// at the request which opened it. A malformed value links nothing.
pub fn link(span: &Span, traceparent: &str) {
    let fields =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let origin = TraceContextPropagator::new().extract(&fields);
    use opentelemetry::trace::TraceContextExt;
    let origin = origin.span().span_context().clone();
    if origin.is_valid() {
        span.add_link(origin);
    }
}

/// Makes `span` a child of the trace a stored `traceparent` names: the
/// publish of an event continues the trace of the change it tells of.
pub fn continue_stored(span: &Span, traceparent: &str) {
    let fields =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&fields);
    use opentelemetry::trace::TraceContextExt;
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// `span`'s `traceparent`; `None` when it is not traced.
pub fn of(span: &Span) -> Option<String> {
    let mut fields = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut fields);
    fields.remove("traceparent")
}

/// Writes `span`'s trace context into `headers`, or the local trace's when
/// OpenTelemetry does not trace it.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeadersMut(headers));
    if !headers.contains_key(TRACEPARENT)
        && let Some(trace) = local::current()
        && let Ok(value) = HeaderValue::from_str(&trace.traceparent())
    {
        headers.insert(TRACEPARENT, value);
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
