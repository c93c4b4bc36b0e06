//! Storage of orders. One API over both backends; each backend module holds
//! only what differs (column types and binds), the SQL text is shared.

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
    /// The database could not be reached in time; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored value the domain types refuse: a bug or a manual edit.
    #[error("corrupt row: {0}")]
    Corrupt(String),
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

    /// Moves an order to `to` if, and only if, its status is one of `from`
    /// at that instant: of two racing requests exactly one wins.
    pub async fn transition(
        &self,
        owner: &str,
        id: OrderId,
        from: &[OrderStatus],
        to: OrderStatus,
    ) -> Result<Order> {
        match &self.db {
            Database::Postgres(pool) => postgres::transition(pool, owner, id, from, to).await,
            Database::Sqlite(pool) => sqlite::transition(pool, owner, id, from, to).await,
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
