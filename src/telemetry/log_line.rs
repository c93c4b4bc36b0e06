//! JSON log lines that name the trace and span they were written in, so a
//! log search by `trace_id` finds every line of one request (and a trace
//! back end can jump from a span to its lines).

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Wraps a JSON event format: `{"trace_id":...,"span_id":...,` then the
/// line the inner format writes. The ids are those of the OpenTelemetry
/// context that entering the current span made current or, for work that
/// OpenTelemetry does not trace, those of its [`local`](super::local) trace.
pub struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        let (trace_id, span_id) = if ids.is_valid() {
            (ids.trace_id(), ids.span_id())
        } else if let Some(local) = super::local::current() {
            (local.trace_id, local.span_id)
        } else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}
