//! Work raised for an operator: an item no retry will settle (payments
//! refused a refund) or one unsettled for too long. A raised item is left
//! out of the reconciler's claims and shows in the metrics until an
//! operator ends it.

use uuid::Uuid;

use crate::db::Database;
use crate::domain::{EventKind, OrderId};
use crate::repository::codec::Id;
use crate::repository::outbox::record_event;
use crate::repository::{OrdersRepository, Result, sqlite};

/// Raises the open step of order `$1` (its open charge, its schedule, its
/// kitchen follow-up) with the reason `$2`, once.
const RAISE_ORDER: &str = "UPDATE orders SET attention = $2, attention_status = status, \
     attention_since = (SELECT now FROM clock) \
     WHERE id = $1 AND (attention IS NULL OR attention_status <> status)";

/// An order whose open step is raised (in SQL, on the row `o`): the raise
/// lapses once the order moves on from the status it was raised in.
macro_rules! raised {
    ($o:literal) => {
        concat!(
            "(",
            $o,
            ".attention IS NOT NULL AND ",
            $o,
            ".attention_status = ",
            $o,
            ".status)"
        )
    };
}
pub(crate) use raised;

/// Raises the unsettled refund `$1` with the reason `$2`, once.
const RAISE_REFUND: &str = "UPDATE refunds SET attention = $2, \
     attention_since = (SELECT now FROM clock) \
     WHERE key = $1 AND state <> 'refunded' AND attention IS NULL RETURNING order_id";

impl OrdersRepository {
    /// The order's open step needs an operator; `false` when it was
    /// raised already.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "raise_order", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "raise_order", order.id = %id))]
    pub async fn raise_order(&self, id: OrderId, reason: &str) -> Result<bool> {
        on_backend!(&self.db, transaction, async |tx| {
            let raised = sqlx::query(RAISE_ORDER)
                .bind(Id(id))
                .bind(reason)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if raised == 1 {
                record_event!(self, tx, id, EventKind::NeedsAttention);
            }
            Ok(raised == 1)
        })
    }

    /// The refund under `key` needs an operator; `false` when it was
    /// raised already or is settled.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "raise_refund", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "raise_refund", refund.key = %key))]
    pub async fn raise_refund(&self, key: Uuid, reason: &str) -> Result<bool> {
        on_backend!(&self.db, transaction, async |tx| {
            let order: Option<Id> = sqlx::query_scalar(RAISE_REFUND)
                .bind(Id(key))
                .bind(reason)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(Id(order)) = order {
                record_event!(self, tx, order, EventKind::NeedsAttention);
            }
            Ok(order.is_some())
        })
    }
}
