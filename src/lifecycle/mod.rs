//! Moving orders through their lifecycle: paying, cancelling, and the
//! changes (replace, delete) that the lifecycle allows or refuses; and the
//! [`reconciler`], which finishes in the background what requests left open.
//!
//! Money is never lost because nothing is sent before it is recorded:
//!
//! - A charge is a payment attempt with its own key, committed (with the
//!   lease on the order) before payments is called, and sent again with
//!   the same key for as long as its outcome is unknown. Only a definite
//!   decline lets the next pay make a new key.
//! - A refund owed is recorded in the same transaction as the cancellation
//!   that owes it, and delivered by the reconciler under its own key.
//! - A schedule request is marked as possibly sent before it leaves, so a
//!   `paid` order the kitchen may be making is never cancelled behind its
//!   back.
//!
//! Each call to payments or kitchen is made under a lease on the order
//! (taken by a conditional update, in database time), so of two concurrent
//! requests only one calls and the other answers 409 at once; each step is
//! recorded by a conditional update on that lease. A lease left by a
//! crashed pod expires, and the reconciler takes the order over.
//!
//! Each step has a file of its own, to be read on its own: paying
//! (`charge`, then `schedule` with the kitchen) and `cancel`. What they
//! share stays here: the lifecycle's parts and timing, the answer to a
//! claim lost to another holder, and the changes (replace, delete) that
//! need no more than an open payment settled first.

mod cancel;
mod charge;
mod error;
mod operator;
pub mod reconciler;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

pub use crate::repository::{Resolution, StuckItem};
pub use charge::Paid;
pub use error::{Action, Activity, LifecycleError};

use crate::domain::status::PaymentStep;
use crate::domain::{NewOrder, Order, OrderId, OrderStatus};
use crate::metrics::Metrics;
use crate::repository::{AttemptState, Lease, LifecycleState, OrdersRepository, RepositoryError};
use crate::upstream::{Kitchen, Payments, Service};

type Result<T, E = LifecycleError> = std::result::Result<T, E>;

/// How long things take and wait.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a lease lasts: longer than every call one holder may make.
    pub lease: Duration,
    /// The first wait before an open item is tried again; it doubles after
    /// each failure, up to `backoff_max`.
    pub retry: Duration,
    pub backoff_max: Duration,
    /// Least time between two status questions about one `progress` order.
    pub kitchen_poll: Duration,
    /// Age past which an open item is logged at error level.
    pub alert_after: Duration,
    /// Age past which an open item is no longer retried: it needs an
    /// operator.
    pub needs_attention_after: Duration,
    /// How long payments remembers an idempotency key: a key older than
    /// this that was sent before is never sent again (payments could take
    /// it for a new charge or refund).
    pub payment_key_ttl: Duration,
}

impl Timing {
    fn lease_ms(&self) -> i64 {
        millis(self.lease)
    }

    /// The wait before try number `tries + 1`.
    fn retry_ms(&self, tries: u32) -> i64 {
        let wait = self.retry.saturating_mul(1 << tries.min(20));
        millis(wait.min(self.backoff_max))
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Moves orders through their lifecycle.
pub struct OrderLifecycle {
    repo: OrdersRepository,
    payments: Option<Arc<dyn Payments>>,
    kitchen: Option<Arc<dyn Kitchen>>,
    timing: Timing,
    metrics: Arc<Metrics>,
}

/// The order's charge went through and it has moved on past `paid`
/// (scheduled, delivered): another request or the reconciler finished the
/// pay, so a pay asking now, or losing the race to it, is answered as done.
fn paid_and_moved_on(state: &LifecycleState) -> bool {
    state.charged
        && state.status.payment_step() == PaymentStep::Refused
        && state.status != OrderStatus::Cancelled
}

impl OrderLifecycle {
    pub fn new(
        repo: OrdersRepository,
        payments: Option<Arc<dyn Payments>>,
        kitchen: Option<Arc<dyn Kitchen>>,
        timing: Timing,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            repo,
            payments,
            kitchen,
            timing,
            metrics,
        }
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    fn payments(&self) -> Result<&dyn Payments> {
        self.payments
            .as_deref()
            .ok_or(LifecycleError::NotConfigured(Service::Payments))
    }

    fn kitchen(&self) -> Result<&dyn Kitchen> {
        self.kitchen
            .as_deref()
            .ok_or(LifecycleError::NotConfigured(Service::Kitchen))
    }

    /// Replaces the items of an order that is still `created`; a payment
    /// whose outcome is open is settled first (asking payments again).
    pub async fn replace(&self, owner: &str, id: OrderId, order: &NewOrder) -> Result<Order> {
        match self.repo.replace(owner, id, order).await {
            Err(RepositoryError::PaymentUnsettled) => {
                self.settle_open_attempt(owner, id).await?;
                self.repo.replace(owner, id, order).await
            }
            other => other,
        }
        .map_err(|err| LifecycleError::refusal(Action::Replace, err))
    }

    /// Deletes an order unless it is paid for and not yet finished; a
    /// payment whose outcome is open is settled first.
    pub async fn delete(&self, owner: &str, id: OrderId) -> Result<()> {
        match self.repo.delete(owner, id).await {
            Err(RepositoryError::PaymentUnsettled) => {
                self.settle_open_attempt(owner, id).await?;
                self.repo.delete(owner, id).await
            }
            other => other,
        }
        .map_err(|err| LifecycleError::refusal(Action::Delete, err))
    }

    /// After a refused claim, looks at what became of the order
    /// ([`Self::after_lost_claim`]): `Ok(false)` when that is fine for
    /// `action`, `Ok(true)` to claim again. A look that finds the order free
    /// again (`freed`: the holder let go between the claim and the look)
    /// claims again, at most twice, rather than answer a 409 with no holder
    /// to wait for.
    async fn claim_again(
        &self,
        (owner, id): (&str, OrderId),
        (action, goal): (Action, Option<OrderStatus>),
        looks: &mut u32,
        freed: impl Fn(&LifecycleError) -> bool,
    ) -> Result<bool> {
        match self.after_lost_claim(owner, id, action, goal).await {
            Err(err) if *looks < 2 && freed(&err) => {
                *looks += 1;
                Ok(true)
            }
            outcome => outcome.map(|()| false),
        }
    }

    /// Another request (or the reconciler) got there first. Fine if it
    /// reached `goal` (the next step goes on from there), or, for a pay,
    /// went past it with the charge made; otherwise a 409 saying why: of
    /// two racing requests only one wins.
    async fn after_lost_claim(
        &self,
        owner: &str,
        id: OrderId,
        action: Action,
        goal: Option<OrderStatus>,
    ) -> Result<()> {
        let state = self.repo.lifecycle_state(owner, id).await?;
        if Some(state.status) == goal || (action == Action::Pay && paid_and_moved_on(&state)) {
            return Ok(());
        }
        if let Some(left) = state.busy_for {
            let activity = if state.status == OrderStatus::Progress {
                Activity::Cancelling
            } else {
                Activity::Paying
            };
            return Err(LifecycleError::Busy(Some(activity), Some(left)));
        }
        if state.status == OrderStatus::Created && state.open_attempt.is_some() {
            return Err(LifecycleError::PaymentUnsettled {
                pending: state.open_attempt == Some(AttemptState::Pending),
            });
        }
        Err(LifecycleError::Refused {
            action,
            status: state.status,
        })
    }

    /// Best effort: an unreleased lease only delays a retry until it expires.
    async fn release(&self, lease: Lease) {
        if let Err(err) = self.repo.release(lease).await {
            tracing::warn!(order_id = %lease.order_id, error = %err, "could not release the lease");
        }
    }

    /// Best effort, as `release`, with the reconciler's next look set.
    async fn defer(&self, lease: Lease, delay_ms: i64, failed: bool, unsent: bool) {
        if let Err(err) = self.repo.defer(lease, delay_ms, failed, unsent).await {
            tracing::warn!(order_id = %lease.order_id, error = %err, "could not release the lease");
        }
    }
}
