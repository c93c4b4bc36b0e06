//! What the operator sees and does: the list of open and raised items,
//! trying an order's items again now, and ending a raised item by hand,
//! with the end stored (what, how, the operator's note, when) as an audit
//! trail.

use time::OffsetDateTime;
use uuid::Uuid;

use super::attention::raised;
use super::cancel::OWE_REFUND;
use crate::db::Database;
use crate::domain::{EventKind, OrderId, OrderStatus};
use crate::repository::codec::{Id, Time};
use crate::repository::outbox::record_event;
use crate::repository::rows::row;
use crate::repository::{OrdersRepository, Result, sqlite};

/// How an operator ended an item that needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The charge was refunded outside this service: the refund is settled.
    RefundedByHand,
    /// The charge was voided: no money moved, or it went back.
    ChargeVoided,
    /// The kitchen confirmed it will not make the order: it is cancelled
    /// and its charge refunded.
    KitchenConfirmedCancelled,
    /// The kitchen made the order after all: it is `dispatched`.
    MadeAnyway,
}

impl Resolution {
    pub const ALL: [Resolution; 4] = [
        Resolution::RefundedByHand,
        Resolution::ChargeVoided,
        Resolution::KitchenConfirmedCancelled,
        Resolution::MadeAnyway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::RefundedByHand => "refunded_by_hand",
            Resolution::ChargeVoided => "charge_voided",
            Resolution::KitchenConfirmedCancelled => "kitchen_confirmed_cancelled",
            Resolution::MadeAnyway => "made_anyway",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// An item that is open, or raised for an operator.
#[derive(Debug, Clone)]
pub struct StuckItem {
    pub order_id: OrderId,
    /// `charge`, `refund`, `schedule` or `kitchen`.
    pub kind: &'static str,
    /// The item's own state (`unknown`, `pending`, `owed`, `paid`, ...).
    pub state: String,
    /// Raised for an operator: no longer retried.
    pub needs_attention: bool,
    pub attempts: u32,
    pub age_secs: f64,
    pub last_error: Option<String>,
    /// When the reconciler tries it next; `None` while it is raised.
    pub next_try: Option<OffsetDateTime>,
}

macro_rules! stuck_columns {
    ($raised:expr) => {
        concat!(
            "o.last_error, o.attention, ",
            $raised,
            " AS needs_attention, k.now"
        )
    };
}

const STUCK_CHARGES: &str = concat!(
    "SELECT o.id AS order_id, a.state, a.tries AS attempts, a.created AS since, \
     a.next_try, ",
    stuck_columns!(raised!("o")),
    " FROM payment_attempts a JOIN orders o ON o.id = a.order_id, clock k \
     WHERE a.state IN ('unknown', 'pending') AND o.status = 'created'"
);

const STUCK_KITCHEN: &str = concat!(
    "SELECT o.id AS order_id, o.status AS state, o.checks AS attempts, \
     CASE WHEN o.status = 'paid' THEN o.updated ELSE COALESCE(o.failing_since, o.updated) END AS since, \
     o.next_check AS next_try, ",
    stuck_columns!(raised!("o")),
    " FROM orders o, clock k WHERE o.status = 'paid' \
     OR (o.status = 'progress' AND (o.failing_since IS NOT NULL OR ",
    raised!("o"),
    "))"
);

const STUCK_REFUNDS: &str = "SELECT r.order_id, r.state, r.tries AS attempts, r.created AS since, \
     r.next_try, r.last_error, r.attention, (r.attention IS NOT NULL) AS needs_attention, k.now \
     FROM refunds r, clock k WHERE r.state <> 'refunded'";

row!(StuckRow {
    order_id: Id,
    state: String,
    attempts: i32,
    since: Time,
    next_try: Option<Time>,
    last_error: Option<String>,
    attention: Option<String>,
    needs_attention: Option<bool>,
    now: Time,
});

/// The last failure of an order's open step.
const NOTE_ORDER_ERROR: &str = "UPDATE orders SET last_error = $2 WHERE id = $1";
const NOTE_REFUND_ERROR: &str = "UPDATE refunds SET last_error = $2 WHERE key = $1";

/// Try again now: the raise lapses and every open item of the order is due.
const RETRY_ORDER: &str = "UPDATE orders SET attention = NULL, attention_status = NULL, \
     next_check = CASE WHEN status IN ('paid', 'progress') THEN (SELECT now FROM clock) \
         ELSE next_check END \
     WHERE id = $1";
const RETRY_ATTEMPTS: &str = "UPDATE payment_attempts SET next_try = (SELECT now FROM clock) \
     WHERE order_id = $1 AND state IN ('unknown', 'pending')";
const RETRY_REFUNDS: &str = "UPDATE refunds SET attention = NULL, next_try = (SELECT now FROM clock) \
     WHERE order_id = $1 AND state <> 'refunded'";

/// The raised refund of order `$1` is settled by hand.
const REFUND_SETTLED_BY_HAND: &str = "UPDATE refunds SET state = 'refunded', attention = NULL, \
     updated = (SELECT now FROM clock), claimed_until = NULL \
     WHERE order_id = $1 AND attention IS NOT NULL AND state <> 'refunded'";

/// The raised open charge of the `created` order `$1` was voided.
const CHARGE_VOIDED: &str = concat!(
    "UPDATE payment_attempts SET state = 'declined', updated = (SELECT now FROM clock) \
     WHERE order_id = $1 AND state IN ('unknown', 'pending') \
     AND EXISTS (SELECT 1 FROM orders o WHERE o.id = $1 AND o.status = 'created' AND ",
    raised!("o"),
    ")"
);

const ATTENTION_ENDED: &str =
    "UPDATE orders SET attention = NULL, attention_status = NULL WHERE id = $1";

/// The raised `paid` or `progress` order `$1`, nobody holding it, is moved
/// to `$2` (`cancelled` with the reason `$3`, or `dispatched`); returns the
/// charge to refund and the status it was in.
const KITCHEN_ENDED: &str = concat!(
    "UPDATE orders SET status = $2, cancel_reason = $3, attention = NULL, \
     attention_status = NULL, updated = (SELECT now FROM clock), next_check = NULL \
     WHERE id = $1 AND status IN ('paid', 'progress') AND ",
    raised!("orders"),
    " AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
     RETURNING payment_id"
);

const KITCHEN_KIND: &str = "SELECT status FROM orders WHERE id = $1";

const RECORD_RESOLUTION: &str = "INSERT INTO resolutions (id, order_id, kind, resolution, note, at) \
     SELECT $1, $2, $3, $4, $5, now FROM clock";

fn stuck_item(row: StuckRow, kind: &'static str) -> StuckItem {
    let needs_attention = row.needs_attention == Some(true);
    StuckItem {
        order_id: row.order_id.0,
        kind,
        state: row.state,
        needs_attention,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        age_secs: (row.now.0 - row.since.0).as_seconds_f64().max(0.0),
        last_error: if needs_attention {
            row.attention.or(row.last_error)
        } else {
            row.last_error
        },
        next_try: if needs_attention {
            None
        } else {
            row.next_try.map(|Time(at)| at)
        },
    }
}

impl OrdersRepository {
    /// Every open or raised item, oldest first; of one order only, when
    /// `order` is given.
    pub async fn stuck(&self, order: Option<OrderId>) -> Result<Vec<StuckItem>> {
        let charges: Vec<StuckRow> = fetch!(&self.db, fetch_all, STUCK_CHARGES;)?;
        let kitchen: Vec<StuckRow> = fetch!(&self.db, fetch_all, STUCK_KITCHEN;)?;
        let refunds: Vec<StuckRow> = fetch!(&self.db, fetch_all, STUCK_REFUNDS;)?;
        let mut items: Vec<StuckItem> = charges
            .into_iter()
            .map(|row| stuck_item(row, "charge"))
            .chain(kitchen.into_iter().map(|row| {
                let kind = if row.state == "paid" {
                    "schedule"
                } else {
                    "kitchen"
                };
                stuck_item(row, kind)
            }))
            .chain(refunds.into_iter().map(|row| stuck_item(row, "refund")))
            .filter(|item| order.is_none_or(|id| item.order_id == id))
            .collect();
        items.sort_by(|a, b| b.age_secs.total_cmp(&a.age_secs));
        Ok(items)
    }

    /// Keeps the last failure of an order's open step, for the operator.
    pub async fn note_order_error(&self, id: OrderId, why: &str) -> Result<()> {
        execute!(&self.db, NOTE_ORDER_ERROR; Id(id), why)?;
        Ok(())
    }

    /// Keeps the last failure of a refund, for the operator.
    pub async fn note_refund_error(&self, key: Uuid, why: &str) -> Result<()> {
        execute!(&self.db, NOTE_REFUND_ERROR; Id(key), why)?;
        Ok(())
    }

    /// Every open item of the order is due now, raised ones included.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "retry_now", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "retry_now", order.id = %id))]
    pub async fn retry_now(&self, id: OrderId) -> Result<()> {
        on_backend!(&self.db, transaction, async |tx| {
            for sql in [RETRY_ORDER, RETRY_ATTEMPTS, RETRY_REFUNDS] {
                sqlx::query(sql).bind(Id(id)).execute(&mut *tx).await?;
            }
            Ok(())
        })
    }

    /// Ends the raised item of order `id` that `resolution` can end, and
    /// stores the end with `note`; returns the item's kind, or `None` when
    /// the order has no raised item this resolution ends.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "resolve", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "resolve", order.id = %id))]
    pub async fn resolve(
        &self,
        id: OrderId,
        resolution: Resolution,
        note: &str,
    ) -> Result<Option<&'static str>> {
        on_backend!(&self.db, transaction, async |tx| {
            let mut kind = None;
            if matches!(
                resolution,
                Resolution::RefundedByHand | Resolution::ChargeVoided
            ) {
                let done = sqlx::query(REFUND_SETTLED_BY_HAND)
                    .bind(Id(id))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if done > 0 {
                    kind = Some("refund");
                    record_event!(self, tx, id, EventKind::Refunded);
                }
            }
            if kind.is_none() && resolution == Resolution::ChargeVoided {
                let done = sqlx::query(CHARGE_VOIDED)
                    .bind(Id(id))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if done > 0 {
                    sqlx::query(ATTENTION_ENDED)
                        .bind(Id(id))
                        .execute(&mut *tx)
                        .await?;
                    kind = Some("charge");
                }
            }
            if matches!(
                resolution,
                Resolution::KitchenConfirmedCancelled | Resolution::MadeAnyway
            ) {
                let status: Option<String> = sqlx::query_scalar(KITCHEN_KIND)
                    .bind(Id(id))
                    .fetch_optional(&mut *tx)
                    .await?;
                let (to, reason) = if resolution == Resolution::MadeAnyway {
                    ("dispatched", None)
                } else {
                    (
                        "cancelled",
                        Some("the kitchen confirmed it will not make it"),
                    )
                };
                let charged: Option<Option<Id>> = sqlx::query_scalar(KITCHEN_ENDED)
                    .bind(Id(id))
                    .bind(to)
                    .bind(reason)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(charged) = charged {
                    let ended = if reason.is_some() {
                        OrderStatus::Cancelled
                    } else {
                        OrderStatus::Dispatched
                    };
                    if let (Some(payment_id), Some(_)) = (charged, reason) {
                        sqlx::query(OWE_REFUND)
                            .bind(Id(Uuid::new_v4()))
                            .bind(payment_id)
                            .bind(Id(id))
                            .bind(crate::trace_context::current())
                            .execute(&mut *tx)
                            .await?;
                    }
                    record_event!(self, tx, id, EventKind::Status(ended));
                    kind = Some(if status.as_deref() == Some("paid") {
                        "schedule"
                    } else {
                        "kitchen"
                    });
                }
            }
            if let Some(kind) = kind {
                sqlx::query(RECORD_RESOLUTION)
                    .bind(Id(Uuid::new_v4()))
                    .bind(Id(id))
                    .bind(kind)
                    .bind(resolution.as_str())
                    .bind(note)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(kind)
        })
    }
}
