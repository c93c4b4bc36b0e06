//! SQLite: ids as hyphenated text, times as integer microseconds (UTC), so
//! both sort and compare exactly as on PostgreSQL.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::rows::{self, ItemRow};
use super::{
    Completion, Cursor, IdempotencyKey, Lease, LifecycleState, PageRequest, RepositoryError,
    Result, sql,
};
use crate::domain::order::now_micros;
use crate::domain::{NewOrder, Order, OrderId, OrderItems, OrderStatus};

const INSERT_ITEM: &str = "INSERT INTO order_items (order_id, position, product, size, quantity) \
     VALUES ($1, $2, $3, $4, $5)";

fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

fn from_micros(micros: i64) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

fn text(id: Uuid) -> uuid::fmt::Hyphenated {
    id.hyphenated()
}

fn item_row(row: SqliteRow) -> Result<ItemRow, sqlx::Error> {
    let id: String = row.try_get(0)?;
    Ok(ItemRow {
        id: Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(e.into()))?,
        created: from_micros(row.try_get(1)?)?,
        status: row.try_get(2)?,
        product: row.try_get(3)?,
        size: row.try_get(4)?,
        quantity: row.try_get(5)?,
    })
}

fn item_rows(rows: Vec<SqliteRow>) -> Result<Vec<ItemRow>> {
    Ok(rows
        .into_iter()
        .map(item_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

async fn insert_items(
    conn: &mut sqlx::SqliteConnection,
    id: OrderId,
    items: &OrderItems,
) -> Result<()> {
    for (position, item) in items.as_slice().iter().enumerate() {
        sqlx::query(INSERT_ITEM)
            .bind(text(id))
            .bind(position as i64)
            .bind(item.product.as_str())
            .bind(item.size.as_str())
            .bind(i64::from(item.quantity.get()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn insert_order(
    conn: &mut sqlx::SqliteConnection,
    owner: &str,
    order: &NewOrder,
) -> Result<Order> {
    let id = Uuid::now_v7();
    let created = now_micros();
    sqlx::query(sql::INSERT_ORDER)
        .bind(text(id))
        .bind(owner)
        .bind(micros(created))
        .execute(&mut *conn)
        .await?;
    insert_items(conn, id, &order.items).await?;
    Ok(Order {
        id,
        created,
        status: OrderStatus::Created,
        items: order.items.clone(),
    })
}

pub async fn create(pool: &SqlitePool, owner: &str, order: &NewOrder) -> Result<Order> {
    let mut tx = pool.begin().await?;
    let order = insert_order(&mut tx, owner, order).await?;
    tx.commit().await?;
    Ok(order)
}

/// Creates the order and records its key in one transaction; `None` (and
/// nothing written) when a live key of that name exists.
pub async fn insert_with_key(
    pool: &SqlitePool,
    owner: &str,
    order: &NewOrder,
    key: IdempotencyKey<'_>,
) -> Result<Option<Order>> {
    let mut tx = pool.begin().await?;
    let created = insert_order(&mut tx, owner, order).await?;
    let owned: Option<String> = sqlx::query_scalar(sql::UPSERT_KEY)
        .bind(owner)
        .bind(key.key)
        .bind(key.request)
        .bind(text(created.id))
        .bind(micros(key.expires_at))
        .bind(micros(now_micros()))
        .fetch_optional(&mut *tx)
        .await?;
    if owned.is_none() {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(created))
}

/// The canonical request and order a key stands for.
pub async fn lookup_key(
    pool: &SqlitePool,
    owner: &str,
    key: &str,
) -> Result<Option<(String, OrderId)>> {
    let row: Option<(String, String)> = sqlx::query_as(sql::LOOKUP_KEY)
        .bind(owner)
        .bind(key)
        .fetch_optional(pool)
        .await?;
    row.map(|(request, id)| {
        Uuid::parse_str(&id)
            .map(|id| (request, id))
            .map_err(|e| RepositoryError::Corrupt(e.to_string()))
    })
    .transpose()
}

pub async fn purge_expired_keys(pool: &SqlitePool, now: OffsetDateTime) -> Result<u64> {
    Ok(sqlx::query(sql::PURGE_KEYS)
        .bind(micros(now))
        .execute(pool)
        .await?
        .rows_affected())
}

pub async fn lifecycle_state(
    pool: &SqlitePool,
    owner: &str,
    id: OrderId,
) -> Result<LifecycleState> {
    let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(sql::LIFECYCLE_STATE)
        .bind(text(id))
        .bind(owner)
        .fetch_optional(pool)
        .await?;
    let (status, claimed_until, schedule_id) = row.ok_or(RepositoryError::NotFound)?;
    let corrupt = |e: String| RepositoryError::Corrupt(e);
    Ok(LifecycleState {
        status: status
            .parse()
            .map_err(|e: crate::domain::status::UnknownStatus| corrupt(e.to_string()))?,
        claimed_until: claimed_until.map(from_micros).transpose()?,
        schedule_id: schedule_id
            .map(|id| Uuid::parse_str(&id))
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

pub async fn claim(
    pool: &SqlitePool,
    owner: &str,
    id: OrderId,
    status: OrderStatus,
    until: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<bool> {
    let claimed = sqlx::query(sql::CLAIM)
        .bind(text(id))
        .bind(owner)
        .bind(status.as_str())
        .bind(micros(until))
        .bind(micros(now))
        .execute(pool)
        .await?
        .rows_affected();
    Ok(claimed == 1)
}

pub async fn release(pool: &SqlitePool, lease: Lease) -> Result<()> {
    sqlx::query(sql::RELEASE)
        .bind(text(lease.order_id))
        .bind(micros(lease.until))
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn complete(pool: &SqlitePool, step: Completion) -> Result<bool> {
    let done = sqlx::query(sql::COMPLETE)
        .bind(text(step.lease.order_id))
        .bind(step.from.as_str())
        .bind(step.to.as_str())
        .bind(micros(now_micros()))
        .bind(step.payment_id.map(text))
        .bind(step.schedule_id.map(text))
        .bind(micros(step.lease.until))
        .bind(step.keep_until.map(micros))
        .execute(pool)
        .await?
        .rows_affected();
    Ok(done == 1)
}

pub async fn cancel_unclaimed(
    pool: &SqlitePool,
    owner: &str,
    id: OrderId,
    now: OffsetDateTime,
) -> Result<bool> {
    let cancelled = sqlx::query(sql::CANCEL_UNCLAIMED)
        .bind(text(id))
        .bind(owner)
        .bind(micros(now))
        .execute(pool)
        .await?
        .rows_affected();
    Ok(cancelled == 1)
}

pub async fn get(pool: &SqlitePool, owner: &str, id: OrderId) -> Result<Order> {
    let rows = sqlx::query(sql::GET)
        .bind(text(id))
        .bind(owner)
        .fetch_all(pool)
        .await?;
    rows::single(item_rows(rows)?)
}

pub async fn list(pool: &SqlitePool, owner: &str, page: PageRequest) -> Result<Vec<Order>> {
    let query = sqlx::query(sql::list(page.filter, page.after.is_some()))
        .bind(owner)
        .bind(i64::from(page.limit) + 1);
    let query = match page.after {
        Some(Cursor { created, id }) => query.bind(micros(created)).bind(text(id)),
        None => query,
    };
    rows::assemble(item_rows(query.fetch_all(pool).await?)?)
}

async fn status_of(
    executor: impl sqlx::Executor<'_, Database = Sqlite>,
    owner: &str,
    id: OrderId,
) -> Result<Option<(String, Option<bool>)>> {
    Ok(sqlx::query_as(sql::STATUS)
        .bind(text(id))
        .bind(owner)
        .bind(micros(now_micros()))
        .fetch_optional(executor)
        .await?)
}

pub async fn replace(
    pool: &SqlitePool,
    owner: &str,
    id: OrderId,
    order: &NewOrder,
) -> Result<Order> {
    // The first statement writes, so the transaction takes SQLite's write
    // lock at once instead of upgrading a read lock (which can deadlock).
    let mut tx = pool.begin().await?;
    let created: Option<i64> = sqlx::query_scalar(sql::TOUCH_CREATED)
        .bind(text(id))
        .bind(owner)
        .bind(micros(now_micros()))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(created) = created else {
        return Err(rows::refusal(status_of(&mut *tx, owner, id).await?));
    };
    sqlx::query(sql::DELETE_ITEMS)
        .bind(text(id))
        .execute(&mut *tx)
        .await?;
    insert_items(&mut tx, id, &order.items).await?;
    tx.commit().await?;
    Ok(Order {
        id,
        created: from_micros(created)?,
        status: OrderStatus::Created,
        items: order.items.clone(),
    })
}

pub async fn delete(pool: &SqlitePool, owner: &str, id: OrderId) -> Result<()> {
    let deleted = sqlx::query(sql::DELETE_ORDER)
        .bind(text(id))
        .bind(owner)
        .bind(micros(now_micros()))
        .execute(pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(rows::refusal(status_of(pool, owner, id).await?));
    }
    Ok(())
}

pub async fn schema_version(pool: &SqlitePool) -> Result<Option<i64>> {
    match sqlx::query_scalar::<_, Option<i64>>(sql::SCHEMA_VERSION)
        .fetch_one(pool)
        .await
    {
        Ok(version) => Ok(version),
        Err(sqlx::Error::Database(err)) if err.message().contains("no such table") => Ok(None),
        Err(err) => Err(RepositoryError::from(err)),
    }
}
