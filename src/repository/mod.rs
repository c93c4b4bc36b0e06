//! Storage of orders. One API over both backends; each backend module holds
//! only what differs (column types and binds), the SQL text is shared.

pub mod codec;
mod postgres;
mod rows;
mod sql;
mod sqlite;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::Database;
use crate::domain::{NewOrder, Order, OrderId, OrderStatus};

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
    /// The database could not be reached in time; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored value the domain types refuse: a bug or a manual edit.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// What an upstream call made under `lease` achieved: the order moves from
/// `from` to `to`, records the ids learnt, and keeps the lease until
/// `keep_until` for a next step (`None` drops it).
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub lease: Lease,
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub payment_id: Option<Uuid>,
    pub schedule_id: Option<Uuid>,
    pub keep_until: Option<OffsetDateTime>,
}

impl crate::db::WorkError for RepositoryError {
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
    use super::is_unavailable_code;

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

/// Where an order is in its lifecycle, beyond what clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleState {
    pub status: OrderStatus,
    /// End of the lease of the request now calling upstream for it, if any.
    pub claimed_until: Option<OffsetDateTime>,
    /// The kitchen's schedule, once the order is `progress`.
    pub schedule_id: Option<Uuid>,
}

/// A lease on an order: the right to call upstream for it until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub order_id: OrderId,
    pub until: OffsetDateTime,
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

/// The orders table and its items, on either backend.
#[derive(Debug, Clone)]
pub struct OrdersRepository {
    db: Database,
}

impl OrdersRepository {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn create(&self, owner: &str, order: &NewOrder) -> Result<Order> {
        match &self.db {
            Database::Postgres(pool) => postgres::create(pool, owner, order).await,
            Database::Sqlite(pool) => sqlite::create(pool, owner, order).await,
        }
    }

    pub async fn get(&self, owner: &str, id: OrderId) -> Result<Order> {
        match &self.db {
            Database::Postgres(pool) => postgres::get(pool, owner, id).await,
            Database::Sqlite(pool) => sqlite::get(pool, owner, id).await,
        }
    }

    pub async fn list(&self, owner: &str, page: PageRequest) -> Result<Page> {
        let mut orders = match &self.db {
            Database::Postgres(pool) => postgres::list(pool, owner, page).await?,
            Database::Sqlite(pool) => sqlite::list(pool, owner, page).await?,
        };
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
    pub async fn replace(&self, owner: &str, id: OrderId, order: &NewOrder) -> Result<Order> {
        match &self.db {
            Database::Postgres(pool) => postgres::replace(pool, owner, id, order).await,
            Database::Sqlite(pool) => sqlite::replace(pool, owner, id, order).await,
        }
    }

    /// Deletes an order unless it is paid for and not yet finished.
    pub async fn delete(&self, owner: &str, id: OrderId) -> Result<()> {
        match &self.db {
            Database::Postgres(pool) => postgres::delete(pool, owner, id).await,
            Database::Sqlite(pool) => sqlite::delete(pool, owner, id).await,
        }
    }

    /// Creates an order under an idempotency key, or tells what the key
    /// already stands for.
    pub async fn create_with_key(
        &self,
        owner: &str,
        order: &NewOrder,
        key: IdempotencyKey<'_>,
    ) -> Result<KeyedCreate> {
        // A second round only when the key was purged between the failed
        // insert and the look-up: then it is free again.
        for _ in 0..2 {
            let created = match &self.db {
                Database::Postgres(pool) => {
                    postgres::insert_with_key(pool, owner, order, key).await?
                }
                Database::Sqlite(pool) => sqlite::insert_with_key(pool, owner, order, key).await?,
            };
            if let Some(order) = created {
                return Ok(KeyedCreate::Created(order));
            }
            let previous = match &self.db {
                Database::Postgres(pool) => postgres::lookup_key(pool, owner, key.key).await?,
                Database::Sqlite(pool) => sqlite::lookup_key(pool, owner, key.key).await?,
            };
            match previous {
                Some((request, id)) if request == key.request => {
                    return Ok(KeyedCreate::Replayed(id));
                }
                Some(_) => return Ok(KeyedCreate::KeyReused),
                None => continue,
            }
        }
        Err(RepositoryError::Busy)
    }

    /// Deletes idempotency keys that expired before `now`.
    pub async fn purge_expired_keys(&self, now: OffsetDateTime) -> Result<u64> {
        match &self.db {
            Database::Postgres(pool) => postgres::purge_expired_keys(pool, now).await,
            Database::Sqlite(pool) => sqlite::purge_expired_keys(pool, now).await,
        }
    }

    pub async fn lifecycle_state(&self, owner: &str, id: OrderId) -> Result<LifecycleState> {
        match &self.db {
            Database::Postgres(pool) => postgres::lifecycle_state(pool, owner, id).await,
            Database::Sqlite(pool) => sqlite::lifecycle_state(pool, owner, id).await,
        }
    }

    /// Takes the lease on an order in `status`; `None` when the order is
    /// in another status or another request holds a live lease.
    pub async fn claim(
        &self,
        owner: &str,
        id: OrderId,
        status: OrderStatus,
        until: OffsetDateTime,
    ) -> Result<Option<Lease>> {
        let now = crate::domain::order::now_micros();
        let claimed = match &self.db {
            Database::Postgres(pool) => {
                postgres::claim(pool, owner, id, status, until, now).await?
            }
            Database::Sqlite(pool) => sqlite::claim(pool, owner, id, status, until, now).await?,
        };
        Ok(claimed.then_some(Lease {
            order_id: id,
            until,
        }))
    }

    /// Gives a lease back after a failed upstream call.
    pub async fn release(&self, lease: Lease) -> Result<()> {
        match &self.db {
            Database::Postgres(pool) => postgres::release(pool, lease).await,
            Database::Sqlite(pool) => sqlite::release(pool, lease).await,
        }
    }

    /// Records the outcome of an upstream call. `false` when the lease was
    /// lost meanwhile (nothing is written then).
    pub async fn complete(&self, step: Completion) -> Result<bool> {
        match &self.db {
            Database::Postgres(pool) => postgres::complete(pool, step).await,
            Database::Sqlite(pool) => sqlite::complete(pool, step).await,
        }
    }

    /// Cancels a `created` or `paid` order unless a payment is under way.
    pub async fn cancel_unclaimed(&self, owner: &str, id: OrderId) -> Result<bool> {
        let now = crate::domain::order::now_micros();
        match &self.db {
            Database::Postgres(pool) => postgres::cancel_unclaimed(pool, owner, id, now).await,
            Database::Sqlite(pool) => sqlite::cancel_unclaimed(pool, owner, id, now).await,
        }
    }

    /// The highest applied migration, or `None` before the first one.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        match &self.db {
            Database::Postgres(pool) => postgres::schema_version(pool).await,
            Database::Sqlite(pool) => sqlite::schema_version(pool).await,
        }
    }
}
