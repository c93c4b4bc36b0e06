//! Moving orders through their lifecycle: paying, cancelling, and the
//! changes (replace, delete) that the lifecycle allows or refuses.
//!
//! Each call to payments or kitchen is made under a lease on the order (a
//! conditional update sets `claimed_until`), so of two concurrent requests
//! only one calls upstream and the other answers 409 at once. What the call
//! achieved is recorded by another conditional update, step by step: a
//! charge that went through is recorded as `paid` before the kitchen is
//! asked, so a kitchen failure never loses it and a retried pay only
//! schedules. A lease left by a crashed pod expires by itself.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

mod error;

pub use error::{Action, Activity, LifecycleError};

use crate::domain::order::now_micros;
use crate::domain::status::{Cancellation, PaymentStep};
use crate::domain::{NewOrder, Order, OrderId, OrderStatus};
use crate::metrics::Metrics;
use crate::repository::{Completion, Lease, OrdersRepository, RepositoryError};
use crate::upstream::{Kitchen, PaymentStatus, Payments, Service, UpstreamError};

type Result<T, E = LifecycleError> = std::result::Result<T, E>;

/// Moves orders through their lifecycle.
pub struct OrderLifecycle {
    repo: OrdersRepository,
    payments: Option<Arc<dyn Payments>>,
    kitchen: Option<Arc<dyn Kitchen>>,
    /// How long a lease lasts: longer than any upstream call may take.
    lease: Duration,
    metrics: Arc<Metrics>,
}

impl OrderLifecycle {
    /// `upstream_timeout` bounds every call; leases outlast it with margin.
    pub fn new(
        repo: OrdersRepository,
        payments: Option<Arc<dyn Payments>>,
        kitchen: Option<Arc<dyn Kitchen>>,
        upstream_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            repo,
            payments,
            kitchen,
            lease: upstream_timeout * 2 + Duration::from_secs(5),
            metrics,
        }
    }

    /// Charges (unless already charged), then has the kitchen schedule.
    pub async fn pay(&self, owner: &str, id: OrderId) -> Result<Order> {
        let state = self.repo.lifecycle_state(owner, id).await?;
        let step = state.status.payment_step();
        if step == PaymentStep::Refused {
            return Err(LifecycleError::Refused {
                action: Action::Pay,
                status: state.status,
            });
        }
        // Both services are needed: refuse before charging, not after.
        let payments = self
            .payments
            .as_ref()
            .ok_or(LifecycleError::NotConfigured(Service::Payments))?;
        let kitchen = self
            .kitchen
            .as_ref()
            .ok_or(LifecycleError::NotConfigured(Service::Kitchen))?;
        let lease = match step {
            PaymentStep::Charge => self.charge(payments.as_ref(), owner, id).await?,
            _ => None,
        };
        self.schedule(kitchen.as_ref(), owner, id, lease).await
    }

    /// `created` → `paid`. Returns once the order is `paid`: by this request,
    /// which then still holds the lease for scheduling (so nothing can cancel
    /// or change the order between the charge and the schedule), or by one
    /// that got there first (`None`).
    async fn charge(
        &self,
        payments: &dyn Payments,
        owner: &str,
        id: OrderId,
    ) -> Result<Option<Lease>> {
        let Some(lease) = self.claim(owner, id, OrderStatus::Created).await? else {
            self.after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Paid))
                .await?;
            return Ok(None);
        };
        let payment = match payments.charge(id).await {
            Ok(payment) => {
                let outcome = match payment.status {
                    PaymentStatus::Paid => "ok",
                    PaymentStatus::Invalid => "declined",
                    PaymentStatus::Pending => "pending",
                };
                self.metrics
                    .upstream_call(Service::Payments.name(), outcome);
                payment
            }
            Err(err) => return Err(self.give_back(lease, Service::Payments, err).await),
        };
        match payment.status {
            PaymentStatus::Paid => {}
            PaymentStatus::Invalid => {
                self.release(lease).await;
                return Err(LifecycleError::Declined {
                    payment_id: payment.id,
                });
            }
            PaymentStatus::Pending => {
                self.release(lease).await;
                return Err(LifecycleError::Pending {
                    payment_id: payment.id,
                });
            }
        }
        // Logged before it is recorded: should recording fail, the log still
        // tells which charge went through.
        tracing::info!(order_id = %id, payment_id = %payment.id, "charge went through");
        let next = Lease {
            order_id: id,
            until: now_micros() + self.lease,
        };
        let recorded = self
            .repo
            .complete(Completion {
                lease,
                from: OrderStatus::Created,
                to: OrderStatus::Paid,
                payment_id: Some(payment.id),
                schedule_id: None,
                keep_until: Some(next.until),
            })
            .await
            .inspect_err(|err| {
                tracing::error!(order_id = %id, payment_id = %payment.id, error = %err,
                    "charge went through but could not be recorded");
            })?;
        if !recorded {
            // Our lease expired during the call and another request took
            // over; the charge is deduplicated by its idempotency key.
            tracing::error!(order_id = %id, payment_id = %payment.id,
                "charge went through but the order changed meanwhile; check for a refund");
            self.after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Paid))
                .await?;
            return Ok(None);
        }
        Ok(Some(next))
    }

    /// `paid` → `progress` with the kitchen's schedule id, under the lease
    /// the charge kept, or a new one.
    async fn schedule(
        &self,
        kitchen: &dyn Kitchen,
        owner: &str,
        id: OrderId,
        lease: Option<Lease>,
    ) -> Result<Order> {
        let lease = match lease {
            Some(lease) => lease,
            None => match self.claim(owner, id, OrderStatus::Paid).await? {
                Some(lease) => lease,
                None => {
                    self.after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Progress))
                        .await?;
                    return Ok(self.repo.get(owner, id).await?);
                }
            },
        };
        let order = self.repo.get(owner, id).await?;
        let schedule_id = match kitchen.schedule(id, &order.items).await {
            Ok(schedule_id) => {
                self.metrics.upstream_call(Service::Kitchen.name(), "ok");
                schedule_id
            }
            Err(err) => return Err(self.give_back(lease, Service::Kitchen, err).await),
        };
        let recorded = self
            .repo
            .complete(Completion {
                lease,
                from: OrderStatus::Paid,
                to: OrderStatus::Progress,
                payment_id: None,
                schedule_id: Some(schedule_id),
                keep_until: None,
            })
            .await?;
        if recorded {
            tracing::info!(order_id = %id, %schedule_id, "order scheduled");
        } else {
            tracing::warn!(order_id = %id, %schedule_id, "schedule recorded by another request");
            self.after_lost_claim(owner, id, Action::Pay, Some(OrderStatus::Progress))
                .await?;
        }
        Ok(self.repo.get(owner, id).await?)
    }

    /// Replaces the items of an order that is still `created`.
    pub async fn replace(&self, owner: &str, id: OrderId, order: &NewOrder) -> Result<Order> {
        self.repo
            .replace(owner, id, order)
            .await
            .map_err(|err| LifecycleError::refusal(Action::Replace, err))
    }

    /// Deletes an order unless it is paid for and not yet finished.
    pub async fn delete(&self, owner: &str, id: OrderId) -> Result<()> {
        self.repo
            .delete(owner, id)
            .await
            .map_err(|err| LifecycleError::refusal(Action::Delete, err))
    }

    /// Cancels directly while nothing is being made; through the kitchen
    /// once it is.
    pub async fn cancel(&self, owner: &str, id: OrderId) -> Result<Order> {
        let state = self.repo.lifecycle_state(owner, id).await?;
        match state.status.cancellation() {
            Cancellation::Refused => Err(LifecycleError::Refused {
                action: Action::Cancel,
                status: state.status,
            }),
            Cancellation::Direct => {
                if self.repo.cancel_unclaimed(owner, id).await? {
                    tracing::info!(order_id = %id, "order cancelled");
                    return Ok(self.repo.get(owner, id).await?);
                }
                // Scheduled meanwhile: now only the kitchen can cancel it.
                let now = self.repo.lifecycle_state(owner, id).await?;
                if now.status == OrderStatus::Progress && now.claimed_until.is_none() {
                    return self.cancel_through_kitchen(owner, id).await;
                }
                self.after_lost_claim(owner, id, Action::Cancel, None)
                    .await?;
                Ok(self.repo.get(owner, id).await?)
            }
            Cancellation::ThroughKitchen => self.cancel_through_kitchen(owner, id).await,
        }
    }

    async fn cancel_through_kitchen(&self, owner: &str, id: OrderId) -> Result<Order> {
        let kitchen = self
            .kitchen
            .as_ref()
            .ok_or(LifecycleError::NotConfigured(Service::Kitchen))?;
        let Some(lease) = self.claim(owner, id, OrderStatus::Progress).await? else {
            self.after_lost_claim(owner, id, Action::Cancel, None)
                .await?;
            return Ok(self.repo.get(owner, id).await?);
        };
        let state = self.repo.lifecycle_state(owner, id).await?;
        let Some(schedule_id) = state.schedule_id else {
            self.release(lease).await;
            return Err(LifecycleError::Storage(RepositoryError::Corrupt(format!(
                "order {id} is in progress without a schedule"
            ))));
        };
        if let Err(err) = kitchen.cancel(schedule_id).await {
            return Err(self.give_back(lease, Service::Kitchen, err).await);
        }
        self.metrics.upstream_call(Service::Kitchen.name(), "ok");
        if self
            .repo
            .complete(Completion {
                lease,
                from: OrderStatus::Progress,
                to: OrderStatus::Cancelled,
                payment_id: None,
                schedule_id: None,
                keep_until: None,
            })
            .await?
        {
            tracing::info!(order_id = %id, %schedule_id, "order cancelled with the kitchen");
        } else {
            self.after_lost_claim(owner, id, Action::Cancel, None)
                .await?;
        }
        Ok(self.repo.get(owner, id).await?)
    }

    async fn claim(&self, owner: &str, id: OrderId, status: OrderStatus) -> Result<Option<Lease>> {
        let until: OffsetDateTime = now_micros() + self.lease;
        Ok(self.repo.claim(owner, id, status, until).await?)
    }

    /// Another request got there first. For a pay, fine if it reached
    /// `goal` (the next step goes on from there); otherwise a 409 saying why:
    /// of two racing requests only one wins.
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
        let busy = state
            .claimed_until
            .is_some_and(|until| until > now_micros());
        if busy {
            return Err(LifecycleError::Busy(Some(
                if state.status == OrderStatus::Progress {
                    Activity::Cancelling
                } else {
                    Activity::Paying
                },
            )));
        }
        Err(LifecycleError::Refused {
            action,
            status: state.status,
        })
    }

    /// Releases the lease after a failed call and says what failed. The order
    /// stays in the last state that truly happened.
    async fn give_back(
        &self,
        lease: Lease,
        service: Service,
        error: UpstreamError,
    ) -> LifecycleError {
        tracing::warn!(order_id = %lease.order_id, service = service.name(), error = %error, "upstream call failed");
        self.release(lease).await;
        self.metrics.upstream_call(service.name(), error.kind());
        LifecycleError::Upstream { service, error }
    }

    /// Best effort: an unreleased lease only delays a retry until it expires.
    async fn release(&self, lease: Lease) {
        if let Err(err) = self.repo.release(lease).await {
            tracing::warn!(order_id = %lease.order_id, error = %err, "could not release the lease");
        }
    }
}
