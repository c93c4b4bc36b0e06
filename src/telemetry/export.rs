//! Exporting that cannot hurt serving: spans wait in a bounded queue for a
//! thread of their own that sends them in batches; a span that finds the
//! queue full, or whose batch the collector did not take, is dropped and
//! counted in `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::metrics::span_counts;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
};

/// Spans waiting to be sent, at most: a few seconds of a busy replica's
/// spans, a few megabytes of memory.
pub const QUEUE: usize = 2_048;

/// One batch's export, at most (the OTLP default); the queue fills meanwhile.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The batch processor behind a gate that counts what it holds: the SDK's
/// processor drops spans on a full queue without telling anyone, so this
/// drops (and counts) them first.
pub fn bounded_batches(exporter: impl SpanExporter + 'static) -> impl SpanProcessor {
    let held = Arc::new(AtomicUsize::new(0));
    let batches = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        held: held.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .build(),
    )
    .build();
    Gate {
        inner: batches,
        held,
    }
}

/// Spans the processor holds (queued, or in a batch being sent) are
/// counted up here and down by [`Counted`] once their batch is done, so the
/// count never exceeds the queue the processor was given.
#[derive(Debug)]
struct Gate {
    inner: BatchSpanProcessor,
    held: Arc<AtomicUsize>,
}

impl SpanProcessor for Gate {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.held.fetch_add(1, Ordering::AcqRel) >= QUEUE {
            self.held.fetch_sub(1, Ordering::AcqRel);
            span_counts().dropped_some("queue_full", 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
struct Counted<E> {
    inner: E,
    held: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.held.fetch_sub(spans, Ordering::AcqRel);
        match &result {
            Ok(()) => {
                span_counts().exported.inc_by(spans as u64);
            }
            Err(_) => span_counts().dropped_some("export_failed", spans),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};

    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

    use super::{QUEUE, bounded_batches};
    use crate::metrics::span_counts;

    /// A collector that takes no batch until told to.
    #[derive(Debug, Clone, Default)]
    struct Stuck(Arc<(Mutex<bool>, Condvar)>);

    impl Stuck {
        fn release(&self) {
            *self.0.0.lock().unwrap() = true;
            self.0.1.notify_all();
        }
    }

    impl SpanExporter for Stuck {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let (released, changed) = &*self.0;
            let mut released = released.lock().unwrap();
            while !*released {
                released = changed.wait(released).unwrap();
            }
            Ok(())
        }
    }

    fn dropped_for_a_full_queue() -> u64 {
        span_counts().dropped("queue_full")
    }

    #[test]
    fn spans_beyond_the_queue_are_dropped_and_counted_while_the_collector_is_stuck() {
        let stuck = Stuck::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(bounded_batches(stuck.clone()))
            .build();
        let tracer = provider.tracer("test");
        let before = dropped_for_a_full_queue();
        let exported_before = span_counts().exported.get();
        let ended = QUEUE + 500;
        for _ in 0..ended {
            tracer.in_span("work", |_| {});
        }
        assert_eq!(
            dropped_for_a_full_queue() - before,
            (ended - QUEUE) as u64,
            "every span past the queue's size is counted, none blocks"
        );
        stuck.release();
        provider.force_flush().unwrap();
        assert_eq!(
            span_counts().exported.get() - exported_before,
            QUEUE as u64,
            "what the queue held is sent once the collector takes it"
        );
        provider.shutdown().unwrap();
    }
}
