//! Database connections: PostgreSQL in production, SQLite embedded.
//!
//! sqlx's `Any` driver has no uuid or timestamp types, so the two backends
//! are separate pools behind one enum; the repository matches on it.

pub mod migrations;
mod pg_pool;

pub use pg_pool::{PgPool, WorkError, end_transaction};

use std::time::Duration;

use log::LevelFilter;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

use crate::config::{DatabaseSettings, DatabaseUrl};

/// A connection pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Database {
    /// `db.system.name`, as OpenTelemetry spans name the backend.
    pub fn system(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgresql",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// Where a statement's text differs by backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }

    /// Builds the pool without connecting: the service must start (and
    /// report not-ready) while the database is down.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Self {
        match &settings.url {
            DatabaseUrl::Postgres(options) => Database::Postgres(PgPool::new(
                options
                    .clone()
                    .application_name("orders-service")
                    .log_statements(statement_logs()),
                settings.pool_max,
                settings.acquire_timeout,
            )),
            DatabaseUrl::Sqlite(options) => Database::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(settings.pool_max)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_lazy_with(sqlite_options(options).log_statements(statement_logs())),
            ),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// Connections (in use, idle) for the metrics gauge.
    pub fn pool_usage(&self) -> (u32, u32) {
        let (size, idle) = match self {
            Database::Postgres(pool) => pool.usage(),
            Database::Sqlite(pool) => (pool.size(), pool.num_idle() as u32),
        };
        (size.saturating_sub(idle), idle)
    }

    pub async fn close(&self) {
        match self {
            Database::Postgres(pool) => pool.close().await,
            Database::Sqlite(pool) => pool.close().await,
        }
    }

    /// Closes connections idle for ten minutes (SQLite's pool does so
    /// itself), so a quiet replica frees its share of the server's
    /// connection slots.
    pub async fn close_idle(&self) {
        if let Database::Postgres(pool) = self {
            pool.close_idle().await;
        }
    }
}

/// The level sqlx logs each statement at (`sqlx::query`), given the log
/// filter in place. sqlx asks the filter at the end of every statement
/// whether that level is shown, a question that costs a get about 4,000
/// instructions, 6% of it; when the filter cannot show them the lines are
/// turned off, and the question is not asked. Slow statements (a second
/// or more) are still logged at `warn` either way.
fn statement_logs() -> LevelFilter {
    if tracing::enabled!(target: "sqlx::query", tracing::Level::DEBUG) {
        LevelFilter::Debug
    } else {
        LevelFilter::Off
    }
}

/// WAL lets readers proceed while one writer commits; the busy timeout makes
/// concurrent writers wait for each other instead of failing at once.
/// `synchronous = FULL` syncs the log at every commit: a payment attempt or
/// a refund owed that was committed survives a power loss (NORMAL may lose
/// the last commits). It costs about 0.2–0.3 ms per commit on this project's
/// test machine (`bench/sqlite-durability.sh`).
pub fn sqlite_options(options: &SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .clone()
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
}
