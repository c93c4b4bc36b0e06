//! The PostgreSQL pool skips sqlx's ping on every checkout; these tests pin
//! down what makes that safe: a connection whose work was cut off, failed or
//! was left inside a transaction is closed, never handed out again, and one
//! whose transaction was refused is handed out only once rolled back.

use std::str::FromStr;
use std::time::Duration;

use orders_service::db::PgPool;
use orders_service::repository::RepositoryError;
use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;

use crate::helpers::admin_url;

/// One connection, so every checkout gets the same one back.
fn single_connection_pool() -> PgPool {
    let options = PgConnectOptions::from_str(&admin_url()).expect("TEST_DATABASE_URL");
    PgPool::new(options, 1, Duration::from_secs(5))
}

/// A connection outside the pool, to watch the pool's sessions.
async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect_with(&PgConnectOptions::from_str(&admin_url()).unwrap())
        .await
        .unwrap()
}

/// The one value `sql` selects, on a connection from `pool`.
async fn answer<T>(pool: &PgPool, sql: &'static str) -> Result<T, sqlx::Error>
where
    (T,): for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    pool.run(async |conn| sqlx::query_scalar(sql).fetch_one(conn).await)
        .await
}

#[tokio::test]
async fn a_statement_cut_off_half_way_does_not_leak_into_the_next_checkout() {
    let pool = single_connection_pool();
    let slow = answer::<i32>(&pool, "SELECT 7 FROM pg_sleep(0.3)");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err(),
        "the slow statement was cut off"
    );
    // The next user must read its own answer, not the abandoned 7.
    assert_eq!(answer::<i32>(&pool, "SELECT 42").await.unwrap(), 42);
    assert_eq!(answer::<i32>(&pool, "SELECT 43").await.unwrap(), 43);
}

/// Runs a transaction that creates a temporary table and cuts it off before
/// its commit, as a request that timed out would be; the session's pid.
async fn cut_off_transaction(pool: &PgPool) -> i32 {
    let (ran, statements_done) = tokio::sync::oneshot::channel();
    let work = pool.transaction(async |tx| {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("CREATE TEMPORARY TABLE dropped_work (x int)")
            .execute(&mut *tx)
            .await?;
        ran.send(pid).unwrap();
        std::future::pending::<Result<(), sqlx::Error>>().await
    });
    tokio::select! {
        outcome = work => panic!("the transaction ended: {outcome:?}"),
        pid = statements_done => pid.unwrap(),
    }
}

#[tokio::test]
async fn a_transaction_dropped_without_commit_is_rolled_back_before_reuse() {
    let pool = single_connection_pool();
    cut_off_transaction(&pool).await;
    // Same connection (pool of one), so the temporary table would be
    // visible had the transaction survived into this checkout.
    let rolled_back: bool = answer(&pool, "SELECT to_regclass('pg_temp.dropped_work') IS NULL")
        .await
        .unwrap();
    assert!(
        rolled_back,
        "the next user runs outside the old transaction"
    );
}

#[tokio::test]
async fn a_refused_transaction_is_rolled_back_and_its_connection_kept() {
    let pool = single_connection_pool();
    let pid: i32 = answer(&pool, "SELECT pg_backend_pid()").await.unwrap();
    let refused = pool
        .transaction(async |tx| {
            sqlx::query("CREATE TEMPORARY TABLE refused_work (x int)")
                .execute(&mut *tx)
                .await?;
            Err::<(), _>(RepositoryError::NotFound)
        })
        .await;
    assert!(matches!(refused, Err(RepositoryError::NotFound)));
    // Rolled back already, not merely queued to be at the next checkout.
    let state: String = sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(&mut admin().await)
        .await
        .unwrap();
    assert_eq!(state, "idle");
    let same: i32 = answer(&pool, "SELECT pg_backend_pid()").await.unwrap();
    assert_eq!(same, pid, "a clean refusal keeps the connection");
    let rolled_back: bool = answer(&pool, "SELECT to_regclass('pg_temp.refused_work') IS NULL")
        .await
        .unwrap();
    assert!(rolled_back, "and it comes back outside the transaction");
}

#[tokio::test]
async fn a_connection_whose_session_died_fails_once_and_is_then_replaced() {
    let pool = single_connection_pool();
    let pid: i32 = answer(&pool, "SELECT pg_backend_pid()").await.unwrap();
    let mut admin = admin().await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(terminated);
    // The settled connection goes out unchecked, so its next statement
    // meets the closed session (the request answers 503)...
    assert!(answer::<i32>(&pool, "SELECT 1").await.is_err());
    // ...and that failure makes the pool drop it and connect anew.
    let new_pid: i32 = answer(&pool, "SELECT pg_backend_pid()").await.unwrap();
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn an_abandoned_transaction_ends_at_once_not_at_the_next_checkout() {
    let pool = PgPool::new(
        PgConnectOptions::from_str(&admin_url()).unwrap(),
        2,
        Duration::from_secs(5),
    );
    let pid = cut_off_transaction(&pool).await;
    // Nobody takes a connection from the pool again, yet the session (and
    // every lock its transaction held) must go.
    let mut admin = admin().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_optional(&mut admin)
                .await
                .unwrap();
        match state {
            None => break,
            Some(state) => assert!(
                tokio::time::Instant::now() < deadline,
                "session {pid} still {state}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
