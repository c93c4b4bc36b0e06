//! The storage of the lifecycle's steps, a file for each: charging
//! (`charge`), the kitchen (`kitchen`), cancelling and the refunds it owes
//! (`cancel`), and the reconciler's claims (`due`); and here, the leases
//! they are all recorded under.
//!
//! Every time in them is the database's (the `clock` view: `now`, and `ms`
//! for arithmetic), never a pod's, so that replicas whose clocks drift
//! still agree on who holds an order. Every change is conditional on the
//! lease or state it expects, so a step recorded late, by a holder whose
//! lease ran out, writes nothing.

mod attention;
mod cancel;
mod charge;
mod due;
mod kitchen;
mod operator;

use time::OffsetDateTime;
use uuid::Uuid;

pub use self::cancel::RefundOutcome;
pub use self::charge::{AttemptState, ChargeClaim};
pub use self::due::{Backlog, Claimed, DueAttempt, DueOrder, DueRefund, Unreadable};
pub use self::operator::{Resolution, StuckItem};
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

/// Where an order is in its lifecycle, beyond what clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleState {
    pub status: OrderStatus,
    /// A request (or the reconciler) holds a live lease on the order, for
    /// this much longer (database time). A lease ending this very instant
    /// is still held, as the claims see it (they take only leases already
    /// past), so that a refused claim and this never disagree.
    pub busy_for: Option<std::time::Duration>,
    /// The kitchen's schedule, once the order is `progress`.
    pub schedule_id: Option<Uuid>,
    /// A schedule request may have reached the kitchen: cancelling must go
    /// through the kitchen.
    pub schedule_sent: bool,
    /// The state of the payment attempt whose outcome is open, if any.
    pub open_attempt: Option<AttemptState>,
    /// A charge of the order went through.
    pub charged: bool,
}

/// What the lifecycle needs to decide its next step.
const LIFECYCLE_STATE: &str = "SELECT o.status, o.claimed_until, k.now, o.schedule_id, \
     o.schedule_sent, o.payment_id IS NOT NULL AS charged, \
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
     failing_since = CASE WHEN $4 = 1 THEN COALESCE(failing_since, (SELECT now FROM clock)) \
         ELSE NULL END, \
     schedule_sent = CASE WHEN $5 = 1 THEN FALSE ELSE schedule_sent END \
     WHERE id = $1 AND claimed_until = $2";

/// Extends a live lease (`$2`, not yet run out) before a call: an item a
/// batch claimed may wait behind slow calls, and must not be called on
/// after another holder could have taken it.
const RENEW: &str = "UPDATE orders SET claimed_until = (SELECT now + CAST($3 AS BIGINT) * ms FROM clock) \
     WHERE id = $1 AND claimed_until = $2 AND claimed_until > (SELECT now FROM clock) \
     RETURNING claimed_until";

row!(StateRow {
    status: String,
    claimed_until: Option<Time>,
    now: Time,
    schedule_id: Option<Id>,
    schedule_sent: bool,
    charged: bool,
    open_attempt: Option<String>,
});

row!(UntilRow {
    claimed_until: Time
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

impl super::OrdersRepository {
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "lifecycle_state", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "lifecycle_state", order.id = %id))]
    pub async fn lifecycle_state(&self, owner: &str, id: OrderId) -> Result<LifecycleState> {
        let row: Option<StateRow> =
            fetch!(&self.db, fetch_optional, LIFECYCLE_STATE; Id(id), owner)?;
        let row = row.ok_or(RepositoryError::NotFound)?;
        Ok(LifecycleState {
            status: rows::status(&row.status)?,
            busy_for: row
                .claimed_until
                .and_then(|Time(until)| std::time::Duration::try_from(until - row.now.0).ok()),
            schedule_id: row.schedule_id.map(|Id(id)| id),
            schedule_sent: row.schedule_sent,
            charged: row.charged,
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
}
