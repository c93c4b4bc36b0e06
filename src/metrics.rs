//! Prometheus metrics: requests by route template and status, latency,
//! database pool use, and calls to the upstream services. The registry
//! knows nothing of HTTP frameworks: the middleware that feeds it and the
//! handler that exposes it live in `http::metrics`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::db::Database;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    /// The route template (`/orders/{order_id}`), never the raw path, so
    /// ids do not explode the number of series.
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    service: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// `charge`, `refund`, `schedule` (orders paid, not yet accepted by
    /// the kitchen), `kitchen` (orders being made whose follow-up fails) or
    /// `needs_attention` (raised for an operator, of any kind).
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconciledLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `queue_full` or `export_failed`.
    reason: String,
}

/// What became of the spans this process ended. Process-wide, like the
/// subscriber that makes them.
#[derive(Clone, Debug, Default)]
pub struct SpanCounts {
    pub exported: Counter,
    pub dropped: Family<DropLabels, Counter>,
}

static SPAN_COUNTS: std::sync::LazyLock<SpanCounts> = std::sync::LazyLock::new(SpanCounts::default);

pub fn span_counts() -> &'static SpanCounts {
    &SPAN_COUNTS
}

impl SpanCounts {
    /// Spans dropped so far for `reason`.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.to_owned(),
            })
            .get()
    }

    pub fn dropped_some(&self, reason: &str, spans: usize) {
        self.dropped
            .get_or_create(&DropLabels {
                reason: reason.to_owned(),
            })
            .inc_by(spans as u64);
    }
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The two series one (method, route, status) feeds, taken from their
/// families once: a family finds a series by hashing its labels with
/// SipHash, about a thousand instructions a request for the two, where
/// this map's foldhash of the same labels costs a tenth of it. The handles
/// share their values with the families, which render them.
type RequestSeries = HashMap<RequestLabels, (Histogram, Counter), foldhash::fast::RandomState>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    request_series: RwLock<RequestSeries>,
    upstream: Family<UpstreamLabels, Counter>,
    pool: Family<PoolLabels, Gauge>,
    open_items: Family<KindLabels, Gauge>,
    oldest_open_item: Family<KindLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    reconciled: Family<ReconciledLabels, Counter>,
    needs_attention: Gauge,
    reconcile_errors: Family<KindLabels, Counter>,
    outbox_pending: Gauge,
    outbox_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    events_published: Family<TypeLabels, Counter>,
    events_publish_errors: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    /// The routing key (`order.created`, ...).
    r#type: String,
}

/// 0.5 ms to ~16 s: covers a cached read and a slow upstream call.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("orders");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let upstream = Family::<UpstreamLabels, Counter>::default();
        let pool = Family::<PoolLabels, Gauge>::default();
        let open_items = Family::<KindLabels, Gauge>::default();
        let oldest_open_item =
            Family::<KindLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let reconciled = Family::<ReconciledLabels, Counter>::default();
        let needs_attention = Gauge::default();
        let reconcile_errors = Family::<KindLabels, Counter>::default();
        let outbox_pending = Gauge::default();
        let outbox_oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let events_published = Family::<TypeLabels, Counter>::default();
        let events_publish_errors = Counter::default();
        registry.register(
            "outbox_pending",
            "Order events written but not yet confirmed by the broker (with events on)",
            outbox_pending.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest order event not yet confirmed by the broker (0 when none)",
            outbox_oldest.clone(),
        );
        registry.register(
            "events_published",
            "Order events the broker confirmed, by routing key",
            events_published.clone(),
        );
        registry.register(
            "events_publish_errors",
            "Failures to reach the events broker or to have an event confirmed; each event \
             stays in the outbox and is published again",
            events_publish_errors.clone(),
        );
        registry.register(
            "needs_attention_items",
            "Items no longer retried that wait for an operator (GET /ops/stuck on the \
             operator's listener lists them)",
            needs_attention.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failures of the reconciler itself (a claim, a lease, a count, an unreadable \
             item), by kind; each stays with its item and the pass goes on",
            reconcile_errors.clone(),
        );
        registry.register(
            "open_items",
            "Money and work not settled yet: charges whose outcome is open, refunds owed, \
             orders paid but not accepted by the kitchen, kitchen follow-ups failing, and \
             items raised for an operator (needs_attention)",
            open_items.clone(),
        );
        registry.register(
            "oldest_open_item_age_seconds",
            "Age of the oldest open item of each kind (0 when none)",
            oldest_open_item.clone(),
        );
        registry.register(
            "reconciled_items",
            "Items the reconciler handled, by kind and outcome (retry: still open)",
            reconciled.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            latency.clone(),
        );
        registry.register(
            "upstream_calls",
            "Calls to the payments and kitchen services, by outcome",
            upstream.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database connections held by the pool, in use or idle",
            pool.clone(),
        );
        let spans = span_counts();
        registry.register(
            "trace_spans_exported",
            "Spans the OpenTelemetry collector took",
            spans.exported.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Spans never exported, by reason: queue_full (the collector is slower than \
             the spans come) or export_failed (it refused or could not be reached)",
            spans.dropped.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            request_series: RwLock::default(),
            upstream,
            pool,
            open_items,
            oldest_open_item,
            reconciled,
            needs_attention,
            reconcile_errors,
            outbox_pending,
            outbox_oldest,
            events_published,
            events_publish_errors,
        }
    }

    /// The events waiting for the broker, as the relay last counted them.
    pub fn outbox(&self, count: i64, oldest_secs: f64) {
        self.outbox_pending.set(count);
        self.outbox_oldest.set(oldest_secs);
    }

    /// The broker confirmed an event of this routing key.
    pub fn event_published(&self, routing_key: &str) {
        self.events_published
            .get_or_create(&TypeLabels {
                r#type: routing_key.to_owned(),
            })
            .inc();
    }

    pub fn events_publish_error(&self) {
        self.events_publish_errors.inc();
    }

    /// Items waiting for an operator, as the reconciler last counted them.
    pub fn needs_attention(&self, count: i64) {
        self.needs_attention.set(count);
    }

    /// A failure of the reconciler's own, with the item kind it concerns.
    pub fn reconcile_error(&self, kind: &str) {
        let labels = KindLabels {
            kind: kind.to_owned(),
        };
        self.reconcile_errors.get_or_create(&labels).inc();
    }

    /// What is still open of `kind`, as the reconciler last counted it.
    pub fn backlog(&self, kind: &str, count: i64, oldest_secs: f64) {
        let labels = KindLabels {
            kind: kind.to_owned(),
        };
        self.open_items.get_or_create(&labels).set(count);
        self.oldest_open_item
            .get_or_create(&labels)
            .set(oldest_secs);
    }

    /// `outcome` of one reconciler item of `kind`.
    pub fn reconciled(&self, kind: &str, outcome: &str) {
        self.reconciled
            .get_or_create(&ReconciledLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// `method` and `route` must come from bounded sets (standard method
    /// names, route templates), or the number of series grows without end.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            method,
            route,
            status,
        };
        let seconds = elapsed.as_secs_f64();
        // A poisoned lock only means a panic elsewhere while it was held;
        // the map is still whole (inserts are single calls).
        if let Some((latency, count)) = self
            .request_series
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&labels)
        {
            latency.observe(seconds);
            count.inc();
            return;
        }
        let latency = self
            .latency
            .get_or_create(&RouteLabels { method, route })
            .clone();
        let count = self.requests.get_or_create(&labels).clone();
        latency.observe(seconds);
        count.inc();
        self.request_series
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(labels, (latency, count));
    }

    /// `outcome`: `ok`, `declined`, `pending`, `refused`, `unreachable`,
    /// `unavailable`, `timeout`, `lost` or `bad_response`.
    pub fn upstream_call(&self, service: &str, outcome: &str) {
        self.upstream
            .get_or_create(&UpstreamLabels {
                service: service.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The exposition, with the pool gauges read now.
    pub fn render(&self, db: &Database) -> String {
        let (in_use, idle) = db.pool_usage();
        for (state, value) in [("in_use", in_use), ("idle", idle)] {
            self.pool
                .get_or_create(&PoolLabels {
                    state: state.to_owned(),
                })
                .set(i64::from(value));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
