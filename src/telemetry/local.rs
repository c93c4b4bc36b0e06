//! Trace ids for work that OpenTelemetry does not trace: a request with no
//! caller's `traceparent` while nothing exports, and a reconciler's item.
//! Such work still names a trace in its log lines, in the `traceparent` of
//! its calls to other services and in what it stores for later (charges,
//! refunds and events), exactly as a traced one does, but the ids are
//! minted here and kept in a thread-local cell while the work is polled.
//! Making every request an OpenTelemetry span for that would cost a context
//! attached and detached at every poll of every future below it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use pin_project_lite::pin_project;
use tracing::Instrument;
use tracing::instrument::Instrumented;

/// The ids of one piece of work that OpenTelemetry does not trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The configured sampler's decision for a new trace with this id, so
    /// that services which follow the caller's decision decide as they
    /// would for a trace this service exported.
    pub sampled: bool,
}

impl LocalTrace {
    /// The W3C `traceparent` naming this trace.
    pub fn traceparent(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", self.trace_id, self.span_id)
    }
}

/// Set at start-up unless every span is exported (then OpenTelemetry
/// names every trace itself): the sampler new traces are decided by.
static MINTER: OnceLock<Sampler> = OnceLock::new();

pub(super) fn enable(sampler: Sampler) {
    let _ = MINTER.set(sampler);
}

/// New ids for a piece of work that starts a trace; `None` when
/// OpenTelemetry names every trace (an exporter is set).
pub fn mint(name: &str, kind: SpanKind) -> Option<LocalTrace> {
    let sampler = MINTER.get()?;
    let ids = RandomIdGenerator::default();
    let trace_id = ids.new_trace_id();
    let decision = sampler.should_sample(None, trace_id, name, &kind, &[], &[]);
    Some(LocalTrace {
        trace_id,
        span_id: ids.new_span_id(),
        sampled: decision.decision == SamplingDecision::RecordAndSample,
    })
}

thread_local! {
    static CURRENT: Cell<Option<LocalTrace>> = const { Cell::new(None) };
}

/// The local trace of the work being polled on this thread, if any.
pub fn current() -> Option<LocalTrace> {
    CURRENT.get()
}

/// Makes `trace` current until the guard is dropped (then the one before
/// it is current again).
pub fn enter(trace: Option<LocalTrace>) -> Entered {
    Entered(CURRENT.replace(trace))
}

/// Restores the trace that was current before [`enter`].
pub struct Entered(Option<LocalTrace>);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

pin_project! {
    /// A future polled in a local trace.
    pub struct InLocalTrace<F> {
        #[pin]
        inner: F,
        trace: Option<LocalTrace>,
    }
}

impl<F: Future> Future for InLocalTrace<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = enter(*this.trace);
        this.inner.poll(cx)
    }
}

/// Polls `work` in `trace`.
pub fn within<F: Future>(trace: Option<LocalTrace>, work: F) -> InLocalTrace<F> {
    InLocalTrace { inner: work, trace }
}

/// `work` in the current span and the current local trace: for work that a
/// request hands to a task of its own, so that it stays in the request's
/// trace.
pub fn carried<F: Future>(work: F) -> InLocalTrace<Instrumented<F>> {
    within(current(), work.in_current_span())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_version_trace_span_and_flags() {
        let trace = LocalTrace {
            trace_id: TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            span_id: SpanId::from(0x00f067aa0ba902b7),
            sampled: true,
        };
        assert_eq!(
            trace.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let unsampled = LocalTrace {
            sampled: false,
            ..trace
        };
        assert!(unsampled.traceparent().ends_with("-00"));
    }

    #[test]
    fn entering_restores_the_trace_before() {
        let outer = LocalTrace {
            trace_id: TraceId::from(1),
            span_id: SpanId::from(2),
            sampled: true,
        };
        let inner = LocalTrace {
            trace_id: TraceId::from(3),
            ..outer
        };
        let _outer = enter(Some(outer));
        {
            let _inner = enter(Some(inner));
            assert_eq!(current(), Some(inner));
        }
        assert_eq!(current(), Some(outer));
    }
}
