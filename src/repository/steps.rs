//! The storage of the lifecycle's steps: leases, payment attempts, refunds
//! owed, and the kitchen follow-up, plus the claims of the reconciler.
//!
//! Every time here is the database's (the `clock` view: `now`, and `ms`
//! for arithmetic), never a pod's, so that replicas whose clocks drift
//! still agree on who holds an order. Every change is conditional on the
//! lease or state it expects, so a step recorded late, by a holder whose
//! lease ran out, writes nothing.

use time::OffsetDateTime;
use uuid::Uuid;

use super::codec::{Id, Time};
use super::rows::{self, row};
use super::{Database, RepositoryError, Result, sqlite};
use crate::domain::{OrderId, OrderStatus};

/// The lease on an order (or a refund): the right to call upstream for it
/// until `until`, in database time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub order_id: OrderId,
    pub until: OffsetDateTime,
}

/// Where a payment attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptState {
    /// Sent, or about to be; no answer recorded. The same key is sent again.
    Unknown,
    /// Payments answered `pending`: asked again later with the same key.
    Pending,
    Paid,
    Declined,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Unknown => "unknown",
            AttemptState::Pending => "pending",
            AttemptState::Paid => "paid",
            AttemptState::Declined => "declined",
        }
    }

    fn parse(stored: &str) -> Result<Self> {
        Ok(match stored {
            "unknown" => AttemptState::Unknown,
            "pending" => AttemptState::Pending,
            "paid" => AttemptState::Paid,
            "declined" => AttemptState::Declined,
            other => {
                return Err(RepositoryError::Corrupt(format!(
                    "unknown attempt state {other:?}"
                )));
            }
        })
    }
}

/// Where an order is in its lifecycle, beyond what clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleState {
    pub status: OrderStatus,
    /// A request (or the reconciler) holds a live lease on the order.
    pub busy: bool,
    /// The kitchen's schedule, once the order is `progress`.
    pub schedule_id: Option<Uuid>,
    /// A schedule request may have reached the kitchen: cancelling must go
    /// through the kitchen.
    pub schedule_sent: bool,
    /// The state of the payment attempt whose outcome is open, if any.
    pub open_attempt: Option<AttemptState>,
}

/// A lease on a `created` order together with the attempt to charge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeClaim {
    pub lease: Lease,
    /// The `Idempotency-Key` to send.
    pub key: Uuid,
    /// Made by this claim: nothing was ever sent with it.
    pub fresh: bool,
}

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

/// What is still open, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    pub open_attempts: i64,
    pub oldest_attempt_secs: f64,
    pub refunds_owed: i64,
    pub oldest_refund_secs: f64,
    pub awaiting_kitchen: i64,
    pub oldest_awaiting_kitchen_secs: f64,
}

/// What the lifecycle needs to decide its next step.
const LIFECYCLE_STATE: &str = "SELECT o.status, o.claimed_until > k.now AS busy, o.schedule_id, \
     o.schedule_sent, \
     (SELECT a.state FROM payment_attempts a \
         WHERE a.order_id = o.id AND a.state IN ('unknown', 'pending')) AS open_attempt \
     FROM orders o, clock k WHERE o.id = $1 AND o.owner = $2";

/// Takes the lease to call upstream for an order in status `$4`, unless a
/// live lease is held by another; `$3` is its length in milliseconds.
const CLAIM: &str = "UPDATE orders SET claimed_until = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock) \
     WHERE id = $1 AND owner = $2 AND status = $4 \
     AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
     RETURNING claimed_until";

/// Gives a lease back (only our own: `$2` is its end).
const RELEASE: &str = "UPDATE orders SET claimed_until = NULL WHERE id = $1 AND claimed_until = $2";

/// Gives a lease back and has the reconciler look at the order again in
/// `$3` ms; `$4` counts a failed look (1) or resets the count (0); `$5` = 1
/// says a schedule request was known not to reach the kitchen, so the order
/// can again be cancelled without it.
const DEFER: &str = "UPDATE orders SET claimed_until = NULL, \
     next_check = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock), \
     checks = CASE WHEN $4 = 1 THEN checks + 1 ELSE 0 END, \
     schedule_sent = CASE WHEN $5 = 1 THEN FALSE ELSE schedule_sent END \
     WHERE id = $1 AND claimed_until = $2";

/// Extends a live lease (`$2`, not yet run out) before a call: an item a
/// batch claimed may wait behind slow calls, and must not be called on
/// after another holder could have taken it.
const RENEW: &str = "UPDATE orders SET claimed_until = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock) \
     WHERE id = $1 AND claimed_until = $2 AND claimed_until > (SELECT now FROM clock) \
     RETURNING claimed_until";

const RENEW_REFUND: &str = "UPDATE refunds SET claimed_until = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock) \
     WHERE key = $1 AND claimed_until = $2 AND claimed_until > (SELECT now FROM clock) \
     RETURNING claimed_until";

/// The open attempt of an order.
const OPEN_ATTEMPT: &str = "SELECT key, state, created, tries, traceparent FROM payment_attempts \
     WHERE order_id = $1 AND state IN ('unknown', 'pending')";

/// A new attempt, due for the reconciler once the lease `$3` ends.
const NEW_ATTEMPT: &str = "INSERT INTO payment_attempts (key, order_id, state, created, updated, next_try, traceparent) \
     SELECT $1, $2, 'unknown', now, now, $3, $4 FROM clock";

const ATTEMPT_PAID: &str = "UPDATE payment_attempts SET state = 'paid', payment_id = $2, \
     updated = (SELECT now FROM clock) \
     WHERE key = $1 AND state IN ('unknown', 'pending')";

const ATTEMPT_DECLINED: &str = "UPDATE payment_attempts SET state = 'declined', payment_id = $2, \
     updated = (SELECT now FROM clock) \
     WHERE key = $1 AND state IN ('unknown', 'pending')";

/// The attempt stays open (`$2`: `unknown` or `pending`), asked again in `$4` ms.
const ATTEMPT_OPEN: &str = "UPDATE payment_attempts SET state = $2, \
     payment_id = COALESCE($3, payment_id), tries = tries + 1, \
     updated = (SELECT now FROM clock), \
     next_try = (SELECT now + CAST($4 AS BIGINT) * ms FROM clock) \
     WHERE key = $1 AND state IN ('unknown', 'pending')";

/// An attempt whose request never left this service, while its order is
/// still held under the lease `$2`: once the lease ran out, another holder
/// may have sent the same key, and the attempt must stay.
const FORGET_ATTEMPT: &str = "DELETE FROM payment_attempts WHERE key = $1 AND state = 'unknown' \
     AND EXISTS (SELECT 1 FROM orders o \
         WHERE o.id = payment_attempts.order_id AND o.claimed_until = $2 \
         AND o.claimed_until > (SELECT now FROM clock))";

/// `created` → `paid` under the lease `$3`, which is kept until `$4`
/// (NULL drops it); the reconciler schedules the order if nobody else does.
const ORDER_PAID: &str = "UPDATE orders SET status = 'paid', payment_id = $2, \
     updated = (SELECT now FROM clock), claimed_until = $4, \
     next_check = (SELECT now FROM clock), checks = 0 \
     WHERE id = $1 AND status = 'created' AND claimed_until = $3";

/// A schedule request is about to leave: from now on only the kitchen can
/// say whether the order is being made.
const SCHEDULE_SENT: &str = "UPDATE orders SET schedule_sent = TRUE \
     WHERE id = $1 AND claimed_until = $2 AND claimed_until > (SELECT now FROM clock)";

/// `paid` → `progress` with the kitchen's schedule `$2`, under the lease
/// `$3`, kept until `$4`; the kitchen is asked how it goes in `$5` ms.
const ORDER_SCHEDULED: &str = "UPDATE orders SET status = 'progress', schedule_id = $2, \
     updated = (SELECT now FROM clock), claimed_until = $4, \
     next_check = (SELECT now + CAST($5 AS BIGINT) * ms FROM clock), checks = 0 \
     WHERE id = $1 AND status = 'paid' AND claimed_until = $3";

const ORDER_DISPATCHED: &str = "UPDATE orders SET status = 'dispatched', \
     updated = (SELECT now FROM clock), claimed_until = NULL, next_check = NULL \
     WHERE id = $1 AND status = 'progress' AND claimed_until = $2";

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

/// A refund owed for the charge `$2`, once per charge: a second cancel path
/// reaching the same charge finds it owed already. (`WHERE TRUE` keeps
/// SQLite from reading `ON CONFLICT` as part of the `SELECT`.)
const OWE_REFUND: &str = "INSERT INTO refunds (key, payment_id, order_id, state, created, updated, next_try, traceparent) \
     SELECT $1, $2, $3, 'owed', now, now, now, $4 FROM clock WHERE TRUE \
     ON CONFLICT (payment_id) DO NOTHING";

macro_rules! claim_due {
    ($table:literal, $key:literal, $pick:literal, $returning:literal, $lock:literal) => {
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
            "SELECT d.id FROM orders d JOIN payment_attempts a ON a.order_id = d.id, clock k \
             WHERE a.state IN ('unknown', 'pending') AND a.next_try <= k.now \
             AND d.status = 'created' \
             AND (d.claimed_until IS NULL OR d.claimed_until < k.now) ORDER BY a.next_try",
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
            "SELECT d.id FROM orders d, clock k \
             WHERE d.status IN ('paid', 'progress') AND d.next_check <= k.now \
             AND (d.claimed_until IS NULL OR d.claimed_until < k.now) ORDER BY d.next_check",
            "id, owner, status, schedule_id, claimed_until, updated, checks",
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
             WHERE r.state <> 'refunded' AND r.next_try <= k.now \
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

const REFUND_DONE: &str = "UPDATE refunds SET state = 'refunded', refund_id = $2, \
     updated = (SELECT now FROM clock), claimed_until = NULL \
     WHERE key = $1 AND claimed_until = $3";

/// The refund stays owed (`$2`: `owed` or `pending`), tried again in `$4` ms.
const REFUND_OPEN: &str = "UPDATE refunds SET state = $2, refund_id = COALESCE($5, refund_id), \
     tries = tries + 1, updated = (SELECT now FROM clock), claimed_until = NULL, \
     next_try = (SELECT now + CAST($4 AS BIGINT) * ms FROM clock) \
     WHERE key = $1 AND claimed_until = $3";

const BACKLOG: &str = "SELECT \
     (SELECT COUNT(*) FROM payment_attempts WHERE state IN ('unknown', 'pending')) AS open_attempts, \
     (SELECT MIN(created) FROM payment_attempts WHERE state IN ('unknown', 'pending')) AS oldest_attempt, \
     (SELECT COUNT(*) FROM refunds WHERE state <> 'refunded') AS refunds_owed, \
     (SELECT MIN(created) FROM refunds WHERE state <> 'refunded') AS oldest_refund, \
     (SELECT COUNT(*) FROM orders WHERE status = 'paid') AS awaiting_kitchen, \
     (SELECT MIN(updated) FROM orders WHERE status = 'paid') AS oldest_awaiting_kitchen, \
     (SELECT now FROM clock) AS now";

row!(StateRow {
    status: String,
    busy: Option<bool>,
    schedule_id: Option<Id>,
    schedule_sent: bool,
    open_attempt: Option<String>,
});

row!(UntilRow {
    claimed_until: Time
});

row!(AttemptRow {
    key: Id,
    state: String,
    created: Time,
    tries: i32,
    traceparent: Option<String>,
});

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
    now: Time,
});

/// A step recorded under a lease that ran out: nothing may be written, and
/// the transaction is rolled back.
fn lease_lost<T>(touched: u64, done: T) -> Result<T> {
    if touched == 1 {
        Ok(done)
    } else {
        Err(RepositoryError::LeaseLost)
    }
}

/// `Ok(false)` for a lost lease, which is an answer, not a failure.
fn held(outcome: Result<()>) -> Result<bool> {
    match outcome {
        Ok(()) => Ok(true),
        Err(RepositoryError::LeaseLost) => Ok(false),
        Err(err) => Err(err),
    }
}

fn tries(stored: i32) -> u32 {
    u32::try_from(stored).unwrap_or(0)
}

/// What the backends do differently here: PostgreSQL claims an order and
/// makes its attempt in one statement; SQLite, whose statements cannot
/// write in a `WITH`, in one transaction that takes the write lock first.
pub(super) trait ClaimCharge {
    async fn begin_charge(
        &mut self,
        owner: &str,
        id: OrderId,
        lease_ms: i64,
        new_key: Uuid,
        origin: Option<&str>,
    ) -> Result<Option<ChargeClaim>>;

    fn due_sql(&self) -> &'static DueSql;
}

/// PostgreSQL: the claim, the look-up of an open attempt and the insert of
/// a new one are one statement, so no moment exists at which the order is
/// held without its attempt recorded.
pub(super) const BEGIN_CHARGE_POSTGRES: &str = "WITH claimed AS ( \
         UPDATE orders SET claimed_until = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock) \
         WHERE id = $1 AND owner = $2 AND status = 'created' \
         AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
         RETURNING id, claimed_until), \
     open AS (SELECT a.key FROM payment_attempts a JOIN claimed c ON a.order_id = c.id \
         WHERE a.state IN ('unknown', 'pending')), \
     fresh AS (INSERT INTO payment_attempts (key, order_id, state, created, updated, next_try, traceparent) \
         SELECT $4, c.id, 'unknown', k.now, k.now, c.claimed_until, $5 FROM claimed c, clock k \
         WHERE NOT EXISTS (SELECT 1 FROM open) RETURNING key) \
     SELECT key, TRUE AS fresh, (SELECT claimed_until FROM claimed) AS claimed_until FROM fresh \
     UNION ALL SELECT key, FALSE, (SELECT claimed_until FROM claimed) FROM open";

row!(ChargeRow {
    key: Id,
    fresh: bool,
    claimed_until: Time,
});

impl ChargeRow {
    pub(super) fn claim(self, order_id: OrderId) -> ChargeClaim {
        ChargeClaim {
            lease: Lease {
                order_id,
                until: self.claimed_until.0,
            },
            key: self.key.0,
            fresh: self.fresh,
        }
    }
}

impl ClaimCharge for sqlx::PgConnection {
    async fn begin_charge(
        &mut self,
        owner: &str,
        id: OrderId,
        lease_ms: i64,
        new_key: Uuid,
        origin: Option<&str>,
    ) -> Result<Option<ChargeClaim>> {
        let row: Option<ChargeRow> = sqlx::query_as(BEGIN_CHARGE_POSTGRES)
            .bind(Id(id))
            .bind(owner)
            .bind(lease_ms)
            .bind(Id(new_key))
            .bind(origin)
            .fetch_optional(self)
            .await?;
        Ok(row.map(|row| row.claim(id)))
    }

    fn due_sql(&self) -> &'static DueSql {
        &DUE_POSTGRES
    }
}

impl ClaimCharge for sqlx::SqliteConnection {
    /// Run inside a transaction by the caller; the claim writes first.
    async fn begin_charge(
        &mut self,
        owner: &str,
        id: OrderId,
        lease_ms: i64,
        new_key: Uuid,
        origin: Option<&str>,
    ) -> Result<Option<ChargeClaim>> {
        let until: Option<Time> = sqlx::query_scalar(CLAIM)
            .bind(Id(id))
            .bind(owner)
            .bind(lease_ms)
            .bind(OrderStatus::Created.as_str())
            .fetch_optional(&mut *self)
            .await?;
        let Some(until) = until else {
            return Ok(None);
        };
        let open: Option<AttemptRow> = sqlx::query_as(OPEN_ATTEMPT)
            .bind(Id(id))
            .fetch_optional(&mut *self)
            .await?;
        let (key, fresh) = match open {
            Some(open) => (open.key.0, false),
            None => {
                sqlx::query(NEW_ATTEMPT)
                    .bind(Id(new_key))
                    .bind(Id(id))
                    .bind(until)
                    .bind(origin)
                    .execute(&mut *self)
                    .await?;
                (new_key, true)
            }
        };
        Ok(Some(ChargeClaim {
            lease: Lease {
                order_id: id,
                until: until.0,
            },
            key,
            fresh,
        }))
    }

    fn due_sql(&self) -> &'static DueSql {
        &DUE_SQLITE
    }
}

impl super::OrdersRepository {
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "lifecycle_state", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "lifecycle_state", order.id = %id))]
    pub async fn lifecycle_state(&self, owner: &str, id: OrderId) -> Result<LifecycleState> {
        let row: Option<StateRow> =
            fetch!(&self.db, fetch_optional, LIFECYCLE_STATE; Id(id), owner)?;
        let row = row.ok_or(RepositoryError::NotFound)?;
        Ok(LifecycleState {
            status: rows::status(&row.status)?,
            busy: row.busy == Some(true),
            schedule_id: row.schedule_id.map(|Id(id)| id),
            schedule_sent: row.schedule_sent,
            open_attempt: row
                .open_attempt
                .as_deref()
                .map(AttemptState::parse)
                .transpose()?,
        })
    }

    /// Takes the lease on an order in `status` for `lease_ms`; `None` when
    /// the order is in another status or another holds a live lease.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "claim", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "claim", order.id = %id))]
    pub async fn claim(
        &self,
        owner: &str,
        id: OrderId,
        status: OrderStatus,
        lease_ms: i64,
    ) -> Result<Option<Lease>> {
        let until: Option<UntilRow> = fetch!(&self.db, fetch_optional, CLAIM;
            Id(id), owner, lease_ms, status.as_str())?;
        Ok(until.map(|row| Lease {
            order_id: id,
            until: row.claimed_until.0,
        }))
    }

    /// Takes the lease on a `created` order and the attempt to charge it:
    /// its open attempt if it has one (the same key is sent again), else a
    /// new one with `new_key`. Committed before payments is called.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "begin_charge", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "begin_charge", order.id = %id))]
    pub async fn begin_charge(
        &self,
        owner: &str,
        id: OrderId,
        lease_ms: i64,
        new_key: Uuid,
    ) -> Result<Option<ChargeClaim>> {
        let origin = crate::trace_context::current();
        let origin = origin.as_deref();
        match &self.db {
            Database::Postgres(pool) => {
                pool.run(async |conn| {
                    conn.begin_charge(owner, id, lease_ms, new_key, origin)
                        .await
                })
                .await
            }
            Database::Sqlite(pool) => {
                sqlite::Pool(pool)
                    .transaction(async |tx| {
                        tx.begin_charge(owner, id, lease_ms, new_key, origin).await
                    })
                    .await
            }
        }
    }

    /// The lease on a `created` order whose attempt is open, to ask
    /// payments again; `None` when none is open or another holds it.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "claim_open_attempt", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "claim_open_attempt", order.id = %id))]
    pub async fn claim_open_attempt(
        &self,
        owner: &str,
        id: OrderId,
        lease_ms: i64,
    ) -> Result<Option<ChargeClaim>> {
        let Some(lease) = self
            .claim(owner, id, OrderStatus::Created, lease_ms)
            .await?
        else {
            return Ok(None);
        };
        match self.open_attempt(id).await? {
            Some(attempt) => Ok(Some(ChargeClaim {
                lease,
                key: attempt.key.0,
                fresh: false,
            })),
            None => {
                self.release(lease).await?;
                Ok(None)
            }
        }
    }

    async fn open_attempt(&self, id: OrderId) -> Result<Option<AttemptRow>> {
        fetch!(&self.db, fetch_optional, OPEN_ATTEMPT; Id(id))
    }

    /// Gives a lease back.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "release", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "release", order.id = %lease.order_id))]
    pub async fn release(&self, lease: Lease) -> Result<()> {
        execute!(&self.db, RELEASE; Id(lease.order_id), Time(lease.until))?;
        Ok(())
    }

    /// Gives a lease back; the reconciler looks at the order again in
    /// `delay_ms`. `failed` counts the look as a failure, for the backoff;
    /// `unsent` says a schedule request is known not to have reached the
    /// kitchen.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "defer", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "defer", order.id = %lease.order_id))]
    pub async fn defer(
        &self,
        lease: Lease,
        delay_ms: i64,
        failed: bool,
        unsent: bool,
    ) -> Result<()> {
        execute!(&self.db, DEFER;
            Id(lease.order_id), Time(lease.until), delay_ms, i32::from(failed), i32::from(unsent))?;
        Ok(())
    }

    /// The lease extended by `lease_ms` from now, if it has not run out.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "renew", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "renew", order.id = %lease.order_id))]
    pub async fn renew(&self, lease: Lease, lease_ms: i64) -> Result<Option<Lease>> {
        let row: Option<UntilRow> = fetch!(&self.db, fetch_optional, RENEW;
            Id(lease.order_id), Time(lease.until), lease_ms)?;
        Ok(row.map(|row| Lease {
            order_id: lease.order_id,
            until: row.claimed_until.0,
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

    /// The charge went through: the attempt and the order are `paid` at
    /// once. The lease is kept for `keep_ms` more (to schedule) or dropped.
    /// `None` when the lease was lost meanwhile (nothing is written; whoever
    /// holds the order now records the same answer under the same key).
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_paid", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_paid", order.id = %claim.lease.order_id, payment.attempt_key = %claim.key))]
    pub async fn record_paid(
        &self,
        claim: ChargeClaim,
        payment_id: Uuid,
        keep_ms: Option<i64>,
    ) -> Result<Option<Lease>> {
        let lease = claim.lease;
        let recorded = on_backend!(&self.db, transaction, async |tx| {
            let keep: Option<Time> = match keep_ms {
                Some(ms) => Some(
                    sqlx::query_scalar("SELECT now + CAST($1 AS BIGINT) * ms FROM clock")
                        .bind(ms)
                        .fetch_one(&mut *tx)
                        .await?,
                ),
                None => None,
            };
            let attempt = sqlx::query(ATTEMPT_PAID)
                .bind(Id(claim.key))
                .bind(Id(payment_id))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            lease_lost(attempt, ())?;
            let order = sqlx::query(ORDER_PAID)
                .bind(Id(lease.order_id))
                .bind(Id(payment_id))
                .bind(Time(lease.until))
                .bind(keep)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            lease_lost(order, keep)
        });
        match recorded {
            Ok(keep) => Ok(Some(Lease {
                order_id: lease.order_id,
                until: keep.map_or(lease.until, |Time(until)| until),
            })),
            Err(RepositoryError::LeaseLost) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Payments declined the attempt: settled; the next pay makes a new one.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_declined", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_declined", payment.attempt_key = %key))]
    pub async fn record_declined(&self, key: Uuid, payment_id: Uuid) -> Result<()> {
        execute!(&self.db, ATTEMPT_DECLINED; Id(key), Id(payment_id))?;
        Ok(())
    }

    /// The attempt stays open (`Pending`, or `Unknown` after a lost answer),
    /// asked again in `retry_ms` with the same key.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_open", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_open", payment.attempt_key = %key))]
    pub async fn record_open(
        &self,
        key: Uuid,
        state: AttemptState,
        payment_id: Option<Uuid>,
        retry_ms: i64,
    ) -> Result<()> {
        execute!(&self.db, ATTEMPT_OPEN;
            Id(key), state.as_str(), payment_id.map(Id), retry_ms)?;
        Ok(())
    }

    /// The request with this fresh key never left: as if it never was,
    /// provided `lease` still holds the order.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "forget_attempt", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "forget_attempt", order.id = %lease.order_id, payment.attempt_key = %key))]
    pub async fn forget_attempt(&self, key: Uuid, lease: Lease) -> Result<()> {
        execute!(&self.db, FORGET_ATTEMPT; Id(key), Time(lease.until))?;
        Ok(())
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
        let until: Option<Option<Time>> = on_backend!(&self.db, run, async |conn| {
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
        let done = execute!(&self.db, ORDER_DISPATCHED; Id(lease.order_id), Time(lease.until))?;
        Ok(done == 1)
    }

    /// Cancels a `created` order that nobody holds or pays for.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "cancel_created", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "cancel_created", order.id = %id))]
    pub async fn cancel_created(&self, owner: &str, id: OrderId) -> Result<bool> {
        let done = execute!(&self.db, CANCEL_CREATED; Id(id), owner)?;
        Ok(done == 1)
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
            if let Some(payment_id) = charged {
                sqlx::query(OWE_REFUND)
                    .bind(Id(refund_key))
                    .bind(payment_id)
                    .bind(Id(id))
                    .bind(crate::trace_context::current())
                    .execute(&mut *tx)
                    .await?;
            }
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
            if let Some(payment_id) = charged {
                sqlx::query(OWE_REFUND)
                    .bind(Id(refund_key))
                    .bind(payment_id)
                    .bind(Id(lease.order_id))
                    .bind(crate::trace_context::current())
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        }))
    }

    /// Open attempts due for another question to payments, each with its
    /// order's lease taken for `lease_ms`.
    pub async fn claim_due_attempts(&self, limit: i64, lease_ms: i64) -> Result<Vec<DueAttempt>> {
        let leases: Vec<LeaseRow> = on_backend!(&self.db, run, async |conn| {
            let sql = conn.due_sql().attempts;
            Ok(sqlx::query_as(sql)
                .bind(limit)
                .bind(lease_ms)
                .fetch_all(&mut *conn)
                .await?)
        })?;
        let mut due = Vec::with_capacity(leases.len());
        for row in leases {
            let lease = Lease {
                order_id: row.id.0,
                until: row.claimed_until.0,
            };
            match self.open_attempt(lease.order_id).await? {
                Some(attempt) => due.push(DueAttempt {
                    owner: row.owner,
                    claim: ChargeClaim {
                        lease,
                        key: attempt.key.0,
                        fresh: false,
                    },
                    state: AttemptState::parse(&attempt.state)?,
                    created: attempt.created.0,
                    tries: tries(attempt.tries),
                    origin: attempt.traceparent,
                }),
                // Settled between the pick and the claim.
                None => self.release(lease).await?,
            }
        }
        Ok(due)
    }

    /// `paid` and `progress` orders due for the kitchen, leased for `lease_ms`.
    pub async fn claim_due_orders(&self, limit: i64, lease_ms: i64) -> Result<Vec<DueOrder>> {
        let rows: Vec<DueOrderRow> = on_backend!(&self.db, run, async |conn| {
            let sql = conn.due_sql().orders;
            Ok(sqlx::query_as(sql)
                .bind(limit)
                .bind(lease_ms)
                .fetch_all(&mut *conn)
                .await?)
        })?;
        rows.into_iter()
            .map(|row| {
                Ok(DueOrder {
                    owner: row.owner,
                    lease: Lease {
                        order_id: row.id.0,
                        until: row.claimed_until.0,
                    },
                    status: rows::status(&row.status)?,
                    schedule_id: row.schedule_id.map(|Id(id)| id),
                    since: row.updated.0,
                    checks: tries(row.checks),
                })
            })
            .collect()
    }

    /// Refunds owed and due, leased for `lease_ms`.
    pub async fn claim_due_refunds(&self, limit: i64, lease_ms: i64) -> Result<Vec<DueRefund>> {
        let rows: Vec<DueRefundRow> = on_backend!(&self.db, run, async |conn| {
            let sql = conn.due_sql().refunds;
            Ok(sqlx::query_as(sql)
                .bind(limit)
                .bind(lease_ms)
                .fetch_all(&mut *conn)
                .await?)
        })?;
        Ok(rows
            .into_iter()
            .map(|row| DueRefund {
                key: row.key.0,
                payment_id: row.payment_id.0,
                order_id: row.order_id.0,
                created: row.created.0,
                tries: tries(row.tries),
                until: row.claimed_until.0,
                origin: row.traceparent,
            })
            .collect())
    }

    /// Records what a refund call came to, under the refund's lease.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "record_refund", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "record_refund", order.id = %refund.order_id, payment.id = %refund.payment_id))]
    pub async fn record_refund(&self, refund: &DueRefund, outcome: RefundOutcome) -> Result<()> {
        let (key, until) = (Id(refund.key), Time(refund.until));
        match outcome {
            RefundOutcome::Refunded { refund_id } => {
                execute!(&self.db, REFUND_DONE; key, Id(refund_id), until)?
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
        })
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
