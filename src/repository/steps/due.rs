//! The reconciler's claims. Every replica runs the reconciler, so each
//! item it works on (an open attempt, an order for the kitchen, a refund
//! owed) is first taken under a lease, in one statement, and two replicas
//! never make the same call at once; and what stays open is counted, so
//! that nothing is left open unseen.

use time::OffsetDateTime;
use uuid::Uuid;

use super::attention::raised;
use super::{AttemptState, ChargeClaim, Lease};
use crate::db::Database;
use crate::domain::{OrderId, OrderStatus};
use crate::repository::codec::{Id, Time};
use crate::repository::rows::{self, row};
use crate::repository::{OrdersRepository, Result, sqlite};

/// An open attempt the reconciler claimed (with its order's lease).
#[derive(Debug, Clone)]
pub struct DueAttempt {
    pub owner: String,
    pub claim: ChargeClaim,
    pub state: AttemptState,
    pub created: OffsetDateTime,
    pub tries: u32,
    /// The `traceparent` of the request that opened the attempt.
    pub origin: Option<String>,
}

/// A `paid` order to schedule or a `progress` one to ask the kitchen about.
#[derive(Debug, Clone)]
pub struct DueOrder {
    pub owner: String,
    pub lease: Lease,
    pub status: OrderStatus,
    pub schedule_id: Option<Uuid>,
    /// When the order last changed: how long it has waited.
    pub since: OffsetDateTime,
    /// When the looks at it started failing in a row, if they do.
    pub failing_since: Option<OffsetDateTime>,
    pub checks: u32,
}

/// A refund owed, claimed by the reconciler.
#[derive(Debug, Clone)]
pub struct DueRefund {
    pub key: Uuid,
    pub payment_id: Uuid,
    pub order_id: OrderId,
    pub created: OffsetDateTime,
    pub tries: u32,
    pub until: OffsetDateTime,
    /// The `traceparent` of the request that owed the refund.
    pub origin: Option<String>,
}

/// What is still open, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    pub open_attempts: i64,
    pub oldest_attempt_secs: f64,
    pub refunds_owed: i64,
    pub oldest_refund_secs: f64,
    pub awaiting_kitchen: i64,
    pub oldest_awaiting_kitchen_secs: f64,
    /// `progress` orders whose follow-up with the kitchen keeps failing.
    pub kitchen_failing: i64,
    pub oldest_kitchen_failing_secs: f64,
    /// Items raised for an operator, of every kind.
    pub raised: i64,
    pub oldest_raised_secs: f64,
}

macro_rules! claim_due {
    ($table:literal, $key:literal, $pick:expr, $returning:literal, $lock:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " SET claimed_until = (SELECT now + CAST($2 AS BIGINT) * ms FROM clock) WHERE ",
            $key,
            " IN (",
            $pick,
            " LIMIT $1",
            $lock,
            ") AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) RETURNING ",
            $returning
        )
    };
}

/// Orders whose open attempt is due, oldest first. The lease condition is
/// repeated outside the pick: PostgreSQL re-checks it on a row another
/// replica claimed meanwhile (and `SKIP LOCKED` keeps it from waiting).
macro_rules! due_attempts {
    ($lock:literal) => {
        claim_due!(
            "orders",
            "id",
            concat!(
                "SELECT d.id FROM orders d JOIN payment_attempts a ON a.order_id = d.id, clock k \
             WHERE a.state IN ('unknown', 'pending') AND a.next_try <= k.now \
             AND d.status = 'created' AND NOT ",
                raised!("d"),
                " \
             AND (d.claimed_until IS NULL OR d.claimed_until < k.now) ORDER BY a.next_try"
            ),
            "id, owner, claimed_until",
            $lock
        )
    };
}

/// `paid` orders to schedule and `progress` ones to ask the kitchen about.
macro_rules! due_orders {
    ($lock:literal) => {
        claim_due!(
            "orders",
            "id",
            concat!(
                "SELECT d.id FROM orders d, clock k \
             WHERE d.status IN ('paid', 'progress') AND d.next_check <= k.now \
             AND NOT ",
                raised!("d"),
                " \
             AND (d.claimed_until IS NULL OR d.claimed_until < k.now) ORDER BY d.next_check"
            ),
            "id, owner, status, schedule_id, claimed_until, updated, checks, failing_since",
            $lock
        )
    };
}

macro_rules! due_refunds {
    ($lock:literal) => {
        claim_due!(
            "refunds",
            "key",
            "SELECT r.key FROM refunds r, clock k \
             WHERE r.state <> 'refunded' AND r.next_try <= k.now AND r.attention IS NULL \
             AND (r.claimed_until IS NULL OR r.claimed_until < k.now) ORDER BY r.next_try",
            "key, payment_id, order_id, created, tries, claimed_until, traceparent",
            $lock
        )
    };
}

/// The reconciler's claims: with `SKIP LOCKED` where the backend has it
/// (PostgreSQL), so replicas take different items instead of queueing.
pub(super) struct DueSql {
    attempts: &'static str,
    orders: &'static str,
    refunds: &'static str,
}

pub(super) const DUE_POSTGRES: DueSql = DueSql {
    attempts: due_attempts!(" FOR UPDATE OF d SKIP LOCKED"),
    orders: due_orders!(" FOR UPDATE OF d SKIP LOCKED"),
    refunds: due_refunds!(" FOR UPDATE OF r SKIP LOCKED"),
};

/// SQLite has one writer at a time: a claim cannot meet another.
pub(super) const DUE_SQLITE: DueSql = DueSql {
    attempts: due_attempts!(""),
    orders: due_orders!(""),
    refunds: due_refunds!(""),
};

/// Which of the claims above a backend's connection runs.
pub(super) trait ClaimDue {
    fn due_sql(&self) -> &'static DueSql;
}

impl ClaimDue for sqlx::PgConnection {
    fn due_sql(&self) -> &'static DueSql {
        &DUE_POSTGRES
    }
}

impl ClaimDue for sqlx::SqliteConnection {
    fn due_sql(&self) -> &'static DueSql {
        &DUE_SQLITE
    }
}

/// Orders whose open step is raised for an operator: a raised charge
/// counts while it is still open.
macro_rules! raised_orders {
    () => {
        concat!(
            "FROM orders o WHERE ",
            raised!("o"),
            " AND (o.status IN ('paid', 'progress') OR (o.status = 'created' AND EXISTS \
             (SELECT 1 FROM payment_attempts a WHERE a.order_id = o.id \
             AND a.state IN ('unknown', 'pending'))))"
        )
    };
}

/// Every kind of open item, its count and its oldest, apart from those
/// raised for an operator, which are counted on their own.
const BACKLOG: &str = concat!(
    "SELECT \
     (SELECT COUNT(*) FROM payment_attempts a JOIN orders o ON o.id = a.order_id \
         WHERE a.state IN ('unknown', 'pending') AND NOT ",
    raised!("o"),
    ") AS open_attempts, \
     (SELECT MIN(a.created) FROM payment_attempts a JOIN orders o ON o.id = a.order_id \
         WHERE a.state IN ('unknown', 'pending') AND NOT ",
    raised!("o"),
    ") AS oldest_attempt, \
     (SELECT COUNT(*) FROM refunds WHERE state <> 'refunded' AND attention IS NULL) AS refunds_owed, \
     (SELECT MIN(created) FROM refunds WHERE state <> 'refunded' AND attention IS NULL) AS oldest_refund, \
     (SELECT COUNT(*) FROM orders o WHERE o.status = 'paid' AND NOT ",
    raised!("o"),
    ") AS awaiting_kitchen, \
     (SELECT MIN(o.updated) FROM orders o WHERE o.status = 'paid' AND NOT ",
    raised!("o"),
    ") \
         AS oldest_awaiting_kitchen, \
     (SELECT COUNT(*) FROM orders o WHERE o.status = 'progress' AND o.failing_since IS NOT NULL \
         AND NOT ",
    raised!("o"),
    ") AS kitchen_failing, \
     (SELECT MIN(o.failing_since) FROM orders o WHERE o.status = 'progress' \
         AND NOT ",
    raised!("o"),
    ") AS oldest_kitchen_failing, \
     (SELECT COUNT(*) ",
    raised_orders!(),
    ") \
         + (SELECT COUNT(*) FROM refunds WHERE state <> 'refunded' AND attention IS NOT NULL) AS raised, \
     (SELECT MIN(since) FROM (SELECT o.attention_since AS since ",
    raised_orders!(),
    " \
         UNION ALL SELECT attention_since AS since FROM refunds \
         WHERE state <> 'refunded' AND attention IS NOT NULL) r) AS oldest_raised, \
     (SELECT now FROM clock) AS now"
);

row!(LeaseRow {
    id: Id,
    owner: String,
    claimed_until: Time,
});

row!(DueOrderRow {
    id: Id,
    owner: String,
    status: String,
    schedule_id: Option<Id>,
    claimed_until: Time,
    updated: Time,
    checks: i32,
    failing_since: Option<Time>,
});

row!(DueRefundRow {
    key: Id,
    payment_id: Id,
    order_id: Id,
    created: Time,
    tries: i32,
    claimed_until: Time,
    traceparent: Option<String>,
});

row!(BacklogRow {
    open_attempts: i64,
    oldest_attempt: Option<Time>,
    refunds_owed: i64,
    oldest_refund: Option<Time>,
    awaiting_kitchen: i64,
    oldest_awaiting_kitchen: Option<Time>,
    kitchen_failing: i64,
    oldest_kitchen_failing: Option<Time>,
    raised: i64,
    oldest_raised: Option<Time>,
    now: Time,
});

fn tries(stored: i32) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}

/// Decodes each claimed row on its own: one that does not read is kept as
/// [`Unreadable`] (with its `$key` column, when that much reads), and the
/// rows after it are still read.
macro_rules! each_row {
    ($row:ty, $rows:expr, $key:literal) => {
        $rows
            .iter()
            .map(|row| {
                <$row as ::sqlx::FromRow<_>>::from_row(row).map_err(|err| Unreadable {
                    key: ::sqlx::Row::try_get::<Id, _>(row, $key)
                        .ok()
                        .map(|Id(id)| id),
                    error: err.to_string(),
                })
            })
            .collect::<Vec<_>>()
    };
}

/// A claimed item whose row does not read (or whose details could not be
/// fetched): its key (the order's id, or the refund's key) when known.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub key: Option<Uuid>,
    pub error: String,
}

impl Unreadable {
    fn of(key: Uuid, error: impl std::fmt::Display) -> Self {
        Self {
            key: Some(key),
            error: error.to_string(),
        }
    }
}

/// What a claim of one kind gives: each item, read or not.
pub type Claimed<T> = Vec<std::result::Result<T, Unreadable>>;

impl OrdersRepository {
    /// Open attempts due for another question to payments, each with its
    /// order's lease taken for `lease_ms`.
    pub async fn claim_due_attempts(
        &self,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Claimed<DueAttempt>> {
        let leases = on_backend!(&self.db, run, async |conn| {
            let sql = conn.due_sql().attempts;
            let rows = sqlx::query(sql)
                .bind(limit)
                .bind(lease_ms)
                .fetch_all(&mut *conn)
                .await?;
            Ok(each_row!(LeaseRow, rows, "id"))
        })?;
        let mut due = Vec::with_capacity(leases.len());
        for row in leases {
            let row = match row {
                Ok(row) => row,
                Err(unreadable) => {
                    due.push(Err(unreadable));
                    continue;
                }
            };
            let lease = Lease {
                order_id: row.id.0,
                until: row.claimed_until.0,
            };
            let attempt = match self.open_attempt(lease.order_id).await {
                Ok(attempt) => attempt,
                Err(err) => {
                    due.push(Err(Unreadable::of(lease.order_id, err)));
                    continue;
                }
            };
            match attempt {
                Some(attempt) => due.push(
                    AttemptState::parse(&attempt.state)
                        .map(|state| DueAttempt {
                            owner: row.owner,
                            claim: ChargeClaim {
                                lease,
                                key: attempt.key.0,
                                fresh: false,
                                key_made: attempt.created.0,
                            },
                            state,
                            created: attempt.created.0,
                            tries: tries(attempt.tries),
                            origin: attempt.traceparent,
                        })
                        .map_err(|err| Unreadable::of(lease.order_id, err)),
                ),
                // Settled between the pick and the claim.
                None => {
                    if let Err(err) = self.release(lease).await {
                        due.push(Err(Unreadable::of(lease.order_id, err)));
                    }
                }
            }
        }
        Ok(due)
    }

    /// `paid` and `progress` orders due for the kitchen, leased for `lease_ms`.
    pub async fn claim_due_orders(&self, limit: i64, lease_ms: i64) -> Result<Claimed<DueOrder>> {
        let rows = on_backend!(&self.db, run, async |conn| {
            let sql = conn.due_sql().orders;
            let rows = sqlx::query(sql)
                .bind(limit)
                .bind(lease_ms)
                .fetch_all(&mut *conn)
                .await?;
            Ok(each_row!(DueOrderRow, rows, "id"))
        })?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let row = row?;
                let status =
                    rows::status(&row.status).map_err(|err| Unreadable::of(row.id.0, err))?;
                Ok(DueOrder {
                    owner: row.owner,
                    lease: Lease {
                        order_id: row.id.0,
                        until: row.claimed_until.0,
                    },
                    status,
                    schedule_id: row.schedule_id.map(|Id(id)| id),
                    since: row.updated.0,
                    failing_since: row.failing_since.map(|Time(at)| at),
                    checks: tries(row.checks),
                })
            })
            .collect())
    }

    /// Refunds owed and due, leased for `lease_ms`.
    pub async fn claim_due_refunds(&self, limit: i64, lease_ms: i64) -> Result<Claimed<DueRefund>> {
        let rows = on_backend!(&self.db, run, async |conn| {
            let sql = conn.due_sql().refunds;
            let rows = sqlx::query(sql)
                .bind(limit)
                .bind(lease_ms)
                .fetch_all(&mut *conn)
                .await?;
            Ok(each_row!(DueRefundRow, rows, "key"))
        })?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.map(|row| DueRefund {
                    key: row.key.0,
                    payment_id: row.payment_id.0,
                    order_id: row.order_id.0,
                    created: row.created.0,
                    tries: tries(row.tries),
                    until: row.claimed_until.0,
                    origin: row.traceparent,
                })
            })
            .collect())
    }

    /// What is still open, and for how long, for the metrics.
    pub async fn backlog(&self) -> Result<Backlog> {
        let row: BacklogRow = fetch!(&self.db, fetch_one, BACKLOG;)?;
        let age = |since: Option<Time>| {
            since.map_or(0.0, |Time(since)| {
                (row.now.0 - since).as_seconds_f64().max(0.0)
            })
        };
        Ok(Backlog {
            open_attempts: row.open_attempts,
            oldest_attempt_secs: age(row.oldest_attempt),
            refunds_owed: row.refunds_owed,
            oldest_refund_secs: age(row.oldest_refund),
            awaiting_kitchen: row.awaiting_kitchen,
            oldest_awaiting_kitchen_secs: age(row.oldest_awaiting_kitchen),
            kitchen_failing: row.kitchen_failing,
            oldest_kitchen_failing_secs: age(row.oldest_kitchen_failing),
            raised: row.raised,
            oldest_raised_secs: age(row.oldest_raised),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_skips_locked_rows() {
        for sql in [
            DUE_POSTGRES.attempts,
            DUE_POSTGRES.orders,
            DUE_POSTGRES.refunds,
        ] {
            assert!(sql.contains("FOR UPDATE OF"), "{sql}");
            assert!(
                sql.contains("SKIP LOCKED) AND (claimed_until IS NULL"),
                "{sql}"
            );
        }
        for sql in [DUE_SQLITE.attempts, DUE_SQLITE.orders, DUE_SQLITE.refunds] {
            assert!(!sql.contains("FOR UPDATE"), "{sql}");
        }
    }
}
