//! The relay of order events, in every replica beside the reconciler: it
//! takes the events the changes of orders wrote to the outbox, publishes
//! each to the broker as a CloudEvent, and marks it published only once the
//! broker confirmed it. Delivery is therefore at least once: a replica that
//! dies between the confirm and the mark leaves the event to be published
//! again, with the same `id` and `sequence`, so consumers drop what they
//! have already applied.
//!
//! The broker being down costs the requests nothing: the outbox grows
//! (`orders_outbox_pending` shows by how much), the relay connects again
//! with a growing backoff, and publishes everything once the broker is back.

mod broker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::broker::{Broker, Message, Outcome};
use crate::config::EventsSettings;
use crate::metrics::Metrics;
use crate::repository::{OrdersRepository, PendingEvent};

/// Events taken per pass: one per order at most (an order's next event
/// waits for its previous one to be confirmed).
const BATCH: u32 = 200;
/// How long a relay holds the events it took: past it (the replica died
/// mid-publish) another relay takes them again.
const LEASE_MS: i64 = 30_000;
/// The pause when nothing waits; a pass that found events is followed at
/// once by the next.
const IDLE: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// At most this long without a try once the broker is back.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the backlog is counted for the gauges, and published events
/// older than the retention are deleted.
const COUNT_EVERY: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_secs(60);

pub struct Relay {
    repo: OrdersRepository,
    metrics: Arc<Metrics>,
    settings: EventsSettings,
}

impl Relay {
    pub fn new(repo: OrdersRepository, metrics: Arc<Metrics>, settings: EventsSettings) -> Self {
        Self {
            repo,
            metrics,
            settings,
        }
    }

    /// Publishes until `stop` is cancelled; the batch in flight then is
    /// finished (published and marked), and the connection closed.
    pub async fn run(self, stop: CancellationToken) {
        let broker_url = self.settings.url.redacted();
        let mut broker: Option<Broker> = None;
        let mut backoff = BACKOFF_MIN;
        let (mut counted, mut purged) = (None::<Instant>, None::<Instant>);
        while !stop.is_cancelled() {
            if counted.is_none_or(|at| at.elapsed() >= COUNT_EVERY) {
                self.count().await;
                counted = Some(Instant::now());
            }
            if purged.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                self.purge().await;
                purged = Some(Instant::now());
            }
            if broker.as_ref().is_none_or(|broker| !broker.is_open()) {
                broker = None;
                match Broker::connect(&self.settings.url.0, &self.settings.exchange).await {
                    Ok(connected) => {
                        tracing::info!(broker = %broker_url, exchange = %self.settings.exchange, "connected to the events broker");
                        broker = Some(connected);
                        backoff = BACKOFF_MIN;
                    }
                    Err(err) => {
                        tracing::warn!(broker = %broker_url, error = %err, retry_in = ?backoff, "cannot reach the events broker; events wait in the outbox");
                        self.metrics.events_publish_error();
                        pause(&stop, backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            let Some(connected) = broker.as_ref() else {
                continue;
            };
            match self.pass(connected).await {
                Ok(0) => pause(&stop, IDLE).await,
                Ok(_) => {}
                Err(()) => {
                    // The connection is suspect: made again after a pause.
                    if let Some(broken) = broker.take() {
                        broken.close().await;
                    }
                    pause(&stop, backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        if let Some(broker) = broker {
            broker.close().await;
        }
        tracing::info!("event relay stopped");
    }

    /// One batch: taken, published, confirmed, marked. The number of events
    /// taken, or `Err` when the broker failed (what was not confirmed is
    /// let go for the next pass).
    async fn pass(&self, broker: &Broker) -> Result<usize, ()> {
        let events = match self.repo.claim_events(LEASE_MS, BATCH).await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(error = %err, "cannot take events from the outbox");
                return Ok(0);
            }
        };
        if events.is_empty() {
            return Ok(0);
        }
        let span = tracing::info_span!(
            "publish",
            otel.name = "publish orders",
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.destination.name = %self.settings.exchange,
            messaging.batch.message_count = events.len(),
        );
        // Each event's own span, in the trace of the change it tells of,
        // lasts until the broker confirmed the batch.
        let (messages, _spans): (Vec<Message<'_>>, Vec<Option<tracing::Span>>) =
            events.iter().map(|event| self.message(event)).unzip();
        let published = broker.publish(messages).instrument(span).await;
        let outcomes = match published {
            Ok(outcomes) => outcomes,
            Err(err) => {
                tracing::warn!(error = %err, events = events.len(), "publishing events failed; they are published again");
                self.metrics.events_publish_error();
                self.let_go(events.iter().collect()).await;
                return Err(());
            }
        };
        let (mut confirmed, mut refused) = (Vec::new(), Vec::new());
        for (event, outcome) in events.iter().zip(outcomes) {
            match outcome {
                Outcome::Confirmed => confirmed.push(event),
                Outcome::Refused => refused.push(event),
            }
        }
        let positions: Vec<i64> = confirmed.iter().map(|event| event.position).collect();
        match self.repo.mark_published(&positions).await {
            Ok(()) => {
                for event in &confirmed {
                    self.metrics.event_published(&event.kind);
                }
            }
            // Published but not marked: published again once the lease runs
            // out (at least once, never lost).
            Err(err) => {
                tracing::warn!(error = %err, events = positions.len(), "confirmed events not marked; they will be published again")
            }
        }
        if !refused.is_empty() {
            tracing::warn!(
                events = refused.len(),
                "the broker refused events; they are published again"
            );
            for _ in &refused {
                self.metrics.events_publish_error();
            }
            self.let_go(refused).await;
        }
        Ok(events.len())
    }

    /// The CloudEvent of `event`, in structured JSON, with the trace of the
    /// change that made it.
    fn message<'a>(&self, event: &'a PendingEvent) -> (Message<'a>, Option<tracing::Span>) {
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        let body = json!({
            "specversion": "1.0",
            "id": event.id,
            "source": self.settings.source,
            "type": format!("coffeemesh.{}", event.kind),
            "subject": event.order_id,
            "time": event.occurred.format(&Rfc3339).unwrap_or_default(),
            "datacontenttype": "application/json",
            "sequence": event.sequence.to_string(),
            "data": data,
        });
        let traced = event.traceparent.as_deref().map(|origin| {
            let span = crate::telemetry::in_callers_trace(true, || {
                tracing::info_span!(
                    "publish",
                    otel.name = format!("publish {}", event.kind),
                    otel.kind = "producer",
                    messaging.system = "rabbitmq",
                    messaging.destination.name = %self.settings.exchange,
                    messaging.message.id = %event.id,
                    order.id = %event.order_id,
                )
            });
            crate::trace_context::continue_stored(&span, origin);
            let traceparent = crate::trace_context::of(&span).unwrap_or_else(|| origin.to_owned());
            (traceparent, span)
        });
        let (traceparent, span) = traced.unzip();
        let message = Message {
            routing_key: &event.kind,
            body: body.to_string().into_bytes(),
            message_id: event.id.to_string(),
            timestamp: event.occurred.unix_timestamp().max(0) as u64,
            traceparent,
        };
        (message, span)
    }

    async fn let_go(&self, events: Vec<&PendingEvent>) {
        if let Err(err) = self.repo.release_events(&events).await {
            tracing::warn!(error = %err, "events not let go; they are taken again when their lease runs out");
        }
    }

    async fn count(&self) {
        match self.repo.events_waiting().await {
            Ok((count, oldest_secs)) => self.metrics.outbox(count, oldest_secs),
            Err(err) => tracing::warn!(error = %err, "cannot count the events waiting"),
        }
    }

    async fn purge(&self) {
        let retention = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        match self.repo.purge_published(retention).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "published events past their retention deleted"),
            Err(err) => tracing::warn!(error = %err, "cannot delete published events"),
        }
    }
}

/// Sleeps `how_long`, or until `stop` is cancelled.
async fn pause(stop: &CancellationToken, how_long: Duration) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(how_long) => {}
    }
}
