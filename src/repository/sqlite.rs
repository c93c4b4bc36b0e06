//! SQLite inserts an order's items one row at a time (each a call into the
//! library, not a round trip), and lends sqlx's own pool's connections the
//! way [`PgPool`](crate::db::PgPool) lends its own.

use sqlx::{SqliteConnection, SqlitePool};

use super::codec::{Id, Time};
use super::outbox::{self, record_event};
use super::{Result, WriteOrder, new_order, sql};
use crate::db::end_transaction;
use crate::domain::{EventKind, NewOrder, Order, OrderId, OrderItems};

const INSERT_ITEM: &str = "INSERT INTO order_items (order_id, position, product, size, quantity) \
     VALUES ($1, $2, $3, $4, $5)";

/// sqlx's own pool, with `run` and `transaction` as on
/// [`PgPool`](crate::db::PgPool) so that one text of each operation serves
/// both.
pub struct Pool<'a>(pub &'a SqlitePool);

impl Pool<'_> {
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        work(&mut *self.0.acquire().await?).await
    }

    /// A write transaction: it begins IMMEDIATE, taking the write lock at
    /// once (waiting for it up to the busy timeout), so that a transaction
    /// that reads and then writes never has to upgrade a read lock, which
    /// SQLite refuses at once ("database is locked") while another writer
    /// holds the lock.
    pub async fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tx = self.0.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = work(&mut *tx).await;
        end_transaction(tx, outcome).await
    }
}

impl WriteOrder for SqliteConnection {
    /// Not atomic on its own: the caller runs it in a transaction.
    async fn insert_order(&mut self, owner: &str, order: &NewOrder, events: bool) -> Result<Order> {
        let created = new_order(order);
        sqlx::query(sql::INSERT_ORDER)
            .bind(Id(created.id))
            .bind(owner)
            .bind(Time(created.created))
            .execute(&mut *self)
            .await?;
        self.insert_items(created.id, &order.items).await?;
        if events {
            let tx = self;
            record_event!(@insert tx, created.id, EventKind::Created, outbox::created_data(&created));
        }
        Ok(created)
    }

    async fn insert_items(&mut self, id: OrderId, items: &OrderItems) -> Result<()> {
        for (position, item) in items.as_slice().iter().enumerate() {
            sqlx::query(INSERT_ITEM)
                .bind(Id(id))
                .bind(position as i64)
                .bind(item.product.as_str())
                .bind(item.size.as_str())
                .bind(i64::from(item.quantity.get()))
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}
