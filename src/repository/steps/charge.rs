//! Charging an order. The attempt to charge is recorded, with the lease on
//! the order, before payments is called, and stays open until payments
//! settles it: a charge whose answer was lost is asked about again under
//! the same key, so an order is never charged twice, nor charged unseen.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{CLAIM, Lease, lease_lost};
use crate::db::Database;
use crate::domain::{EventKind, OrderId, OrderStatus};
use crate::repository::codec::{Id, Time};
use crate::repository::outbox::record_event;
use crate::repository::rows::row;
use crate::repository::{OrdersRepository, RepositoryError, Result, sqlite};

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

    pub(super) fn parse(stored: &str) -> Result<Self> {
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

/// A lease on a `created` order together with the attempt to charge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeClaim {
    pub lease: Lease,
    /// The `Idempotency-Key` to send.
    pub key: Uuid,
    /// Made by this claim: nothing was ever sent with it.
    pub fresh: bool,
    /// When the key was made (database time): payments forgets keys after
    /// a while, and an old one sent again could be taken for a new charge.
    pub key_made: OffsetDateTime,
}

/// The open attempt of an order.
const OPEN_ATTEMPT: &str = "SELECT key, state, created, tries, traceparent FROM payment_attempts \
     WHERE order_id = $1 AND state IN ('unknown', 'pending')";

/// A new attempt, due for the reconciler once the lease `$3` ends.
const NEW_ATTEMPT: &str = "INSERT INTO payment_attempts (key, order_id, state, created, updated, next_try, traceparent) \
     SELECT $1, $2, 'unknown', now, now, $3, $4 FROM clock";

pub(super) const ATTEMPT_PAID: &str = "UPDATE payment_attempts SET state = 'paid', payment_id = $2, \
     updated = (SELECT now FROM clock) \
     WHERE key = $1 AND state IN ('unknown', 'pending')";

pub(super) const ATTEMPT_DECLINED: &str = "UPDATE payment_attempts SET state = 'declined', payment_id = $2, \
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

row!(AttemptRow {
    key: Id,
    state: String,
    created: Time,
    tries: i32,
    traceparent: Option<String>,
});

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
}

/// PostgreSQL: the claim, the look-up of an open attempt and the insert of
/// a new one are one statement, so no moment exists at which the order is
/// held without its attempt recorded.
pub(super) const BEGIN_CHARGE_POSTGRES: &str = "WITH claimed AS ( \
         UPDATE orders SET claimed_until = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock) \
         WHERE id = $1 AND owner = $2 AND status = 'created' \
         AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
         RETURNING id, claimed_until), \
     open AS (SELECT a.key, a.created FROM payment_attempts a JOIN claimed c ON a.order_id = c.id \
         WHERE a.state IN ('unknown', 'pending')), \
     fresh AS (INSERT INTO payment_attempts (key, order_id, state, created, updated, next_try, traceparent) \
         SELECT $4, c.id, 'unknown', k.now, k.now, c.claimed_until, $5 FROM claimed c, clock k \
         WHERE NOT EXISTS (SELECT 1 FROM open) RETURNING key, created) \
     SELECT key, TRUE AS fresh, created, (SELECT claimed_until FROM claimed) AS claimed_until FROM fresh \
     UNION ALL SELECT key, FALSE, created, (SELECT claimed_until FROM claimed) FROM open";

row!(ChargeRow {
    key: Id,
    fresh: bool,
    created: Time,
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
            key_made: self.created.0,
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
        let (key, fresh, key_made) = match open {
            Some(open) => (open.key.0, false, open.created.0),
            None => {
                sqlx::query(NEW_ATTEMPT)
                    .bind(Id(new_key))
                    .bind(Id(id))
                    .bind(until)
                    .bind(origin)
                    .execute(&mut *self)
                    .await?;
                (new_key, true, crate::domain::order::now_micros())
            }
        };
        Ok(Some(ChargeClaim {
            lease: Lease {
                order_id: id,
                until: until.0,
            },
            key,
            fresh,
            key_made,
        }))
    }
}

impl OrdersRepository {
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
                key_made: attempt.created.0,
            })),
            None => {
                self.release(lease).await?;
                Ok(None)
            }
        }
    }

    pub(super) async fn open_attempt(&self, id: OrderId) -> Result<Option<AttemptRow>> {
        fetch!(&self.db, fetch_optional, OPEN_ATTEMPT; Id(id))
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
            let keep = lease_lost(order, keep)?;
            record_event!(
                self,
                tx,
                lease.order_id,
                EventKind::Status(OrderStatus::Paid)
            );
            Ok(keep)
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
}
