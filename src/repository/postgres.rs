//! PostgreSQL: native `uuid` and `timestamptz`, items written with one
//! `UNNEST` statement so a create is a single round trip.

use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, postgres::PgRow};
use uuid::Uuid;

use super::rows::{self, ItemRow};
use super::{Cursor, PageRequest, RepositoryError, Result, sql};
use crate::domain::order::now_micros;
use crate::domain::{NewOrder, Order, OrderId, OrderItems, OrderStatus};

/// Creates the order and its items in one statement (atomic on its own).
const CREATE: &str = "WITH new_order AS ( \
         INSERT INTO orders (id, owner, status, created, updated) \
         VALUES ($1, $2, 'created', $3, $3)) \
     INSERT INTO order_items (order_id, position, product, size, quantity) \
     SELECT $1, t.position, t.product, t.size, t.quantity \
     FROM UNNEST($4::int4[], $5::text[], $6::text[], $7::int4[]) \
         AS t(position, product, size, quantity)";

const INSERT_ITEMS: &str = "INSERT INTO order_items (order_id, position, product, size, quantity) \
     SELECT $1, t.position, t.product, t.size, t.quantity \
     FROM UNNEST($2::int4[], $3::text[], $4::text[], $5::int4[]) \
         AS t(position, product, size, quantity)";

/// Items as the four parallel arrays `UNNEST` takes.
struct ItemColumns {
    positions: Vec<i32>,
    products: Vec<String>,
    sizes: Vec<&'static str>,
    quantities: Vec<i32>,
}

impl ItemColumns {
    fn of(items: &OrderItems) -> Self {
        let items = items.as_slice();
        Self {
            positions: (0..items.len() as i32).collect(),
            products: items
                .iter()
                .map(|i| i.product.as_str().to_owned())
                .collect(),
            sizes: items.iter().map(|i| i.size.as_str()).collect(),
            quantities: items.iter().map(|i| i.quantity.get() as i32).collect(),
        }
    }
}

fn item_row(row: PgRow) -> Result<ItemRow, sqlx::Error> {
    Ok(ItemRow {
        id: row.try_get(0)?,
        created: row.try_get(1)?,
        status: row.try_get(2)?,
        product: row.try_get(3)?,
        size: row.try_get(4)?,
        quantity: i64::from(row.try_get::<i32, _>(5)?),
    })
}

fn item_rows(rows: Vec<PgRow>) -> Result<Vec<ItemRow>> {
    Ok(rows
        .into_iter()
        .map(item_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

pub async fn create(pool: &PgPool, owner: &str, order: &NewOrder) -> Result<Order> {
    let id = Uuid::now_v7();
    let created = now_micros();
    let columns = ItemColumns::of(&order.items);
    sqlx::query(CREATE)
        .bind(id)
        .bind(owner)
        .bind(created)
        .bind(&columns.positions)
        .bind(&columns.products)
        .bind(&columns.sizes)
        .bind(&columns.quantities)
        .execute(pool)
        .await?;
    Ok(Order {
        id,
        created,
        status: OrderStatus::Created,
        items: order.items.clone(),
    })
}

pub async fn get(pool: &PgPool, owner: &str, id: OrderId) -> Result<Order> {
    let rows = sqlx::query(sql::GET)
        .bind(id)
        .bind(owner)
        .fetch_all(pool)
        .await?;
    rows::single(item_rows(rows)?)
}

pub async fn list(pool: &PgPool, owner: &str, page: PageRequest) -> Result<Vec<Order>> {
    let query = sqlx::query(sql::list(page.filter, page.after.is_some()))
        .bind(owner)
        .bind(i64::from(page.limit) + 1);
    let query = match page.after {
        Some(Cursor { created, id }) => query.bind(created).bind(id),
        None => query,
    };
    rows::assemble(item_rows(query.fetch_all(pool).await?)?)
}

async fn status_of(
    executor: impl sqlx::Executor<'_, Database = Postgres>,
    owner: &str,
    id: OrderId,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(sql::STATUS)
        .bind(id)
        .bind(owner)
        .fetch_optional(executor)
        .await?)
}

pub async fn replace(pool: &PgPool, owner: &str, id: OrderId, order: &NewOrder) -> Result<Order> {
    let mut tx = pool.begin().await?;
    let created: Option<time::OffsetDateTime> = sqlx::query_scalar(sql::TOUCH_CREATED)
        .bind(id)
        .bind(owner)
        .bind(now_micros())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(created) = created else {
        return Err(rows::refusal(status_of(&mut *tx, owner, id).await?));
    };
    sqlx::query(sql::DELETE_ITEMS)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let columns = ItemColumns::of(&order.items);
    sqlx::query(INSERT_ITEMS)
        .bind(id)
        .bind(&columns.positions)
        .bind(&columns.products)
        .bind(&columns.sizes)
        .bind(&columns.quantities)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Order {
        id,
        created,
        status: OrderStatus::Created,
        items: order.items.clone(),
    })
}

pub async fn delete(pool: &PgPool, owner: &str, id: OrderId) -> Result<()> {
    let deleted = sqlx::query(sql::DELETE_ORDER)
        .bind(id)
        .bind(owner)
        .execute(pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(rows::refusal(status_of(pool, owner, id).await?));
    }
    Ok(())
}

pub async fn transition(
    pool: &PgPool,
    owner: &str,
    id: OrderId,
    from: &[OrderStatus],
    to: OrderStatus,
) -> Result<Order> {
    // The update and the read of the items are one statement, so the order
    // returned is exactly the one this request moved.
    let statement = format!(
        "WITH moved AS (UPDATE orders SET status = $3, updated = $4 \
             WHERE id = $1 AND owner = $2 AND {} RETURNING id, created, status) \
         SELECT m.id, m.created, m.status, i.product, i.size, i.quantity \
         FROM moved m JOIN order_items i ON i.order_id = m.id ORDER BY i.position",
        sql::status_in(from)
    );
    let rows = sqlx::query(AssertSqlSafe(statement))
        .bind(id)
        .bind(owner)
        .bind(to.as_str())
        .bind(now_micros())
        .fetch_all(pool)
        .await?;
    if rows.is_empty() {
        return Err(rows::refusal(status_of(pool, owner, id).await?));
    }
    rows::single(item_rows(rows)?)
}

pub async fn schema_version(pool: &PgPool) -> Result<Option<i64>> {
    match sqlx::query_scalar::<_, Option<i32>>(sql::SCHEMA_VERSION)
        .fetch_one(pool)
        .await
    {
        Ok(version) => Ok(version.map(i64::from)),
        // undefined_table: no migration has run yet.
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42P01") => Ok(None),
        Err(err) => Err(RepositoryError::from(err)),
    }
}
