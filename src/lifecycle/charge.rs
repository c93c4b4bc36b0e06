//! Paying for an order: charging it, then having the kitchen schedule it.
//! The charge is where money could be taken twice or lost, so it goes
//! through a payment attempt committed before payments is called, and is
//! sent again with the same key until payments settles it; only a definite
//! decline lets a later pay make a new key.

use std::time::Duration;

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
    /// reconciler settles it (and schedules it once paid), asking payments
    /// again in `retry_in`.
    Pending { order: Order, retry_in: Duration },
}

/// Payments' answer to one attempt.
pub(super) enum Verdict {
    Paid(Uuid),
    Declined(Uuid),
    Pending(Uuid),
    /// No answer, or one outside the contract: the outcome is unknown
    /// (unless the request never left).
    Lost(UpstreamError),
    /// Not asked: the attempt was sent before under a key this old, past
    /// what payments remembers. The order now waits for an operator.
    KeyExpired,
}

/// What became of the charge step of a pay.
enum Charged {
    /// By this request, which still holds the lease to schedule.
    Now(Lease),
    /// By another request or the reconciler, before this one.
    Before,
    /// Payments has not decided; asked again in this long.
    Pending(Duration),
}

impl OrderLifecycle {
    /// Charges (unless already charged), then has the kitchen schedule.
    pub async fn pay(&self, owner: &str, id: OrderId) -> Result<Paid> {
        let state = self.repo.lifecycle_state(owner, id).await?;
        let step = state.status.payment_step();
        if super::paid_and_moved_on(&state) {
            // A retry of a pay whose charge went through: it did happen.
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
                Charged::Pending(retry_in) => {
                    let order = self.repo.get(owner, id).await?;
                    return Ok(Paid::Pending { order, retry_in });
                }
            },
            _ => None,
        };
        self.schedule(kitchen, owner, id, lease).await?;
        Ok(Paid::Scheduled(self.repo.get(owner, id).await?))
    }

    /// `created` → `paid`, through an attempt committed before the call.
    async fn charge(&self, payments: &dyn Payments, owner: &str, id: OrderId) -> Result<Charged> {
        let mut looks = 0;
        let claim = loop {
            let key = Uuid::new_v4();
            let lease_ms = self.timing.lease_ms();
            if let Some(claim) = self.repo.begin_charge(owner, id, lease_ms, key).await? {
                break claim;
            }
            // Not held, still `created`, its attempt open: this pay's to
            // take up, under the attempt's key.
            let freed =
                |err: &LifecycleError| matches!(err, LifecycleError::PaymentUnsettled { .. });
            let goal = (Action::Pay, Some(OrderStatus::Paid));
            if !self
                .claim_again((owner, id), goal, &mut looks, freed)
                .await?
            {
                return Ok(Charged::Before);
            }
        };
        match self.ask_payments(payments, &claim).await {
            Verdict::Paid(payment_id) => {
                let kept = self
                    .repo
                    .record_paid(claim, payment_id, Some(self.timing.lease_ms()))
                    .await
                    .map_err(|err| {
                        tracing::error!(order_id = %id, %payment_id, attempt = %claim.key, error = %err,
                            "charge went through but could not be recorded; the reconciler will record it");
                        LifecycleError::ChargeUnrecorded(err)
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
                let retry_ms = self
                    .keep_open(&claim, AttemptState::Pending, Some(payment_id), 0)
                    .await?;
                let retry_in = Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0));
                Ok(Charged::Pending(retry_in))
            }
            Verdict::Lost(error) => Err(self.charge_lost(&claim, error, 0).await),
            Verdict::KeyExpired => Err(LifecycleError::KeyExpired),
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
        if let Some(age) = self.forgotten_key(claim.fresh, claim.key_made) {
            self.key_expired(claim, age).await;
            return Verdict::KeyExpired;
        }
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
            // Never asked (see above): nothing to count.
            Verdict::KeyExpired => return verdict,
        };
        self.metrics
            .upstream_call(Service::Payments.name(), outcome);
        verdict
    }

    /// How old `claim`-like key is, made at `made` and already sent unless
    /// `fresh`, when that is past what payments remembers.
    pub(super) fn forgotten_key(
        &self,
        fresh: bool,
        made: time::OffsetDateTime,
    ) -> Option<Duration> {
        let age = time::OffsetDateTime::now_utc() - made;
        let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
        (!fresh && age >= self.timing.payment_key_ttl).then_some(age)
    }

    /// The charge `claim` is not sent again under its `age`-old key: the
    /// order is raised for an operator, and let go.
    async fn key_expired(&self, claim: &ChargeClaim, age: Duration) {
        let id = claim.lease.order_id;
        let why = forgotten_key_reason("charge", age, self.timing.payment_key_ttl);
        match self.repo.raise_order(id, &why).await {
            Ok(true) => {
                self.metrics.reconciled("charge", "needs_attention");
                tracing::error!(kind = "charge", %id, attempt = %claim.key, why,
                    "needs attention: an operator must end it");
            }
            Ok(false) => {}
            Err(err) => tracing::error!(kind = "charge", %id, why, error = %err,
                "needs attention, and could not be raised; will try again"),
        }
        self.release(claim.lease).await;
    }

    /// The attempt stays open (pending, or unknown after a lost answer),
    /// due again after a backoff (returned, in ms), and the order is let go.
    pub(super) async fn keep_open(
        &self,
        claim: &ChargeClaim,
        state: AttemptState,
        payment_id: Option<Uuid>,
        tries: u32,
    ) -> Result<i64> {
        let retry_ms = self.timing.retry_ms(tries);
        self.repo
            .record_open(claim.key, state, payment_id, retry_ms)
            .await?;
        self.release(claim.lease).await;
        Ok(retry_ms)
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
            return Err(LifecycleError::Busy(Some(Activity::Paying), None));
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
                    return Err(LifecycleError::Busy(Some(Activity::Paying), None));
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
            Verdict::KeyExpired => Err(LifecycleError::KeyExpired),
        }
    }
}

/// Why a `kind` ("charge" or "refund") sent under an `age`-old key waits
/// for an operator.
pub(super) fn forgotten_key_reason(kind: &str, age: Duration, ttl: Duration) -> String {
    format!(
        "its key is {} s old, past PAYMENT_KEY_TTL_SECS ({} s): payments may have forgotten \
         it and would take it for a new {kind}; ask payments what became of it, then end \
         the item",
        age.as_secs(),
        ttl.as_secs()
    )
}
