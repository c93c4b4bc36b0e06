//! The kitchen's part of an order. A schedule request is recorded as
//! possibly sent before it leaves, because from then on only the kitchen
//! can say whether the order is being made, and a `paid` order it may be
//! making must not be cancelled behind its back; an order becomes
//! `dispatched` only once the kitchen says it is finished.

use uuid::Uuid;

use super::cancel::cancelled_owing;
use super::{Lease, held};
use crate::db::Database;
use crate::domain::{EventKind, OrderStatus};
use crate::repository::codec::{Id, Time};
use crate::repository::outbox::record_event;
use crate::repository::{OrdersRepository, RepositoryError, Result, sqlite};

/// A schedule request is about to leave: from now on only the kitchen can
/// say whether the order is being made.
const SCHEDULE_SENT: &str = "UPDATE orders SET schedule_sent = TRUE \
     WHERE id = $1 AND claimed_until = $2 AND claimed_until > (SELECT now FROM clock)";

/// `paid` → `progress` with the kitchen's schedule `$2`, under the lease
/// `$3`, kept until `$4`; the kitchen is asked how it goes in `$5` ms.
const ORDER_SCHEDULED: &str = "UPDATE orders SET status = 'progress', schedule_id = $2, \
     updated = (SELECT now FROM clock), claimed_until = $4, \
     next_check = (SELECT now + CAST($5 AS BIGINT) * ms FROM clock), checks = 0, \
     failing_since = NULL \
     WHERE id = $1 AND status = 'paid' AND claimed_until = $3";

const ORDER_DISPATCHED: &str = "UPDATE orders SET status = 'dispatched', \
     updated = (SELECT now FROM clock), claimed_until = NULL, next_check = NULL \
     WHERE id = $1 AND status = 'progress' AND claimed_until = $2";

/// The kitchen refused to make the `paid` order held under the lease `$2`:
/// it is cancelled with the kitchen's reason `$3`, returning the charge to
/// refund. The kitchen will not make it, so no schedule is left in doubt.
const ORDER_REFUSED: &str = "UPDATE orders SET status = 'cancelled', cancel_reason = $3, \
     schedule_sent = FALSE, updated = (SELECT now FROM clock), claimed_until = NULL, \
     next_check = NULL \
     WHERE id = $1 AND status = 'paid' AND claimed_until = $2 \
     RETURNING payment_id";

impl OrdersRepository {
    /// The kitchen's final refusal: `paid` → `cancelled` with `reason`
    /// kept and the refund of the charge owed in the same transaction.
    /// `false` when the lease was lost meanwhile (nothing is written).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_kitchen_refusal", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_kitchen_refusal", order.id = %lease.order_id))]
    pub async fn record_kitchen_refusal(
        &self,
        lease: Lease,
        reason: &str,
        refund_key: Uuid,
    ) -> Result<bool> {
        held(on_backend!(&self.db, transaction, async |tx| {
            let charged: Option<Option<Id>> = sqlx::query_scalar(ORDER_REFUSED)
                .bind(Id(lease.order_id))
                .bind(Time(lease.until))
                .bind(reason)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(charged) = charged else {
                return Err(RepositoryError::LeaseLost);
            };
            cancelled_owing!(self, tx, lease.order_id, charged, refund_key);
            Ok(())
        }))
    }

    /// Records that a schedule request is about to reach the kitchen.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "mark_schedule_sent", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "mark_schedule_sent", order.id = %lease.order_id))]
    pub async fn mark_schedule_sent(&self, lease: Lease) -> Result<bool> {
        let marked = execute!(&self.db, SCHEDULE_SENT; Id(lease.order_id), Time(lease.until))?;
        Ok(marked == 1)
    }

    /// `paid` → `progress`; the lease is kept for `keep_ms` (to cancel) or
    /// dropped. `None` when the lease was lost meanwhile.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_scheduled", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_scheduled", order.id = %lease.order_id, kitchen.schedule_id = %schedule_id))]
    pub async fn record_scheduled(
        &self,
        lease: Lease,
        schedule_id: Uuid,
        poll_ms: i64,
        keep_ms: Option<i64>,
    ) -> Result<Option<Lease>> {
        let until: Option<Option<Time>> = on_backend!(&self.db, transaction, async |conn| {
            let keep: Option<Time> = match keep_ms {
                Some(ms) => Some(
                    sqlx::query_scalar("SELECT now + CAST($1 AS BIGINT) * ms FROM clock")
                        .bind(ms)
                        .fetch_one(&mut *conn)
                        .await?,
                ),
                None => None,
            };
            let done = sqlx::query(ORDER_SCHEDULED)
                .bind(Id(lease.order_id))
                .bind(Id(schedule_id))
                .bind(Time(lease.until))
                .bind(keep)
                .bind(poll_ms)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if done == 1 {
                record_event!(
                    self,
                    conn,
                    lease.order_id,
                    EventKind::Status(OrderStatus::Progress)
                );
            }
            Ok((done == 1).then_some(keep))
        })?;
        Ok(until.map(|keep| Lease {
            order_id: lease.order_id,
            until: keep.map_or(lease.until, |Time(until)| until),
        }))
    }

    /// The kitchen finished the order: `progress` → `dispatched`.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_dispatched", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_dispatched", order.id = %lease.order_id))]
    pub async fn record_dispatched(&self, lease: Lease) -> Result<bool> {
        on_backend!(&self.db, transaction, async |tx| {
            let done = sqlx::query(ORDER_DISPATCHED)
                .bind(Id(lease.order_id))
                .bind(Time(lease.until))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 1 {
                record_event!(
                    self,
                    tx,
                    lease.order_id,
                    EventKind::Status(OrderStatus::Dispatched)
                );
            }
            Ok(done == 1)
        })
    }
}
