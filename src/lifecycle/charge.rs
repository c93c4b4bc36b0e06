//! Paying for an order: charging it, then having the kitchen schedule it.
//! The charge is where money could be taken twice or lost, so it goes
//! through a payment attempt committed before payments is called, and is
//! sent again with the same key until payments settles it; only a definite
//! decline lets a later pay make a new key.

use uuid::Uuid;

use super::{Action, Activity, LifecycleError, OrderLifecycle, Result};
use crate::domain::status::PaymentStep;
use crate::domain::{Order, OrderId, OrderStatus};
use crate::repository::{AttemptState, ChargeClaim, Lease};
use crate::upstream::{PaymentStatus, Payments, Service, UpstreamError};

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
pub(super) enum Verdict {
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

impl OrderLifecycle {
    /// Charges (unless already charged), then has the kitchen schedule.
    pub async fn pay(&self, owner: &str, id: OrderId) -> Result<Paid> {
        let state = self.repo.lifecycle_state(owner, id).await?;
        let step = state.status.payment_step();
        if step == PaymentStep::Refused && state.charged && state.status != OrderStatus::Cancelled {
            // A retry of a pay whose charge went through (settled and
            // scheduled since, by the reconciler or another request): the
            // pay did happen, so it is answered as done.
            return Ok(Paid::Scheduled(self.repo.get(owner, id).await?));
        }
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
    pub(super) async fn ask_payments(
        &self,
        payments: &dyn Payments,
        claim: &ChargeClaim,
    ) -> Verdict {
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
    pub(super) async fn keep_open(
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

    /// Asks payments again about the order's open attempt, for a delete or
    /// a replace. `Ok` once it is settled; a charge that went through is
    /// not made into a paid order (the customer asked to delete or change
    /// it): the order is cancelled with the refund owed, and is never
    /// scheduled. An error says why it is still open.
    pub(super) async fn settle_open_attempt(&self, owner: &str, id: OrderId) -> Result<()> {
        let payments = self.payments()?;
        let lease_ms = self.timing.lease_ms();
        let Some(claim) = self.repo.claim_open_attempt(owner, id, lease_ms).await? else {
            return Err(LifecycleError::Busy(Some(Activity::Paying)));
        };
        match self.ask_payments(payments, &claim).await {
            Verdict::Paid(payment_id) => {
                let settled = (claim.key, AttemptState::Paid, payment_id);
                let cancelled = self
                    .repo
                    .cancel_held(
                        claim.lease,
                        OrderStatus::Created,
                        Some(settled),
                        Uuid::new_v4(),
                    )
                    .await?;
                if !cancelled {
                    return Err(LifecycleError::Busy(Some(Activity::Paying)));
                }
                tracing::warn!(order_id = %id, %payment_id,
                    "the charge went through while the order was being deleted or changed; \
                     it is cancelled and its refund owed");
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
}
