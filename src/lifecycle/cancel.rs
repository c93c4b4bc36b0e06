//! Cancelling an order, by the one way that is safe for where it is:
//! directly while nothing can be being made, through the kitchen once
//! something may be, and only after an open payment is settled, so that a
//! charge that went through is refunded rather than lost. The refund is
//! owed with the cancellation itself and delivered by the reconciler.

use uuid::Uuid;

use super::charge::Verdict;
use super::{Action, LifecycleError, OrderLifecycle, Result};
use crate::domain::{Order, OrderId, OrderStatus};
use crate::repository::{AttemptState, LifecycleState, RepositoryError};
use crate::upstream::{CancelOutcome, ScheduleStatus, Service, UpstreamError};

/// How often a change whose condition no longer held is tried again after
/// reading the order anew (another request changed it meanwhile).
const ROUNDS: usize = 3;

impl OrderLifecycle {
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
            if state.busy_for.is_some() {
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
            Verdict::KeyExpired => return Err(LifecycleError::KeyExpired),
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
                    .await
                {
                    Ok(Some(kept)) => lease = kept,
                    Ok(None) => return Ok(false),
                    // The kitchen will not make it: the order is cancelled.
                    Err(LifecycleError::KitchenRejected { .. }) => return Ok(true),
                    Err(err) => return Err(err),
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
}
