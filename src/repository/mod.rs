//! Storage of orders. One API over both backends, each operation written
//! once (see `on_backend!`) with the same SQL text: the codecs bind and
//! decode the values the backends store differently, and each backend module
//! holds only how it writes an order's items.

pub mod codec;
mod postgres;
mod reads;
mod rows;
/// Public so that tests and tools can `EXPLAIN` the very statements the
/// service runs.
pub mod sql;
mod sqlite;

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use self::codec::{Id, Time};
use self::outbox::record_event;
use self::rows::{ItemRow, KeyRow, MoneyRow, StatusRow};
use crate::db::{Database, WorkError};
use crate::domain::order::now_micros;
use crate::domain::{EventKind, NewOrder, Order, OrderId, OrderItems, OrderStatus};

/// Which orders a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    All,
    OnlyCancelled,
    ExceptCancelled,
}

/// Position in a listing: the last order of the previous page. Orders are
/// sorted by (created, id) descending, which is unique, so a page never
/// repeats or skips an order even when new ones arrive between pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created: OffsetDateTime,
    pub id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub filter: ListFilter,
    /// Already bounded by the HTTP layer.
    pub limit: u32,
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub orders: Vec<Order>,
    /// Present when more orders follow this page.
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// No such order for this owner (another owner's order is not found either).
    #[error("order not found")]
    NotFound,
    /// The order exists but its status does not allow the change.
    #[error("order is {}", current.as_str())]
    Conflict { current: OrderStatus },
    /// A request holds a live lease on the order (it is paying for or
    /// cancelling it right now); worth retrying shortly.
    #[error("a payment or cancellation of the order is under way")]
    Busy,
    /// A payment of the order has an outcome still open (`unknown` or
    /// `pending`): it must be settled before the order changes.
    #[error("a payment of the order has an outcome still open")]
    PaymentUnsettled,
    /// A step was to be recorded under a lease that ran out meanwhile:
    /// nothing was written.
    #[error("the lease on the order ran out")]
    LeaseLost,
    /// The database could not be reached in time; worth retrying.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored value the domain types refuse: a bug or a manual edit.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl RepositoryError {
    /// The same error for each of the reads that shared one statement.
    /// sqlx's errors cannot be cloned, so the database's travel as their
    /// message, under the same variant: the answer (503 or 500) is the same.
    fn again(&self) -> Self {
        match self {
            Self::NotFound => Self::NotFound,
            Self::Conflict { current } => Self::Conflict { current: *current },
            Self::Busy => Self::Busy,
            Self::PaymentUnsettled => Self::PaymentUnsettled,
            Self::LeaseLost => Self::LeaseLost,
            Self::Unavailable(err) => {
                Self::Unavailable(sqlx::Error::Io(std::io::Error::other(err.to_string())))
            }
            Self::Database(err) => Self::Database(sqlx::Error::Protocol(err.to_string())),
            Self::Corrupt(why) => Self::Corrupt(why.clone()),
        }
    }
}

impl WorkError for RepositoryError {
    /// A refusal, or a stored value refused, follows a complete answer; the
    /// database's own errors may leave the conversation broken off.
    fn leaves_connection_clean(&self) -> bool {
        !matches!(self, Self::Unavailable(_) | Self::Database(_))
    }
}

impl From<sqlx::Error> for RepositoryError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => RepositoryError::Unavailable(err),
            sqlx::Error::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                RepositoryError::Unavailable(err)
            }
            sqlx::Error::Decode(ref source)
                if let Some(rows::CorruptValue(why)) = source.downcast_ref() =>
            {
                RepositoryError::Corrupt(why.clone())
            }
            other => RepositoryError::Database(other),
        }
    }
}

/// Errors that say "the database cannot serve you now", not "your query is
/// wrong": PostgreSQL classes 08 (connection), 53 (resources), 57
/// (operator intervention, e.g. shutdown), 28/3D (login refused, database
/// missing) and 55000 (database not accepting connections); SQLite's busy
/// and locked codes.
fn is_unavailable_code(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    ["08", "53", "57", "28", "3D"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(code, "55000" | "5" | "6" | "261" | "517")
}

#[cfg(test)]
mod tests {
    use super::{RepositoryError, is_unavailable_code, rows};

    #[test]
    fn a_value_the_domain_refuses_is_told_as_corrupt() {
        let refused = sqlx::Error::Decode(Box::new(rows::CorruptValue("size: huge".into())));
        assert!(matches!(
            RepositoryError::from(refused),
            RepositoryError::Corrupt(why) if why == "size: huge"
        ));
        let other = sqlx::Error::Decode("not UTF-8".into());
        assert!(matches!(
            RepositoryError::from(other),
            RepositoryError::Database(_)
        ));
    }

    #[test]
    fn connection_and_capacity_errors_are_unavailable_but_bugs_are_not() {
        for code in [
            "08006", "53300", "57P01", "57P03", "55000", "28P01", "3D000", "5",
        ] {
            assert!(is_unavailable_code(Some(code)), "{code}");
        }
        for code in ["23505", "42P01", "22P02", "19"] {
            assert!(!is_unavailable_code(Some(code)), "{code}");
        }
        assert!(!is_unavailable_code(None));
    }
}

/// What `POST /orders` with an `Idempotency-Key` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedCreate {
    /// First use of the key: this order was created.
    Created(Order),
    /// The key was used before for the same request: that order's id.
    Replayed(OrderId),
    /// The key was used before for a different request.
    KeyReused,
}

/// An idempotent creation request.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    /// The validated request in canonical form, to compare repeats.
    pub request: &'a str,
    pub expires_at: OffsetDateTime,
}

pub type Result<T, E = RepositoryError> = std::result::Result<T, E>;

/// What the backends write differently: PostgreSQL sends an order's items
/// as arrays in one statement, SQLite inserts them one by one.
trait WriteOrder {
    /// With `events`, the order's `order.created` event is written with it.
    async fn insert_order(&mut self, owner: &str, order: &NewOrder, events: bool) -> Result<Order>;
    async fn insert_items(&mut self, id: OrderId, items: &OrderItems) -> Result<()>;
}

/// A `created` order with a fresh id and creation time.
fn new_order(order: &NewOrder) -> Order {
    Order {
        id: Uuid::now_v7(),
        created: now_micros(),
        status: OrderStatus::Created,
        items: order.items.clone(),
        payment: None,
    }
}

/// `pool.$unit(async |$conn| $body)`, `$unit` being `run` or `transaction`,
/// on whichever pool `$db` holds. The closure is compiled once per backend,
/// so one text of an operation binds and decodes each backend's own types.
macro_rules! on_backend {
    ($db:expr, $unit:ident, async |$conn:ident| $body:expr) => {
        match $db {
            Database::Postgres(pool) => pool.$unit(async |$conn| $body).await,
            Database::Sqlite(pool) => sqlite::Pool(pool).$unit(async |$conn| $body).await,
        }
    };
}

/// `$sql` with these binds, on a connection of its own: the rows it changed.
macro_rules! execute {
    ($db:expr, $sql:expr; $($bind:expr),* $(,)?) => {
        on_backend!($db, run, async |conn| {
            Ok(sqlx::query($sql)$(.bind($bind))*.execute(conn).await?.rows_affected())
        })
    };
}

/// `$sql` with these binds, on a connection of its own, its rows read by
/// `$fetch` (`fetch_all`, `fetch_optional`, ...).
macro_rules! fetch {
    ($db:expr, $fetch:ident, $sql:expr; $($bind:expr),* $(,)?) => {
        on_backend!($db, run, async |conn| {
            Ok(sqlx::query_as($sql)$(.bind($bind))*.$fetch(conn).await?)
        })
    };
}

/// Why a conditional change of order `$id` touched no row, asked on `$conn`.
macro_rules! refusal {
    ($conn:expr, $owner:expr, $id:expr) => {
        rows::refusal(
            sqlx::query_as::<_, StatusRow>(sql::STATUS)
                .bind(Id($id))
                .bind($owner)
                .fetch_optional($conn)
                .await?,
        )
    };
}

/// The orders table and its items, on either backend.
#[derive(Debug, Clone)]
pub struct OrdersRepository {
    db: Database,
    /// Every change writes its event to the outbox (`EVENTS_URL` is set).
    events: bool,
    /// PostgreSQL's reads of one order, coalesced under load (SQLite reads
    /// in-process: a statement costs no round trip there).
    reads: Option<Arc<reads::Reads>>,
}

impl OrdersRepository {
    pub fn new(db: Database) -> Self {
        let reads = match &db {
            Database::Postgres(pool) => Some(reads::Reads::new(pool.clone())),
            Database::Sqlite(_) => None,
        };
        Self {
            db,
            events: false,
            reads,
        }
    }

    /// A repository whose every change of an order writes its event.
    pub fn with_events(db: Database) -> Self {
        Self {
            events: true,
            ..Self::new(db)
        }
    }

    /// Reads of one order so far that shared a statement with others.
    pub fn coalesced_reads(&self) -> u64 {
        self.reads.as_ref().map_or(0, |reads| reads.coalesced())
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "create", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "create"))]
    pub async fn create(&self, owner: &str, order: &NewOrder) -> Result<Order> {
        // PostgreSQL writes the order and its items in one statement, atomic
        // on its own; SQLite's several need a transaction.
        let events = self.events;
        match &self.db {
            Database::Postgres(pool) => {
                pool.run(async |conn| conn.insert_order(owner, order, events).await)
                    .await
            }
            Database::Sqlite(pool) => {
                sqlite::Pool(pool)
                    .transaction(async |tx| tx.insert_order(owner, order, events).await)
                    .await
            }
        }
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "get", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "get", order.id = %id, db.operation.batch.size = tracing::field::Empty))]
    pub async fn get(&self, owner: &str, id: OrderId) -> Result<Order> {
        if let Some(reads) = &self.reads {
            return reads.get(owner, id).await;
        }
        let get = sql::get(self.db.is_postgres());
        let rows: Vec<ItemRow> = fetch!(&self.db, fetch_all, get; Id(id), owner)?;
        rows::assemble(rows)?.pop().ok_or(RepositoryError::NotFound)
    }

    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "list", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "list"))]
    pub async fn list(&self, owner: &str, page: PageRequest) -> Result<Page> {
        let list = sql::list(self.db.is_postgres(), page.filter, page.after.is_some());
        let rows: Vec<ItemRow> = on_backend!(&self.db, run, async |conn| {
            let query = sqlx::query_as(list)
                .bind(owner)
                .bind(i64::from(page.limit) + 1);
            let query = match page.after {
                Some(Cursor { created, id }) => query.bind(Time(created)).bind(Id(id)),
                None => query,
            };
            Ok(query.fetch_all(conn).await?)
        })?;
        let mut orders = rows::assemble(rows)?;
        // One row more than asked tells whether another page exists.
        let next = if orders.len() > page.limit as usize {
            orders.truncate(page.limit as usize);
            orders.last().map(|last| Cursor {
                created: last.created,
                id: last.id,
            })
        } else {
            None
        };
        Ok(Page { orders, next })
    }

    /// Replaces the items of a `created` order.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "replace", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "replace", order.id = %id))]
    pub async fn replace(&self, owner: &str, id: OrderId, order: &NewOrder) -> Result<Order> {
        // The first statement writes, so the transaction takes SQLite's write
        // lock at once instead of upgrading a read lock (which can deadlock);
        // on PostgreSQL it locks the order's row.
        let money = sql::money(self.db.is_postgres());
        let (Time(created), payment) = on_backend!(&self.db, transaction, async |tx| {
            let created: Option<Time> = sqlx::query_scalar(sql::TOUCH_CREATED)
                .bind(Id(id))
                .bind(owner)
                .bind(Time(now_micros()))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(created) = created else {
                return Err(refusal!(&mut *tx, owner, id));
            };
            sqlx::query(sql::DELETE_ITEMS)
                .bind(Id(id))
                .execute(&mut *tx)
                .await?;
            tx.insert_items(id, &order.items).await?;
            record_event!(self, tx, id, EventKind::Updated);
            // A `created` order may have had charges declined.
            let money: MoneyRow = sqlx::query_as(money)
                .bind(Id(id))
                .fetch_one(&mut *tx)
                .await?;
            Ok((created, money.payment))
        })?;
        Ok(Order {
            id,
            created,
            status: OrderStatus::Created,
            items: order.items.clone(),
            payment,
        })
    }

    /// Deletes an order unless it is paid for and not yet finished.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "delete", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "delete", order.id = %id))]
    pub async fn delete(&self, owner: &str, id: OrderId) -> Result<()> {
        on_backend!(&self.db, transaction, async |tx| {
            let deleted = sqlx::query(sql::DELETE_ORDER)
                .bind(Id(id))
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(refusal!(&mut *tx, owner, id));
            }
            if self.events {
                let data = serde_json::json!({ "id": id }).to_string();
                record_event!(@insert tx, id, EventKind::Deleted, data);
            }
            Ok(())
        })
    }

    /// Creates an order under an idempotency key, or tells what the key
    /// already stands for.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "create_with_key", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "create_with_key"))]
    pub async fn create_with_key(
        &self,
        owner: &str,
        order: &NewOrder,
        key: IdempotencyKey<'_>,
    ) -> Result<KeyedCreate> {
        // A second round only when the key was purged between the failed
        // insert and the look-up: then it is free again.
        for _ in 0..2 {
            let inserted = on_backend!(&self.db, transaction, async |tx| {
                let created = tx.insert_order(owner, order, self.events).await?;
                // A concurrent request with the same key waits here for ours
                // to commit, then finds the key taken.
                let owned = sqlx::query(sql::UPSERT_KEY)
                    .bind(owner)
                    .bind(key.key)
                    .bind(key.request)
                    .bind(Id(created.id))
                    .bind(Time(key.expires_at))
                    .bind(Time(now_micros()))
                    .fetch_optional(&mut *tx)
                    .await?;
                // A live key of that name exists: `Busy` is the refusal that
                // rolls this order back; the look-up tells what the key means.
                owned.map(|_| created).ok_or(RepositoryError::Busy)
            });
            match inserted {
                Ok(order) => return Ok(KeyedCreate::Created(order)),
                Err(RepositoryError::Busy) => {}
                Err(err) => return Err(err),
            }
            let previous: Option<KeyRow> =
                fetch!(&self.db, fetch_optional, sql::LOOKUP_KEY; owner, key.key)?;
            match previous {
                Some(row) if row.request == key.request => {
                    return Ok(KeyedCreate::Replayed(row.order_id.0));
                }
                Some(_) => return Ok(KeyedCreate::KeyReused),
                None => continue,
            }
        }
        Err(RepositoryError::Busy)
    }

    /// Deletes the idempotency keys (of creates, pays and cancels) that
    /// expired before `now`.
    pub async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<u64> {
        let creates = execute!(&self.db, sql::PURGE_KEYS; Time(now))?;
        Ok(creates + self.purge_expired_action_keys(now).await?)
    }

    /// The highest applied migration, or `None` before the first one.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        let version = on_backend!(&self.db, run, async |conn| {
            match sqlx::query_scalar::<_, Option<i32>>(sql::SCHEMA_VERSION)
                .fetch_one(conn)
                .await
            {
                Ok(version) => Ok(version),
                // No migration has run yet (PostgreSQL's undefined_table;
                // SQLite has only a generic code for it); the connection is
                // fine (readiness asks every few seconds until the Job has run).
                Err(sqlx::Error::Database(err))
                    if err.code().as_deref() == Some("42P01")
                        || err.message().contains("no such table") =>
                {
                    Ok(None)
                }
                Err(err) => Err(err.into()),
            }
        })?;
        Ok(version.map(i64::from))
    }
}

// After the macros above, which they use.
mod action_keys;
mod outbox;
mod steps;

pub use action_keys::{ActionKey, KeyedAction};
pub use outbox::PendingEvent;
pub use steps::{
    AttemptState, Backlog, ChargeClaim, Claimed, DueAttempt, DueOrder, DueRefund, Lease,
    LifecycleState, RefundOutcome, Resolution, StuckItem, Unreadable,
};
