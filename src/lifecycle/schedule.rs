//! Having the kitchen make a paid order. The request is marked as possibly
//! sent before it leaves, because from then on only the kitchen knows
//! whether the order is being made: a cancel must then go through the
//! kitchen, never behind its back. A failure leaves the order `paid`, for
//! the reconciler to send the same request again (the order id is its key).
//!
//! Only a request that never left (no connection could be made) is known
//! not to have reached the kitchen. Any other failure (a 503, which a proxy
//! in front of the kitchen may give after forwarding the request, a broken
//! connection, a timeout, an unreadable 201) leaves the kitchen in doubt:
//! the schedule counts as possibly made, and the order is refunded only once
//! the kitchen confirmed it will not make it.

use uuid::Uuid;

use super::{Action, LifecycleError, OrderLifecycle, Result, millis};
use crate::domain::{OrderId, OrderStatus};
use crate::repository::Lease;
use crate::upstream::{Kitchen, Service, UpstreamError};

impl OrderLifecycle {
    /// `paid` → `progress`, under the lease the charge kept or a new one.
    pub(super) async fn schedule(
        &self,
        kitchen: &dyn Kitchen,
        owner: &str,
        id: OrderId,
        lease: Option<Lease>,
    ) -> Result<()> {
        let mut looks = 0;
        let lease = match lease {
            Some(lease) => lease,
            None => loop {
                let lease_ms = self.timing.lease_ms();
                if let Some(lease) = self
                    .repo
                    .claim(owner, id, OrderStatus::Paid, lease_ms)
                    .await?
                {
                    break lease;
                }
                // Still `paid` and not held: the schedule is this pay's to send.
                let freed = |err: &LifecycleError| {
                    matches!(
                        err,
                        LifecycleError::Refused {
                            status: OrderStatus::Paid,
                            ..
                        }
                    )
                };
                let goal = (Action::Pay, Some(OrderStatus::Progress));
                if !self
                    .claim_again((owner, id), goal, &mut looks, freed)
                    .await?
                {
                    return Ok(());
                }
            },
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
    /// number `tries + 1`); only a request that never left (no connection)
    /// leaves the order cancellable without the kitchen. The kitchen's
    /// final refusal cancels the order, owes its refund and is returned as
    /// [`LifecycleError::KitchenRejected`].
    pub(super) async fn send_schedule(
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
            Err(UpstreamError::Refused { status, reason }) => {
                self.metrics
                    .upstream_call(Service::Kitchen.name(), "refused");
                let refund_key = Uuid::new_v4();
                if !self
                    .repo
                    .record_kitchen_refusal(lease, &reason, refund_key)
                    .await?
                {
                    return Ok(None);
                }
                tracing::warn!(order_id = %id, status, %reason,
                    "the kitchen refused the order; it is cancelled and its refund owed");
                Err(LifecycleError::KitchenRejected { reason })
            }
            Err(error) => {
                tracing::warn!(order_id = %id, %error, "schedule failed; the order stays paid");
                self.metrics
                    .upstream_call(Service::Kitchen.name(), error.kind());
                let unsent = error.nothing_sent();
                self.defer(lease, self.timing.retry_ms(tries), true, unsent)
                    .await;
                Err(LifecycleError::Upstream {
                    service: Service::Kitchen,
                    error,
                })
            }
        }
    }
}
