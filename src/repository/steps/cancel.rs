//! Cancelling an order, and the refunds that owes. A cancellation of a
//! charged order owes its refund in the same transaction, so that no
//! cancelled charge is ever forgotten; the reconciler then delivers each
//! refund under its own key, which payments honours once, however often it
//! is sent.

use uuid::Uuid;

use super::charge::{ATTEMPT_DECLINED, ATTEMPT_PAID, AttemptState};
use super::{DueRefund, Lease, UntilRow, held, lease_lost};
use crate::db::Database;
use crate::domain::{EventKind, OrderId, OrderStatus};
use crate::repository::codec::{Id, Time};
use crate::repository::outbox::record_event;
use crate::repository::{OrdersRepository, RepositoryError, Result, sqlite};

/// What became of a refund call.
#[derive(Debug, Clone, Copy)]
pub enum RefundOutcome {
    Refunded {
        refund_id: Uuid,
    },
    /// Asked again after `retry_ms` with the same key.
    Pending {
        refund_id: Uuid,
        retry_ms: i64,
    },
    /// No answer: tried again after `retry_ms` with the same key.
    Failed {
        retry_ms: i64,
    },
}

/// Cancels a `created` order nobody holds and nobody is paying for (see
/// `OrderStatus::cancellation`; a unit test keeps the two in step).
const CANCEL_CREATED: &str = "UPDATE orders SET status = 'cancelled', \
     updated = (SELECT now FROM clock), next_check = NULL \
     WHERE id = $1 AND owner = $2 AND status = 'created' \
     AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
     AND NOT EXISTS (SELECT 1 FROM payment_attempts a \
         WHERE a.order_id = orders.id AND a.state IN ('unknown', 'pending'))";

/// Cancels a `paid` order that nobody holds and that no schedule request
/// can have reached, returning the charge to refund.
const CANCEL_PAID: &str = "UPDATE orders SET status = 'cancelled', \
     updated = (SELECT now FROM clock), next_check = NULL \
     WHERE id = $1 AND owner = $2 AND status = 'paid' AND NOT schedule_sent \
     AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
     RETURNING payment_id";

/// Cancels the order in status `$2` under the lease `$3`, returning the
/// charge to refund (NULL when nothing was charged).
const CANCEL_HELD: &str = "UPDATE orders SET status = 'cancelled', payment_id = COALESCE($4, payment_id), \
     updated = (SELECT now FROM clock), claimed_until = NULL, next_check = NULL \
     WHERE id = $1 AND status = $2 AND claimed_until = $3 \
     RETURNING payment_id";

/// A refund owed for the charge `$2` of order `$3`, once per (order,
/// charge): a second cancel path reaching the same charge finds it owed
/// already, and another order answered with the same payment id owes its
/// own. (`WHERE TRUE` keeps
/// SQLite from reading `ON CONFLICT` as part of the `SELECT`.)
pub(super) const OWE_REFUND: &str = "INSERT INTO refunds (key, payment_id, order_id, state, created, updated, next_try, traceparent) \
     SELECT $1, $2, $3, 'owed', now, now, now, $4 FROM clock WHERE TRUE \
     ON CONFLICT (order_id, payment_id) DO NOTHING";

/// The end of every cancellation in its transaction `$tx`: the refund of
/// the charge `$charged` (an `Option<Id>`, `None` when nothing was charged)
/// owed under `$key`, and the order's `order.cancelled` event.
macro_rules! cancelled_owing {
    ($repo:expr, $tx:expr, $order:expr, $charged:expr, $key:expr) => {
        if let Some(payment_id) = $charged {
            sqlx::query($crate::repository::steps::cancel::OWE_REFUND)
                .bind($crate::repository::codec::Id($key))
                .bind(payment_id)
                .bind($crate::repository::codec::Id($order))
                .bind($crate::trace_context::current())
                .execute(&mut *$tx)
                .await?;
        }
        $crate::repository::outbox::record_event!(
            $repo,
            $tx,
            $order,
            $crate::domain::EventKind::Status($crate::domain::OrderStatus::Cancelled)
        );
    };
}
pub(super) use cancelled_owing;

const RENEW_REFUND: &str = "UPDATE refunds SET claimed_until = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock) \
     WHERE key = $1 AND claimed_until = $2 AND claimed_until > (SELECT now FROM clock) \
     RETURNING claimed_until";

const REFUND_DONE: &str = "UPDATE refunds SET state = 'refunded', refund_id = $2, \
     updated = (SELECT now FROM clock), claimed_until = NULL \
     WHERE key = $1 AND claimed_until = $3";

/// The refund stays owed (`$2`: `owed` or `pending`), tried again in `$4` ms.
const REFUND_OPEN: &str = "UPDATE refunds SET state = $2, refund_id = COALESCE($5, refund_id), \
     tries = tries + 1, updated = (SELECT now FROM clock), claimed_until = NULL, \
     next_try = (SELECT now + CAST($4 AS BIGINT) * ms FROM clock) \
     WHERE key = $1 AND claimed_until = $3";

impl OrdersRepository {
    /// Cancels a `created` order that nobody holds or pays for.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "cancel_created", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "cancel_created", order.id = %id))]
    pub async fn cancel_created(&self, owner: &str, id: OrderId) -> Result<bool> {
        on_backend!(&self.db, transaction, async |tx| {
            let done = sqlx::query(CANCEL_CREATED)
                .bind(Id(id))
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 1 {
                record_event!(self, tx, id, EventKind::Status(OrderStatus::Cancelled));
            }
            Ok(done == 1)
        })
    }

    /// Cancels a `paid` order that no schedule request can have reached,
    /// with the refund of its charge owed in the same transaction.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "cancel_paid", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "cancel_paid", order.id = %id))]
    pub async fn cancel_paid(&self, owner: &str, id: OrderId, refund_key: Uuid) -> Result<bool> {
        held(on_backend!(&self.db, transaction, async |tx| {
            let charged: Option<Option<Id>> = sqlx::query_scalar(CANCEL_PAID)
                .bind(Id(id))
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(charged) = charged else {
                return Err(RepositoryError::LeaseLost);
            };
            cancelled_owing!(self, tx, id, charged, refund_key);
            Ok(())
        }))
    }

    /// Cancels the order held under `lease` in status `from`, settling its
    /// attempt (`attempt`: key and verdict) in the same transaction, and
    /// owes the refund of its charge, if it was charged. `false` when the
    /// lease was lost meanwhile (nothing is written).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "cancel_held", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "cancel_held", order.id = %lease.order_id))]
    pub async fn cancel_held(
        &self,
        lease: Lease,
        from: OrderStatus,
        attempt: Option<(Uuid, AttemptState, Uuid)>,
        refund_key: Uuid,
    ) -> Result<bool> {
        held(on_backend!(&self.db, transaction, async |tx| {
            let mut paid_now = None;
            if let Some((key, verdict, payment_id)) = attempt {
                let settle = if verdict == AttemptState::Paid {
                    paid_now = Some(Id(payment_id));
                    ATTEMPT_PAID
                } else {
                    ATTEMPT_DECLINED
                };
                let settled = sqlx::query(settle)
                    .bind(Id(key))
                    .bind(Id(payment_id))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                lease_lost(settled, ())?;
            }
            let charged: Option<Option<Id>> = sqlx::query_scalar(CANCEL_HELD)
                .bind(Id(lease.order_id))
                .bind(from.as_str())
                .bind(Time(lease.until))
                .bind(paid_now)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(charged) = charged else {
                return Err(RepositoryError::LeaseLost);
            };
            cancelled_owing!(self, tx, lease.order_id, charged, refund_key);
            Ok(())
        }))
    }

    /// A refund's lease extended by `lease_ms` from now, if it has not run out.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "renew_refund", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "renew_refund", order.id = %refund.order_id, payment.id = %refund.payment_id))]
    pub async fn renew_refund(
        &self,
        refund: &DueRefund,
        lease_ms: i64,
    ) -> Result<Option<DueRefund>> {
        let row: Option<UntilRow> = fetch!(&self.db, fetch_optional, RENEW_REFUND;
            Id(refund.key), Time(refund.until), lease_ms)?;
        Ok(row.map(|row| DueRefund {
            until: row.claimed_until.0,
            ..refund.clone()
        }))
    }

    /// Records what a refund call came to, under the refund's lease.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_refund", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_refund", order.id = %refund.order_id, payment.id = %refund.payment_id))]
    pub async fn record_refund(&self, refund: &DueRefund, outcome: RefundOutcome) -> Result<()> {
        let (key, until) = (Id(refund.key), Time(refund.until));
        match outcome {
            RefundOutcome::Refunded { refund_id } => {
                on_backend!(&self.db, transaction, async |tx| {
                    let done = sqlx::query(REFUND_DONE)
                        .bind(key)
                        .bind(Id(refund_id))
                        .bind(until)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if done == 1 {
                        record_event!(self, tx, refund.order_id, EventKind::Refunded);
                    }
                    Ok(done)
                })?
            }
            RefundOutcome::Pending {
                refund_id,
                retry_ms,
            } => {
                execute!(&self.db, REFUND_OPEN; key, "pending", until, retry_ms, Some(Id(refund_id)))?
            }
            RefundOutcome::Failed { retry_ms } => {
                execute!(&self.db, REFUND_OPEN; key, "owed", until, retry_ms, None::<Id>)?
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_cancel_matches_the_domain_rule() {
        use crate::domain::status::Cancellation;
        let direct: Vec<OrderStatus> = OrderStatus::directly_cancellable().collect();
        assert_eq!(direct, vec![OrderStatus::Created, OrderStatus::Paid]);
        assert_eq!(OrderStatus::Created.cancellation(), Cancellation::Direct);
        assert!(CANCEL_CREATED.contains("status = 'created'"));
        assert!(CANCEL_PAID.contains("status = 'paid' AND NOT schedule_sent"));
    }
}
