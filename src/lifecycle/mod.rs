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

mod error;
pub mod reconciler;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub use error::{Action, Activity, LifecycleError};

use crate::domain::status::PaymentStep;
use crate::domain::{NewOrder, Order, OrderId, OrderStatus};
use crate::metrics::Metrics;
use crate::repository::{
    AttemptState, ChargeClaim, Lease, LifecycleState, OrdersRepository, RepositoryError,
};
use crate::upstream::{
    CancelOutcome, Kitchen, PaymentStatus, Payments, ScheduleStatus, Service, UpstreamError,
};

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

/// What a pay achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    /// Charged and scheduled: the order is `progress`.
    Scheduled(Order),
    /// Payments has not decided yet; the order stays `created` and the
    /// reconciler settles it (and schedules it once paid).
    Pending(Order),
}

/// Payments' answer to one attempt.
enum Verdict {
    Paid(Uuid),
    Declined(Uuid),
    Pending(Uuid),
    /// No answer, or one outside the contract: the outcome is unknown
    /// (unless the request never left).
    Lost(UpstreamError),
}

/// What became of the charge step of a pay.
enum Charged {
    /// By this request, which still holds the lease to schedule.
    Now(Lease),
    /// By another request or the reconciler, before this one.
    Before,
    Pending,
}

/// Moves orders through their lifecycle.
pub struct OrderLifecycle {
    repo: OrdersRepository,
    payments: Option<Arc<dyn Payments>>,
    kitchen: Option<Arc<dyn Kitchen>>,
    timing: Timing,
    metrics: Arc<Metrics>,
}

/// How often a change whose condition no longer held is tried again after
/// reading the order anew (another request changed it meanwhile).
const ROUNDS: usize = 3;

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

    /// Charges (unless already charged), then has the kitchen schedule.
    pub async fn pay(&self, owner: &str, id: OrderId) -> Result<Paid> {
        let state = self.repo.lifecycle_state(owner, id).await?;
        let step = state.status.payment_step();
        if step == PaymentStep::Refused {
            return Err(LifecycleError::Refused {
                action: Action::Pay,
                status: state.status,
            });
        }
        // Both services are needed: refuse before charging, not after.
        let payments = self.payments()?;
        let kitchen = self.kitchen()?;
        let lease = match step {
            PaymentStep::Charge => match self.charge(payments, owner, id).await? {
                Charged::Now(lease) => Some(lease),
                Charged::Before => None,
                Charged::Pending => return Ok(Paid::Pending(self.repo.get(owner, id).await?)),
            },
            _ => None,
        };
        self.schedule(kitchen, owner, id, lease).await?;
        Ok(Paid::Scheduled(self.repo.get(owner, id).await?))
    }

    /// `created` → `paid`, through an attempt committed before the call.
    async fn charge(&self, payments: &dyn Payments, owner: &str, id: OrderId) -> Result<Charged> {
        let claim = self
            .repo
            .begin_charge(owner, id, self.timing.lease_ms(), Uuid::new_v4())
            .await?;
        let Some(claim) = claim else {
            self.after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Paid))
                .await?;
            return Ok(Charged::Before);
        };
        match self.ask_payments(payments, &claim).await {
            Verdict::Paid(payment_id) => {
                let kept = self
                    .repo
                    .record_paid(claim, payment_id, Some(self.timing.lease_ms()))
                    .await
                    .inspect_err(|err| {
                        tracing::error!(order_id = %id, %payment_id, attempt = %claim.key, error = %err,
                            "charge went through but could not be recorded; the reconciler will record it");
                    })?;
                match kept {
                    Some(lease) => Ok(Charged::Now(lease)),
                    None => {
                        // The lease ran out during the call; whoever holds
                        // the order records the same answer (same key).
                        self.after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Paid))
                            .await?;
                        Ok(Charged::Before)
                    }
                }
            }
            Verdict::Declined(payment_id) => {
                self.repo.record_declined(claim.key, payment_id).await?;
                self.release(claim.lease).await;
                Err(LifecycleError::Declined { payment_id })
            }
            Verdict::Pending(payment_id) => {
                self.keep_open(&claim, AttemptState::Pending, Some(payment_id), 0)
                    .await?;
                Ok(Charged::Pending)
            }
            Verdict::Lost(error) => Err(self.charge_lost(&claim, error, 0).await),
        }
    }

    /// Asks payments about `claim`'s attempt (a first charge, or the same
    /// key again) and counts the answer.
    async fn ask_payments(&self, payments: &dyn Payments, claim: &ChargeClaim) -> Verdict {
        let order_id = claim.lease.order_id;
        let verdict = match payments.charge(order_id, claim.key).await {
            Ok(payment) => match payment.status {
                PaymentStatus::Paid => {
                    // Logged before it is recorded: should recording fail,
                    // the log still tells which charge went through.
                    tracing::info!(%order_id, payment_id = %payment.id, attempt = %claim.key,
                        "charge went through");
                    Verdict::Paid(payment.id)
                }
                PaymentStatus::Invalid => Verdict::Declined(payment.id),
                PaymentStatus::Pending => Verdict::Pending(payment.id),
            },
            Err(error) => {
                tracing::warn!(%order_id, attempt = %claim.key, %error,
                    "charge answer lost; the same key will be sent again");
                Verdict::Lost(error)
            }
        };
        let outcome = match &verdict {
            Verdict::Paid(_) => "ok",
            Verdict::Declined(_) => "declined",
            Verdict::Pending(_) => "pending",
            Verdict::Lost(error) => error.kind(),
        };
        self.metrics
            .upstream_call(Service::Payments.name(), outcome);
        verdict
    }

    /// The attempt stays open (pending, or unknown after a lost answer),
    /// due again after a backoff, and the order is let go.
    async fn keep_open(
        &self,
        claim: &ChargeClaim,
        state: AttemptState,
        payment_id: Option<Uuid>,
        tries: u32,
    ) -> Result<()> {
        self.repo
            .record_open(claim.key, state, payment_id, self.timing.retry_ms(tries))
            .await?;
        self.release(claim.lease).await;
        Ok(())
    }

    /// A charge without an answer. A fresh attempt whose request never
    /// left is forgotten (the order is as it was); any other stays open.
    async fn charge_lost(
        &self,
        claim: &ChargeClaim,
        error: UpstreamError,
        tries: u32,
    ) -> LifecycleError {
        if claim.fresh && error.nothing_sent() {
            if let Err(err) = self.repo.forget_attempt(claim.key, claim.lease).await {
                return err.into();
            }
            self.release(claim.lease).await;
            return LifecycleError::Upstream {
                service: Service::Payments,
                error,
            };
        }
        if let Err(err) = self
            .keep_open(claim, AttemptState::Unknown, None, tries)
            .await
        {
            return err;
        }
        LifecycleError::ChargeUnknown { error }
    }

    /// `paid` → `progress`, under the lease the charge kept or a new one.
    async fn schedule(
        &self,
        kitchen: &dyn Kitchen,
        owner: &str,
        id: OrderId,
        lease: Option<Lease>,
    ) -> Result<()> {
        let lease = match lease {
            Some(lease) => lease,
            None => {
                let claimed = self
                    .repo
                    .claim(owner, id, OrderStatus::Paid, self.timing.lease_ms())
                    .await?;
                match claimed {
                    Some(lease) => lease,
                    None => {
                        return self
                            .after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Progress))
                            .await;
                    }
                }
            }
        };
        if self
            .send_schedule(kitchen, owner, lease, None, 0)
            .await?
            .is_none()
        {
            self.after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Progress))
                .await?;
        }
        Ok(())
    }

    /// Asks the kitchen to make a `paid` order held under `lease` (the
    /// order id is the key: a repeat returns the same schedule) and records
    /// `progress`, keeping the lease for `keep_ms` or dropping it. `None`
    /// when the lease was lost meanwhile. On failure the order stays `paid`
    /// and the reconciler tries again after a backoff (for the failure
    /// number `tries + 1`); a request the kitchen cannot have acted on (no
    /// connection, or its 503) leaves the order cancellable without it.
    async fn send_schedule(
        &self,
        kitchen: &dyn Kitchen,
        owner: &str,
        lease: Lease,
        keep_ms: Option<i64>,
        tries: u32,
    ) -> Result<Option<Lease>> {
        let id = lease.order_id;
        let order = self.repo.get(owner, id).await?;
        if !self.repo.mark_schedule_sent(lease).await? {
            return Ok(None);
        }
        match kitchen.schedule(id, &order.items).await {
            Ok(schedule_id) => {
                self.metrics.upstream_call(Service::Kitchen.name(), "ok");
                let kept = self
                    .repo
                    .record_scheduled(
                        lease,
                        schedule_id,
                        millis(self.timing.kitchen_poll),
                        keep_ms,
                    )
                    .await?;
                if kept.is_some() {
                    tracing::info!(order_id = %id, %schedule_id, "order scheduled");
                }
                Ok(kept)
            }
            Err(error) => {
                tracing::warn!(order_id = %id, %error, "schedule failed; the order stays paid");
                self.metrics
                    .upstream_call(Service::Kitchen.name(), error.kind());
                let unsent = error.nothing_sent() || error == UpstreamError::Unavailable;
                self.defer(lease, self.timing.retry_ms(tries), true, unsent)
                    .await;
                Err(LifecycleError::Upstream {
                    service: Service::Kitchen,
                    error,
                })
            }
        }
    }

    /// Cancels directly while nothing can be being made; through the
    /// kitchen once something may be. A charged order is refunded.
    pub async fn cancel(&self, owner: &str, id: OrderId) -> Result<Order> {
        for _ in 0..ROUNDS {
            let state = self.repo.lifecycle_state(owner, id).await?;
            let done = match state.status {
                OrderStatus::Created => self.cancel_created(owner, id, state).await?,
                OrderStatus::Paid if !state.schedule_sent => {
                    self.repo.cancel_paid(owner, id, Uuid::new_v4()).await?
                }
                OrderStatus::Paid | OrderStatus::Progress => {
                    self.cancel_in_kitchen(owner, id, state).await?
                }
                status => {
                    return Err(LifecycleError::Refused {
                        action: Action::Cancel,
                        status,
                    });
                }
            };
            if done {
                tracing::info!(order_id = %id, from = state.status.as_str(), "order cancelled");
                return Ok(self.repo.get(owner, id).await?);
            }
            if state.busy {
                break;
            }
        }
        self.after_lost_claim(owner, id, Action::Cancel, None)
            .await?;
        Ok(self.repo.get(owner, id).await?)
    }

    /// A `created` order: at once, unless a payment of it is open; then
    /// payments is asked again with the same key first. `false` when the
    /// order changed meanwhile.
    async fn cancel_created(
        &self,
        owner: &str,
        id: OrderId,
        state: LifecycleState,
    ) -> Result<bool> {
        if state.open_attempt.is_none() {
            return Ok(self.repo.cancel_created(owner, id).await?);
        }
        let payments = self.payments()?;
        let lease_ms = self.timing.lease_ms();
        let Some(claim) = self.repo.claim_open_attempt(owner, id, lease_ms).await? else {
            return Ok(false);
        };
        let (verdict, payment_id) = match self.ask_payments(payments, &claim).await {
            Verdict::Paid(payment_id) => (AttemptState::Paid, payment_id),
            Verdict::Declined(payment_id) => (AttemptState::Declined, payment_id),
            Verdict::Pending(payment_id) => {
                self.keep_open(&claim, AttemptState::Pending, Some(payment_id), 0)
                    .await?;
                return Err(LifecycleError::PaymentUnsettled { pending: true });
            }
            Verdict::Lost(error) => {
                self.keep_open(&claim, AttemptState::Unknown, None, 0)
                    .await?;
                tracing::warn!(order_id = %id, %error, "cancel waits for the payment's outcome");
                return Err(LifecycleError::PaymentUnsettled { pending: false });
            }
        };
        Ok(self
            .repo
            .cancel_held(
                claim.lease,
                OrderStatus::Created,
                Some((claim.key, verdict, payment_id)),
                Uuid::new_v4(),
            )
            .await?)
    }

    /// An order the kitchen may be making: the kitchen must drop it first.
    /// A `paid` one whose schedule answer was lost learns its schedule by
    /// sending the same request again. `false` when the order changed.
    async fn cancel_in_kitchen(
        &self,
        owner: &str,
        id: OrderId,
        state: LifecycleState,
    ) -> Result<bool> {
        let kitchen = self.kitchen()?;
        let lease_ms = self.timing.lease_ms();
        let Some(mut lease) = self.repo.claim(owner, id, state.status, lease_ms).await? else {
            return Ok(false);
        };
        let schedule_id = match (state.status, state.schedule_id) {
            (OrderStatus::Progress, Some(schedule_id)) => schedule_id,
            (OrderStatus::Paid, _) => {
                match self
                    .send_schedule(kitchen, owner, lease, Some(lease_ms), 0)
                    .await?
                {
                    Some(kept) => lease = kept,
                    None => return Ok(false),
                }
                match self.repo.lifecycle_state(owner, id).await?.schedule_id {
                    Some(schedule_id) => schedule_id,
                    None => return Ok(false),
                }
            }
            _ => {
                self.release(lease).await;
                return Err(RepositoryError::Corrupt(format!(
                    "order {id} is in progress without a schedule"
                ))
                .into());
            }
        };
        let error = match kitchen.cancel(schedule_id, id).await {
            Ok(CancelOutcome::Cancelled) => None,
            Ok(CancelOutcome::Refused) => {
                self.metrics
                    .upstream_call(Service::Kitchen.name(), "refused");
                self.release(lease).await;
                return Err(LifecycleError::KitchenRefused);
            }
            Ok(CancelOutcome::Unknown) => Some(UpstreamError::BadResponse(
                "it does not know the schedule".into(),
            )),
            Err(error) => Some(error),
        };
        if let Some(error) = error {
            // The cancel may have gone through, or gone through before
            // (a repeat answers 404): the schedule's status decides.
            self.metrics
                .upstream_call(Service::Kitchen.name(), error.kind());
            match kitchen.status(schedule_id).await {
                Ok(ScheduleStatus::Cancelled) => {}
                Ok(ScheduleStatus::Finished) => {
                    self.repo.record_dispatched(lease).await?;
                    return Err(LifecycleError::Refused {
                        action: Action::Cancel,
                        status: OrderStatus::Dispatched,
                    });
                }
                Ok(ScheduleStatus::Pending | ScheduleStatus::Progress) | Err(_) => {
                    self.release(lease).await;
                    return Err(LifecycleError::Upstream {
                        service: Service::Kitchen,
                        error,
                    });
                }
            }
        }
        self.metrics.upstream_call(Service::Kitchen.name(), "ok");
        Ok(self
            .repo
            .cancel_held(lease, OrderStatus::Progress, None, Uuid::new_v4())
            .await?)
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

    /// Asks payments again about the order's open attempt. `Ok` once it is
    /// settled (a charge that went through makes the order `paid`, which
    /// the reconciler then schedules); an error says why it is still open.
    async fn settle_open_attempt(&self, owner: &str, id: OrderId) -> Result<()> {
        let payments = self.payments()?;
        let lease_ms = self.timing.lease_ms();
        let Some(claim) = self.repo.claim_open_attempt(owner, id, lease_ms).await? else {
            return Err(LifecycleError::Busy(Some(Activity::Paying)));
        };
        match self.ask_payments(payments, &claim).await {
            Verdict::Paid(payment_id) => {
                self.repo.record_paid(claim, payment_id, None).await?;
                Ok(())
            }
            Verdict::Declined(payment_id) => {
                self.repo.record_declined(claim.key, payment_id).await?;
                self.release(claim.lease).await;
                Ok(())
            }
            Verdict::Pending(payment_id) => {
                self.keep_open(&claim, AttemptState::Pending, Some(payment_id), 0)
                    .await?;
                Err(LifecycleError::PaymentUnsettled { pending: true })
            }
            Verdict::Lost(_) => {
                self.keep_open(&claim, AttemptState::Unknown, None, 0)
                    .await?;
                Err(LifecycleError::PaymentUnsettled { pending: false })
            }
        }
    }

    /// Another request (or the reconciler) got there first. Fine if it
    /// reached `goal` (the next step goes on from there); otherwise a 409
    /// saying why: of two racing requests only one wins.
    async fn after_lost_claim(
        &self,
        owner: &str,
        id: OrderId,
        action: Action,
        goal: Option<OrderStatus>,
    ) -> Result<()> {
        let state = self.repo.lifecycle_state(owner, id).await?;
        if Some(state.status) == goal {
            return Ok(());
        }
        if state.busy {
            return Err(LifecycleError::Busy(Some(
                if state.status == OrderStatus::Progress {
                    Activity::Cancelling
                } else {
                    Activity::Paying
                },
            )));
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
