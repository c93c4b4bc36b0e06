//! The `migrate` binary against real databases.

use std::process::{Command, Output};

use orders_service::db::migrations;
use sqlx::Connection;

use crate::helpers::{Backend, TestDatabase};

fn migrate(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .env("DB_URL", url)
        .output()
        .expect("migrate runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn history_rows(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM refinery_schema_history")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn migrate_applies_the_schema_then_a_second_run_is_a_no_op() {
    let db = TestDatabase::create(Backend::Postgres).await;
    // Trust authentication ignores the password; it must not be printed.
    let with_password = db.url.replacen("postgres@", "postgres:hunter2@", 1);
    let first = migrate(&with_password);
    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout(&first).contains("applied V1__create_orders"),
        "{}",
        stdout(&first)
    );
    assert!(!stdout(&first).contains("hunter2"), "no password printed");
    let second = migrate(&db.url);
    assert!(second.status.success(), "{second:?}");
    assert!(
        stdout(&second).contains("already at version"),
        "{}",
        stdout(&second)
    );
    assert_eq!(history_rows(&db.url).await, migrations::expected_version());
}

#[tokio::test]
async fn migrate_analyzes_the_tables_it_created() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let output = migrate(&db.url);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout(&output)
            .contains("analyzed orders, order_items, idempotency_keys, payment_attempts, refunds"),
        "{}",
        stdout(&output)
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // reltuples is -1 until a table is first analyzed (or vacuumed); the
    // statistics views say which of the two it was.
    let never: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class \
         WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace \
         AND relname <> 'refinery_schema_history' AND reltuples < 0 ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(never.is_empty(), "never analyzed: {never:?}");
    let mut unanalyzed: Vec<String> = Vec::new();
    for _ in 0..50 {
        // Each query sees the statistics as they are now, not a snapshot.
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut conn)
            .await
            .unwrap();
        unanalyzed = sqlx::query_scalar(
            "SELECT relname::text FROM pg_stat_user_tables \
             WHERE relname <> 'refinery_schema_history' AND last_analyze IS NULL ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        if unanalyzed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(unanalyzed.is_empty(), "no ANALYZE recorded: {unanalyzed:?}");
}

#[tokio::test]
async fn two_migrate_runs_started_together_both_succeed_and_apply_once() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
            .env("DB_URL", &db.url)
            .output()
    };
    let (a, b) = tokio::join!(spawn(), spawn());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.status.success(), "{a:?}");
    assert!(b.status.success(), "{b:?}");
    let applied = [&a, &b]
        .iter()
        .filter(|o| stdout(o).contains("applied V1"))
        .count();
    assert_eq!(applied, 1, "exactly one run applied the migration");
    assert_eq!(history_rows(&db.url).await, migrations::expected_version());
}

#[tokio::test]
async fn migrate_refuses_an_unknown_database_url_naming_the_variable() {
    let output = migrate("mysql://localhost/orders");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DB_URL"));
}

#[tokio::test]
async fn migrate_creates_and_migrates_an_sqlite_file() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let output = migrate(&db.url);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains("applied V1"));
    assert!(migrate(&db.url).status.success());
}
