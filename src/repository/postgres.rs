//! PostgreSQL writes an order's items as four parallel arrays through one
//! `UNNEST`, so that a create is a single statement and round trip.

use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::query::Query;

use super::codec::{Id, Time};
use super::{Result, WriteOrder, new_order, outbox};
use crate::domain::{NewOrder, Order, OrderId, OrderItems};

/// Creates the order and its items in one statement (atomic on its own).
const CREATE: &str = "WITH new_order AS ( \
         INSERT INTO orders (id, owner, status, created, updated) \
         VALUES ($1, $2, 'created', $3, $3)) \
     INSERT INTO order_items (order_id, position, product, size, quantity) \
     SELECT $1, t.position, t.product, t.size, t.quantity \
     FROM UNNEST($4::int4[], $5::text[], $6::text[], $7::int4[]) \
         AS t(position, product, size, quantity)";

/// [`CREATE`] with the order's first event (`$8` its id, `$9` its data,
/// `$10` its trace) in the same statement.
const CREATE_WITH_EVENT: &str = "WITH new_order AS ( \
         INSERT INTO orders (id, owner, status, created, updated) \
         VALUES ($1, $2, 'created', $3, $3)), \
     first_event AS (INSERT INTO event_sequences (order_id, last) VALUES ($1, 1)), \
     event AS (INSERT INTO outbox (id, order_id, sequence, kind, occurred, data, traceparent) \
         VALUES ($8, $1, 1, 'order.created', $3, $9, $10)) \
     INSERT INTO order_items (order_id, position, product, size, quantity) \
     SELECT $1, t.position, t.product, t.size, t.quantity \
     FROM UNNEST($4::int4[], $5::text[], $6::text[], $7::int4[]) \
         AS t(position, product, size, quantity)";

const INSERT_ITEMS: &str = "INSERT INTO order_items (order_id, position, product, size, quantity) \
     SELECT $1, t.position, t.product, t.size, t.quantity \
     FROM UNNEST($2::int4[], $3::text[], $4::text[], $5::int4[]) \
         AS t(position, product, size, quantity)";

/// Binds the items as the arrays (position, product, size, quantity).
fn bind_items<'q>(
    query: Query<'q, Postgres, PgArguments>,
    items: &OrderItems,
) -> Query<'q, Postgres, PgArguments> {
    let items = items.as_slice();
    query
        .bind((0..items.len() as i32).collect::<Vec<_>>())
        .bind(
            items
                .iter()
                .map(|i| i.product.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(items.iter().map(|i| i.size.as_str()).collect::<Vec<_>>())
        .bind(
            items
                .iter()
                .map(|i| i.quantity.get() as i32)
                .collect::<Vec<_>>(),
        )
}

impl WriteOrder for PgConnection {
    async fn insert_order(&mut self, owner: &str, order: &NewOrder, events: bool) -> Result<Order> {
        let created = new_order(order);
        let sql = if events { CREATE_WITH_EVENT } else { CREATE };
        let query = sqlx::query(sql)
            .bind(Id(created.id))
            .bind(owner)
            .bind(Time(created.created));
        let query = bind_items(query, &order.items);
        let query = if events {
            query
                .bind(Id(uuid::Uuid::now_v7()))
                .bind(outbox::created_data(&created))
                .bind(crate::trace_context::current())
        } else {
            query
        };
        query.execute(self).await?;
        Ok(created)
    }

    async fn insert_items(&mut self, id: OrderId, items: &OrderItems) -> Result<()> {
        bind_items(sqlx::query(INSERT_ITEMS).bind(Id(id)), items)
            .execute(self)
            .await?;
        Ok(())
    }
}
