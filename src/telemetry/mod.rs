//! Logs and traces: set up once per process. Logs are filtered by
//! `RUST_LOG` and written as JSON lines by default; every `tracing` span
//! is also an OpenTelemetry span, exported over OTLP, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Without an endpoint, only a request
//! that comes with a caller's `traceparent` is traced (its spans continue
//! the caller's trace, so its log lines and its calls to other services
//! carry it); the others cost no OpenTelemetry work, and name a trace of
//! their own all the same ([`local`]).

mod export;
pub mod local;
mod log_line;

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::span::{Attributes, Id};
use tracing::subscriber::Interest;
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets, dynamic_filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings, OtlpProtocol, TraceSampler, TraceSettings};

/// The provider behind the global subscriber, kept to flush it at shutdown.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber with traces off: for tests and tools that
/// only want log lines. Later calls are ignored.
pub fn init_logs(settings: &LogSettings) {
    install(settings, None, false);
    local::enable(Sampler::AlwaysOn);
}

/// Installs the global subscriber. Later calls (tests that build several
/// apps in one process) are ignored.
pub fn init(logs: &LogSettings, traces: &TraceSettings) -> Result<(), String> {
    let provider = provider(traces)?;
    install(logs, Some(provider), traces.endpoint.is_some());
    if traces.endpoint.is_none() {
        local::enable(sampler(traces.sampler));
    }
    Ok(())
}

thread_local! {
    /// Set while the span of a request that carries a caller's trace is made.
    static CALLERS_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `make_span` so that, when `traced` (the request carries a caller's
/// `traceparent`), the span it makes is an OpenTelemetry span even without
/// an exporter; the spans made inside it follow it.
pub fn in_callers_trace<T>(traced: bool, make_span: impl FnOnce() -> T) -> T {
    if !traced {
        return make_span();
    }
    CALLERS_TRACE.set(true);
    let made = make_span();
    CALLERS_TRACE.set(false);
    made
}

fn install(settings: &LogSettings, provider: Option<SdkTracerProvider>, exporting: bool) {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|err| {
        let filter = &settings.filter;
        eprintln!("RUST_LOG {filter:?} is not a valid filter ({err}); using \"info\"");
        EnvFilter::new("info")
    });
    // The most verbose level any log line can be written at.
    let logged = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stdout);
    // Each layer has its own filter: `RUST_LOG=warn` quietens the logs,
    // not the traces.
    let fmt = match settings.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .map_event_format(log_line::WithTraceIds)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
    };
    let ours = Targets::new().with_target(env!("CARGO_CRATE_NAME"), Level::INFO);
    let traces = provider.as_ref().map(|provider| {
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("orders-service"))
            // Spans carry what the code records; file, line and thread
            // would only add bytes to every one.
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false);
        if exporting {
            return layer.with_filter(ours.clone()).boxed();
        }
        // Nothing exports: only a caller's trace, and what happens inside
        // it, is worth the OpenTelemetry work.
        let ours = ours.clone();
        layer
            .with_filter(dynamic_filter_fn(move |metadata, cx| {
                ours.would_enable(metadata.target(), metadata.level())
                    && (CALLERS_TRACE.get() || in_callers_trace_now(cx))
            }))
            .boxed()
    });
    // The per-layer filters above decide what each layer sees, but a span
    // that one of them decides on per call (the dynamic filter) is made all
    // the same, even when every layer then ignores it, and entered and left
    // at each poll; and an event such a filter may take is built and
    // handed to every layer. Without an exporter, this filter for the
    // whole stack lets through only what the log level shows and what
    // belongs to a caller's trace; a callsite that can be neither (sqlx's
    // and hyper's debug lines at `warn`) is never asked about again.
    let global = (provider.is_some() && !exporting).then(|| {
        let traced = ours.clone();
        let marks = TraceMarks { ours: ours.clone() };
        let filter = dynamic_filter_fn(move |metadata, cx| {
            *metadata.level() <= logged
                || (traced.would_enable(metadata.target(), metadata.level())
                    && (CALLERS_TRACE.get() || in_callers_trace_now(cx)))
        })
        .with_callsite_filter(move |metadata| {
            if *metadata.level() <= logged || ours.would_enable(metadata.target(), metadata.level())
            {
                Interest::sometimes()
            } else {
                Interest::never()
            }
        });
        (filter, marks)
    });
    let (global, marks) = global.unzip();
    let installed = tracing_subscriber::registry()
        .with(global)
        .with(marks)
        .with(traces)
        .with(fmt)
        .try_init()
        .is_ok();
    if let (true, Some(provider)) = (installed, provider) {
        let _ = PROVIDER.set(provider);
    }
}

/// Set on a span of ours that is in a caller's trace: without an exporter,
/// the spans made inside it are OpenTelemetry spans too, and no others.
struct InCallersTrace;

/// Whether the current span is in a caller's trace.
fn in_callers_trace_now<S>(cx: &tracing_subscriber::layer::Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    cx.lookup_current()
        .is_some_and(|span| span.extensions().get::<InCallersTrace>().is_some())
}

/// Marks the spans that OpenTelemetry takes without an exporter, as its
/// filter decides: ours, made for a caller's trace or inside one.
struct TraceMarks {
    ours: Targets,
}

impl<S> Layer<S> for TraceMarks
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &Attributes<'_>,
        id: &Id,
        cx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let metadata = attrs.metadata();
        if self.ours.would_enable(metadata.target(), metadata.level())
            && (CALLERS_TRACE.get() || in_callers_trace_now(&cx))
            && let Some(span) = cx.span(id)
        {
            span.extensions_mut().insert(InCallersTrace);
        }
    }
}

fn provider(settings: &TraceSettings) -> Result<SdkTracerProvider, String> {
    let mut resource = Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    for (key, value) in &settings.resource_attributes {
        // `service.name` comes from OTEL_SERVICE_NAME, which wins.
        if key != "service.name" {
            resource = resource.with_attribute(KeyValue::new(key.clone(), value.clone()));
        }
    }
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_sampler(sampler(settings.sampler));
    if let Some(endpoint) = &settings.endpoint {
        use opentelemetry_otlp::WithExportConfig;
        // The exporter's client uses rustls like the upstream clients, with
        // the same process-wide provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_protocol(match settings.protocol {
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
                OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
            })
            .with_timeout(export::EXPORT_TIMEOUT)
            .build()
            .map_err(|err| format!("cannot build the OTLP exporter: {err}"))?;
        builder = builder.with_span_processor(export::bounded_batches(exporter));
    }
    Ok(builder.build())
}

fn sampler(settings: TraceSampler) -> Sampler {
    let own = if settings.ratio >= 1.0 {
        Sampler::AlwaysOn
    } else if settings.ratio <= 0.0 {
        Sampler::AlwaysOff
    } else {
        Sampler::TraceIdRatioBased(settings.ratio)
    };
    if settings.parent_based {
        Sampler::ParentBased(Box::new(own))
    } else {
        own
    }
}

/// Sends what is queued, waiting at most `within`: shutdown calls it with
/// what is left of the drain deadline. Spans still unsent then are lost,
/// and the process stops on time.
pub async fn flush(within: Duration) {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let provider = provider.clone();
    // The export is a blocking call on the processor's thread; waiting for
    // it here must not hold up a runtime worker.
    let flushing = tokio::task::spawn_blocking(move || provider.force_flush());
    match tokio::time::timeout(within, flushing).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => tracing::warn!(error = %err, "could not flush spans"),
        Ok(Err(err)) => tracing::warn!(error = %err, "could not flush spans"),
        Err(_) => tracing::warn!(?within, "flushing spans timed out; the rest are dropped"),
    }
}
