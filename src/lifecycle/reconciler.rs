//! The background task, in every replica, that finishes what requests left
//! open: charges whose answer was lost or is pending, refunds owed, `paid`
//! orders the kitchen has not accepted, and `progress` orders to follow to
//! `dispatched` (or to `cancelled`, when the kitchen cancels by itself).
//!
//! Each item is claimed in the database with a lease in database time (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`), one at a time and just before
//! its calls, so two replicas never make the same call at once and no order
//! waits under a lease behind another's calls; each has its own backoff,
//! stored with it. Nothing is ever dropped: an item that stays open is tried
//! again, logged at error level once it is older than the alert age, raised
//! for an operator past `NEEDS_ATTENTION_AFTER_MS`, and counted with its age
//! in `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::field::{Empty, display};
use tracing::{Instrument, Span};
use uuid::Uuid;

use super::charge::Verdict;
use super::{LifecycleError, OrderLifecycle, millis};
use crate::domain::OrderStatus;
use crate::repository::{
    AttemptState, Claimed, DueAttempt, DueOrder, DueRefund, RefundOutcome, RepositoryError,
    Unreadable,
};
use crate::telemetry::local;
use crate::trace_context;
use crate::upstream::{RefundStatus, ScheduleStatus, Service, UpstreamError};

/// Items of each kind worked on per pass, one claimed at a time: enough to
/// drain a backlog quickly, few enough that a pass ends soon after.
const BATCH: usize = 25;

/// Runs passes every `interval` until `stop` is cancelled; the item in
/// hand when it is cancelled is finished, the rest of the batch let go.
pub async fn run(lifecycle: Arc<OrderLifecycle>, interval: Duration, stop: CancellationToken) {
    loop {
        lifecycle.reconcile_once(&stop).await;
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    tracing::info!("reconciler stopped");
}

/// What an item that stays open is, for raising it.
#[derive(Debug, Clone, Copy)]
enum OpenItem {
    /// The open step of an order: its charge, schedule or kitchen follow-up.
    Order(Uuid),
    Refund {
        key: Uuid,
        order_id: Uuid,
    },
}

impl OpenItem {
    fn order_id(self) -> Uuid {
        match self {
            OpenItem::Order(id) | OpenItem::Refund { order_id: id, .. } => id,
        }
    }
}

/// The span of one item settled: the root of a trace of its own, linked to
/// the request that opened the item when that request's trace context was
/// stored with it (charges and refunds), named by kind and carrying the ids
/// an operator searches by.
fn item_span(kind: &'static str, order_id: Uuid, origin: Option<&str>) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "reconcile",
        otel.name = format!("reconcile {kind}"),
        otel.kind = "internal",
        reconcile.kind = kind,
        order.id = %order_id,
        payment.attempt_key = Empty,
        payment.id = Empty,
        kitchen.schedule_id = Empty,
    );
    if let Some(origin) = origin {
        trace_context::link(&span, origin);
    }
    span
}

/// One item's work in its span and, when OpenTelemetry does not trace it,
/// in a local trace of its own, so its log lines and its calls to other
/// services name one trace all the same.
fn in_its_trace<F: Future>(span: Span, work: F) -> impl Future<Output = F::Output> {
    let trace = local::mint("reconcile", opentelemetry::trace::SpanKind::Internal);
    local::within(trace, work.instrument(span))
}

impl OrderLifecycle {
    /// One pass over every kind of open item, then the backlog metrics.
    /// Each item's failure stays with that item: a claim, a lease or a
    /// count that fails is logged and counted, and the pass goes on with
    /// the next item and the next kind.
    pub async fn reconcile_once(&self, stop: &CancellationToken) {
        // One item at a time: each is claimed (its lease taken) just before
        // it is worked on and given back right after, so no order waits
        // under a lease behind other orders' calls, and a client's pay or
        // cancel of it is not refused meanwhile.
        let lease_ms = self.timing.lease_ms();
        for _ in 0..BATCH {
            if stop.is_cancelled() {
                break;
            }
            let claim = self.repo.claim_due_attempts(1, lease_ms).await;
            if claim.as_ref().is_ok_and(Vec::is_empty) {
                break;
            }
            let failed = claim.is_err();
            for item in self.claimed("charge", claim).await {
                let span = item_span("charge", item.claim.lease.order_id, item.origin.as_deref());
                span.record("payment.attempt_key", display(item.claim.key));
                in_its_trace(span, self.settle_attempt(item)).await;
            }
            if failed {
                break;
            }
        }
        for _ in 0..BATCH {
            if stop.is_cancelled() {
                break;
            }
            let claim = self.repo.claim_due_orders(1, lease_ms).await;
            if claim.as_ref().is_ok_and(Vec::is_empty) {
                break;
            }
            let failed = claim.is_err();
            for item in self.claimed("kitchen", claim).await {
                let span = item_span("kitchen", item.lease.order_id, None);
                if let Some(schedule_id) = item.schedule_id {
                    span.record("kitchen.schedule_id", display(schedule_id));
                }
                in_its_trace(span, self.follow_order(item)).await;
            }
            if failed {
                break;
            }
        }
        for _ in 0..BATCH {
            if stop.is_cancelled() {
                break;
            }
            let claim = self.repo.claim_due_refunds(1, lease_ms).await;
            if claim.as_ref().is_ok_and(Vec::is_empty) {
                break;
            }
            let failed = claim.is_err();
            for item in self.claimed("refund", claim).await {
                let span = item_span("refund", item.order_id, item.origin.as_deref());
                span.record("payment.id", display(item.payment_id));
                in_its_trace(span, self.deliver_refund(item)).await;
            }
            if failed {
                break;
            }
        }
        self.count_backlog().await;
    }

    /// The items a claim of `kind` gave that read. A claim that failed is
    /// logged and counted (its items are tried at the next pass); an item
    /// that does not read is raised for an operator, so that it neither
    /// blocks the others nor stays unseen.
    async fn claimed<T>(
        &self,
        kind: &'static str,
        claim: Result<Claimed<T>, RepositoryError>,
    ) -> Vec<T> {
        let items = match claim {
            Ok(items) => items,
            Err(err) => {
                self.metrics.reconcile_error(kind);
                tracing::error!(kind, error = %err, "could not claim the items due; trying again next pass");
                return Vec::new();
            }
        };
        let mut readable = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Ok(item) => readable.push(item),
                Err(Unreadable { key, error }) => {
                    self.metrics.reconcile_error(kind);
                    tracing::error!(kind, key = ?key, %error, "a claimed item does not read");
                    if let Some(key) = key {
                        let why = format!("its stored row does not read: {error}");
                        let item = if kind == "refund" {
                            OpenItem::Refund { key, order_id: key }
                        } else {
                            OpenItem::Order(key)
                        };
                        self.needs_attention(kind, item, &why).await;
                    }
                }
            }
        }
        readable
    }

    /// The backlog metrics: every kind of open item, and those raised.
    async fn count_backlog(&self) {
        let backlog = match self.repo.backlog().await {
            Ok(backlog) => backlog,
            Err(err) => {
                self.metrics.reconcile_error("backlog");
                tracing::error!(error = %err, "could not count the open items");
                return;
            }
        };
        self.metrics
            .backlog("charge", backlog.open_attempts, backlog.oldest_attempt_secs);
        self.metrics
            .backlog("refund", backlog.refunds_owed, backlog.oldest_refund_secs);
        self.metrics.backlog(
            "schedule",
            backlog.awaiting_kitchen,
            backlog.oldest_awaiting_kitchen_secs,
        );
        self.metrics.backlog(
            "kitchen",
            backlog.kitchen_failing,
            backlog.oldest_kitchen_failing_secs,
        );
        self.metrics.backlog(
            "needs_attention",
            backlog.raised,
            backlog.oldest_raised_secs,
        );
        self.metrics.needs_attention(backlog.raised);
    }

    /// Warns about an item that failed again, at error level once it is
    /// older than the alert age; past `needs_attention_after` it is no
    /// longer retried and waits for an operator.
    async fn still_open(
        &self,
        kind: &'static str,
        item: OpenItem,
        since: OffsetDateTime,
        tries: u32,
        why: &str,
    ) {
        let age = OffsetDateTime::now_utc() - since;
        let age_secs = age.whole_seconds().max(0);
        let id = item.order_id();
        if age >= self.timing.needs_attention_after {
            let why = format!("unsettled for {age_secs} s after {tries} tries: {why}");
            self.needs_attention(kind, item, &why).await;
            return;
        }
        self.metrics.reconciled(kind, "retry");
        let noted = match item {
            OpenItem::Order(id) => self.repo.note_order_error(id, why).await,
            OpenItem::Refund { key, .. } => self.repo.note_refund_error(key, why).await,
        };
        if let Err(err) = noted {
            tracing::warn!(kind, %id, error = %err, "could not keep the item's last error");
        }
        if age >= self.timing.alert_after {
            tracing::error!(kind, %id, age_secs, tries, why, "still unsettled");
        } else {
            tracing::warn!(kind, %id, age_secs, tries, why, "not settled yet; will try again");
        }
    }

    /// Takes an item out of the reconciler's hands: it is logged at error
    /// level, counted, and shown until an operator ends it.
    async fn needs_attention(&self, kind: &'static str, item: OpenItem, why: &str) {
        let id = item.order_id();
        let raised = match item {
            OpenItem::Order(id) => self.repo.raise_order(id, why).await,
            OpenItem::Refund { key, .. } => self.repo.raise_refund(key, why).await,
        };
        match raised {
            Ok(true) => {
                self.metrics.reconciled(kind, "needs_attention");
                tracing::error!(kind, %id, why, "needs attention: an operator must end it");
            }
            Ok(false) => {}
            Err(err) => {
                self.metrics.reconciled(kind, "retry");
                tracing::error!(kind, %id, why, error = %err,
                    "needs attention, and could not be raised; will try again");
            }
        }
    }

    /// Asks payments again (same key) about an attempt whose answer was
    /// lost or pending; a charge that went through is scheduled at once.
    async fn settle_attempt(&self, item: DueAttempt) {
        let DueAttempt {
            owner,
            claim,
            created,
            tries,
            ..
        } = item;
        let order_id = claim.lease.order_id;
        let Ok(payments) = self.payments() else {
            self.release(claim.lease).await;
            return;
        };
        let outcome = match self.ask_payments(payments, &claim).await {
            Verdict::Paid(payment_id) => {
                let keep = Some(self.timing.lease_ms());
                match self.repo.record_paid(claim, payment_id, keep).await {
                    Ok(Some(lease)) => {
                        self.metrics.reconciled("charge", "paid");
                        if let Ok(kitchen) = self.kitchen() {
                            // A failure is retried as a `paid` order.
                            let _ = self.send_schedule(kitchen, &owner, lease, None, 0).await;
                        } else {
                            self.release(lease).await;
                        }
                        return;
                    }
                    Ok(None) => return,
                    Err(err) => Err(err.to_string()),
                }
            }
            Verdict::Declined(payment_id) => {
                let recorded = self.repo.record_declined(claim.key, payment_id).await;
                self.release(claim.lease).await;
                self.metrics.reconciled("charge", "declined");
                recorded.map_err(|err| err.to_string())
            }
            Verdict::Pending(payment_id) => self
                .keep_open(&claim, AttemptState::Pending, Some(payment_id), tries)
                .await
                .map_err(|err| err.to_string())
                .and(Err("payments says pending".to_owned())),
            Verdict::Lost(error) => self
                .keep_open(&claim, AttemptState::Unknown, None, tries)
                .await
                .map_err(|err| err.to_string())
                .and(Err(error.to_string())),
            Verdict::KeyExpired => return,
        };
        if let Err(why) = outcome {
            self.still_open(
                "charge",
                OpenItem::Order(order_id),
                created,
                tries + 1,
                &why,
            )
            .await;
        }
    }

    /// A `paid` order is scheduled; a `progress` one is asked about.
    async fn follow_order(&self, item: DueOrder) {
        let Ok(kitchen) = self.kitchen() else {
            self.defer(item.lease, self.timing.retry_ms(item.checks), true, false)
                .await;
            return;
        };
        let order_id = item.lease.order_id;
        let failure = match (item.status, item.schedule_id) {
            (OrderStatus::Paid, _) => {
                match self
                    .send_schedule(kitchen, &item.owner, item.lease, None, item.checks)
                    .await
                {
                    Ok(_) => {
                        self.metrics.reconciled("schedule", "scheduled");
                        None
                    }
                    Err(LifecycleError::KitchenRejected { .. }) => {
                        self.metrics.reconciled("schedule", "refused");
                        None
                    }
                    Err(err) => Some(err.to_string()),
                }
            }
            (OrderStatus::Progress, Some(schedule_id)) => {
                self.ask_kitchen(kitchen, &item, schedule_id).await
            }
            _ => {
                self.release(item.lease).await;
                None
            }
        };
        if let Some(why) = failure {
            // `send_schedule` set its own backoff; a status question did not.
            if item.status == OrderStatus::Progress {
                self.defer(item.lease, self.timing.retry_ms(item.checks), true, false)
                    .await;
            }
            // A paid order is unsettled since it was paid; one the kitchen
            // is making, since the questions about it started failing.
            let (kind, since) = if item.status == OrderStatus::Paid {
                ("schedule", item.since)
            } else {
                let now = OffsetDateTime::now_utc();
                ("kitchen", item.failing_since.unwrap_or(now))
            };
            let open = OpenItem::Order(order_id);
            self.still_open(kind, open, since, item.checks + 1, &why)
                .await;
        }
    }

    /// Where the kitchen is with a `progress` order: `finished` makes it
    /// `dispatched`; `cancelled` (by the kitchen) makes it `cancelled`
    /// with its refund owed. Returns why it failed, if it did.
    async fn ask_kitchen(
        &self,
        kitchen: &dyn crate::upstream::Kitchen,
        item: &DueOrder,
        schedule_id: Uuid,
    ) -> Option<String> {
        let status = match kitchen.status(schedule_id).await {
            Ok(status) => status,
            Err(error) => {
                self.metrics
                    .upstream_call(Service::Kitchen.name(), error.kind());
                return Some(error.to_string());
            }
        };
        self.metrics.upstream_call(Service::Kitchen.name(), "ok");
        let recorded = match status {
            ScheduleStatus::Finished => {
                let done = self.repo.record_dispatched(item.lease).await;
                if matches!(done, Ok(true)) {
                    tracing::info!(order_id = %item.lease.order_id, "order dispatched");
                    self.metrics.reconciled("kitchen", "dispatched");
                }
                done.map(|_| ())
            }
            ScheduleStatus::Cancelled => {
                let done = self
                    .repo
                    .cancel_held(item.lease, OrderStatus::Progress, None, Uuid::new_v4())
                    .await;
                if matches!(done, Ok(true)) {
                    tracing::warn!(order_id = %item.lease.order_id,
                        "the kitchen cancelled the order; its refund is owed");
                    self.metrics.reconciled("kitchen", "cancelled");
                }
                done.map(|_| ())
            }
            ScheduleStatus::Pending | ScheduleStatus::Progress => {
                self.defer(item.lease, millis(self.timing.kitchen_poll), false, false)
                    .await;
                Ok(())
            }
        };
        recorded.err().map(|err| err.to_string())
    }

    /// Gives a charge back, under the refund's own key.
    async fn deliver_refund(&self, item: DueRefund) {
        let Ok(payments) = self.payments() else {
            return;
        };
        let open = OpenItem::Refund {
            key: item.key,
            order_id: item.order_id,
        };
        // A refund tried before under a key payments may have forgotten is
        // not sent again: it could refund twice.
        if let Some(age) = self.forgotten_key(item.tries == 0, item.created) {
            let why =
                super::charge::forgotten_key_reason("refund", age, self.timing.payment_key_ttl);
            self.needs_attention("refund", open, &why).await;
            return;
        }
        let retry_ms = self.timing.retry_ms(item.tries);
        let mut refused = None;
        let (outcome, failure) = match payments.refund(item.payment_id, item.key).await {
            Ok(refund) => {
                self.metrics.upstream_call(Service::Payments.name(), "ok");
                match refund.status {
                    RefundStatus::Refunded => {
                        tracing::info!(order_id = %item.order_id, payment_id = %item.payment_id,
                            refund_id = %refund.id, "refunded");
                        self.metrics.reconciled("refund", "refunded");
                        (
                            RefundOutcome::Refunded {
                                refund_id: refund.id,
                            },
                            None,
                        )
                    }
                    RefundStatus::Pending => (
                        RefundOutcome::Pending {
                            refund_id: refund.id,
                            retry_ms,
                        },
                        Some("payments says the refund is pending".to_owned()),
                    ),
                }
            }
            Err(error) => {
                self.metrics
                    .upstream_call(Service::Payments.name(), error.kind());
                if let UpstreamError::Refused { .. } = error {
                    // Payments' final word: no retry will make this refund.
                    refused = Some(format!("payments {error}"));
                }
                (RefundOutcome::Failed { retry_ms }, Some(error.to_string()))
            }
        };
        let recorded = self.repo.record_refund(&item, outcome).await;
        if let Some(why) = refused {
            self.needs_attention("refund", open, &why).await;
            return;
        }
        if let Some(why) = failure.or(recorded.err().map(|err| err.to_string())) {
            self.still_open("refund", open, item.created, item.tries + 1, &why)
                .await;
        }
    }
}
