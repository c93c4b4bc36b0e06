//! PostgreSQL: native `uuid` and `timestamptz`, items written with one
//! `UNNEST` statement so a create is a single round trip.

use sqlx::{Connection, Postgres, Row, postgres::PgRow};
use uuid::Uuid;

use super::rows::{self, ItemRow};
use super::{
    Completion, Cursor, IdempotencyKey, Lease, LifecycleState, PageRequest, RepositoryError,
    Result, sql,
};
use crate::db::PgPool;
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

/// The order and its items in one statement (atomic on its own).
async fn insert_order(
    executor: impl sqlx::Executor<'_, Database = Postgres>,
    owner: &str,
    order: &NewOrder,
) -> Result<Order> {
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
        .execute(executor)
        .await?;
    Ok(Order {
        id,
        created,
        status: OrderStatus::Created,
        items: order.items.clone(),
    })
}

pub async fn create(pool: &PgPool, owner: &str, order: &NewOrder) -> Result<Order> {
    let mut conn = pool.acquire().await?;
    let created = insert_order(&mut *conn, owner, order).await?;
    conn.settle();
    Ok(created)
}

/// Creates the order and records its key in one transaction; `None` (and
/// nothing written) when a live key of that name exists.
pub async fn insert_with_key(
    pool: &PgPool,
    owner: &str,
    order: &NewOrder,
    key: IdempotencyKey<'_>,
) -> Result<Option<Order>> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let created = insert_order(&mut *tx, owner, order).await?;
    // A concurrent request with the same key waits here for ours to commit,
    // then finds the key taken.
    let owned: Option<Uuid> = sqlx::query_scalar(sql::UPSERT_KEY)
        .bind(owner)
        .bind(key.key)
        .bind(key.request)
        .bind(created.id)
        .bind(key.expires_at)
        .bind(now_micros())
        .fetch_optional(&mut *tx)
        .await?;
    if owned.is_none() {
        tx.rollback().await?;
        conn.settle();
        return Ok(None);
    }
    tx.commit().await?;
    conn.settle();
    Ok(Some(created))
}

/// The canonical request and order a key stands for.
pub async fn lookup_key(
    pool: &PgPool,
    owner: &str,
    key: &str,
) -> Result<Option<(String, OrderId)>> {
    let mut conn = pool.acquire().await?;
    let found = sqlx::query_as(sql::LOOKUP_KEY)
        .bind(owner)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    conn.settle();
    Ok(found)
}

pub async fn purge_expired_keys(pool: &PgPool, now: time::OffsetDateTime) -> Result<u64> {
    let mut conn = pool.acquire().await?;
    let purged = sqlx::query(sql::PURGE_KEYS)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    conn.settle();
    Ok(purged)
}

pub async fn lifecycle_state(pool: &PgPool, owner: &str, id: OrderId) -> Result<LifecycleState> {
    let mut conn = pool.acquire().await?;
    let row: Option<(String, Option<time::OffsetDateTime>, Option<Uuid>)> =
        sqlx::query_as(sql::LIFECYCLE_STATE)
            .bind(id)
            .bind(owner)
            .fetch_optional(&mut *conn)
            .await?;
    conn.settle();
    let (status, claimed_until, schedule_id) = row.ok_or(RepositoryError::NotFound)?;
    Ok(LifecycleState {
        status: status
            .parse()
            .map_err(|e: crate::domain::status::UnknownStatus| {
                RepositoryError::Corrupt(e.to_string())
            })?,
        claimed_until,
        schedule_id,
    })
}

pub async fn claim(
    pool: &PgPool,
    owner: &str,
    id: OrderId,
    status: OrderStatus,
    until: time::OffsetDateTime,
    now: time::OffsetDateTime,
) -> Result<bool> {
    let mut conn = pool.acquire().await?;
    let claimed = sqlx::query(sql::CLAIM)
        .bind(id)
        .bind(owner)
        .bind(status.as_str())
        .bind(until)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    conn.settle();
    Ok(claimed == 1)
}

pub async fn release(pool: &PgPool, lease: Lease) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query(sql::RELEASE)
        .bind(lease.order_id)
        .bind(lease.until)
        .execute(&mut *conn)
        .await?;
    conn.settle();
    Ok(())
}

pub async fn complete(pool: &PgPool, step: Completion) -> Result<bool> {
    let mut conn = pool.acquire().await?;
    let done = sqlx::query(sql::COMPLETE)
        .bind(step.lease.order_id)
        .bind(step.from.as_str())
        .bind(step.to.as_str())
        .bind(now_micros())
        .bind(step.payment_id)
        .bind(step.schedule_id)
        .bind(step.lease.until)
        .bind(step.keep_until)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    conn.settle();
    Ok(done == 1)
}

pub async fn cancel_unclaimed(
    pool: &PgPool,
    owner: &str,
    id: OrderId,
    now: time::OffsetDateTime,
) -> Result<bool> {
    let mut conn = pool.acquire().await?;
    let cancelled = sqlx::query(sql::CANCEL_UNCLAIMED)
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    conn.settle();
    Ok(cancelled == 1)
}

pub async fn get(pool: &PgPool, owner: &str, id: OrderId) -> Result<Order> {
    let mut conn = pool.acquire().await?;
    let rows = sqlx::query(sql::GET)
        .bind(id)
        .bind(owner)
        .fetch_all(&mut *conn)
        .await?;
    conn.settle();
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
    let mut conn = pool.acquire().await?;
    let rows = query.fetch_all(&mut *conn).await?;
    conn.settle();
    rows::assemble(item_rows(rows)?)
}

async fn status_of(
    executor: impl sqlx::Executor<'_, Database = Postgres>,
    owner: &str,
    id: OrderId,
) -> Result<Option<(String, Option<bool>)>> {
    Ok(sqlx::query_as(sql::STATUS)
        .bind(id)
        .bind(owner)
        .bind(now_micros())
        .fetch_optional(executor)
        .await?)
}

pub async fn replace(pool: &PgPool, owner: &str, id: OrderId, order: &NewOrder) -> Result<Order> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let created: Option<time::OffsetDateTime> = sqlx::query_scalar(sql::TOUCH_CREATED)
        .bind(id)
        .bind(owner)
        .bind(now_micros())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(created) = created else {
        let status = status_of(&mut *tx, owner, id).await?;
        tx.rollback().await?;
        conn.settle();
        return Err(rows::refusal(status));
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
    conn.settle();
    Ok(Order {
        id,
        created,
        status: OrderStatus::Created,
        items: order.items.clone(),
    })
}

pub async fn delete(pool: &PgPool, owner: &str, id: OrderId) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let deleted = sqlx::query(sql::DELETE_ORDER)
        .bind(id)
        .bind(owner)
        .bind(now_micros())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let refused = if deleted == 0 {
        Some(rows::refusal(status_of(&mut *conn, owner, id).await?))
    } else {
        None
    };
    conn.settle();
    refused.map_or(Ok(()), Err)
}

pub async fn schema_version(pool: &PgPool) -> Result<Option<i64>> {
    let mut conn = pool.acquire().await?;
    let version = sqlx::query_scalar::<_, Option<i32>>(sql::SCHEMA_VERSION)
        .fetch_one(&mut *conn)
        .await;
    match version {
        Ok(version) => {
            conn.settle();
            Ok(version.map(i64::from))
        }
        // undefined_table: no migration has run yet; the connection is fine
        // (readiness asks this every few seconds until the Job has run).
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42P01") => {
            conn.settle();
            Ok(None)
        }
        Err(err) => Err(RepositoryError::from(err)),
    }
}
