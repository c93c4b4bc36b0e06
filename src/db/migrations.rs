//! Schema migrations with refinery, driven through sqlx.
//!
//! refinery's own drivers would add tokio-postgres and rusqlite (which
//! clashes with sqlx over `libsqlite3-sys`); the few trait methods below run
//! its migrations on sqlx connections instead, and keep its history table
//! format so refinery's CLI can still read it.

use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};
use refinery_core::{AsyncMigrate, Migration, Report, Runner};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqliteConnection};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::DatabaseUrl;

mod postgres {
    refinery::embed_migrations!("migrations/postgres");
}

mod sqlite {
    refinery::embed_migrations!("migrations/sqlite");
}

/// refinery's default history table.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Serialises concurrent `migrate` runs on PostgreSQL (refinery has no lock
/// of its own). Any constant works; this one spells "orders" in ASCII.
const ADVISORY_LOCK_KEY: i64 = 0x6f72_6465_7273;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot take the migration lock: {0}")]
    Lock(#[source] sqlx::Error),
    #[error(transparent)]
    Migration(#[from] refinery_core::Error),
    #[error("migrations applied, but ANALYZE of {tables} failed: {source}")]
    Analyze {
        tables: String,
        #[source]
        source: sqlx::Error,
    },
}

fn runner_for(url: &DatabaseUrl) -> Runner {
    match url {
        DatabaseUrl::Postgres(_) => postgres::migrations::runner(),
        DatabaseUrl::Sqlite(_) => sqlite::migrations::runner(),
    }
}

/// The schema version this build expects (the highest embedded migration).
pub fn expected_version() -> i64 {
    // Both folders carry the same versions; the PostgreSQL one is canonical.
    postgres::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Applies the missing migrations on a dedicated connection and reports them.
pub async fn run(url: &DatabaseUrl) -> Result<Report, MigrationError> {
    let runner = runner_for(url).set_abort_divergent(true);
    match url {
        DatabaseUrl::Postgres(url) => {
            let mut conn = PgConnection::connect_with(url)
                .await
                .map_err(MigrationError::Connect)?;
            // A session lock: held across refinery's own transactions, and
            // released by PostgreSQL if this process dies.
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(ADVISORY_LOCK_KEY)
                .execute(&mut conn)
                .await
                .map_err(MigrationError::Lock)?;
            let mut migrator = PgMigrator(conn);
            let report = runner.run_async(&mut migrator).await;
            let mut conn = migrator.0;
            let analyzed = match &report {
                Ok(report) => analyze(&mut conn, report.applied_migrations()).await,
                Err(_) => Ok(()),
            };
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(ADVISORY_LOCK_KEY)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
            let report = report?;
            analyzed?;
            Ok(report)
        }
        // No ANALYZE on SQLite: see `tables_changed`.
        DatabaseUrl::Sqlite(url) => {
            let options = super::sqlite_options(url);
            let conn = SqliteConnection::connect_with(&options)
                .await
                .map_err(MigrationError::Connect)?;
            let mut migrator = SqliteMigrator(conn);
            let report = runner.run_async(&mut migrator).await;
            let _ = migrator.0.close().await;
            Ok(report?)
        }
    }
}

/// Gives PostgreSQL statistics of the tables the applied migrations created
/// or changed, at once instead of when autovacuum gets to them: a new
/// column, index or table has none until then, and plans made without
/// statistics are guesses. The service's reads are written to walk their
/// indexes whatever the statistics say; this is for every other plan.
async fn analyze(conn: &mut PgConnection, applied: &[Migration]) -> Result<(), MigrationError> {
    let tables = tables_changed(applied);
    if tables.is_empty() {
        return Ok(());
    }
    let list = tables.join(", ");
    // The names come from the embedded migrations, not from any input.
    sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {list}")))
        .execute(conn)
        .await
        .map(drop)
        .map_err(|source| MigrationError::Analyze {
            tables: list,
            source,
        })
}

/// The tables that `migrations` create, alter, index or write, in order of
/// first mention, leaving out those they drop.
///
/// Used on PostgreSQL only. SQLite keeps statistics only when asked
/// (`ANALYZE`) and never refreshes them by itself, so figures taken when the
/// tables were just created (empty) would stay in `sqlite_stat1` for good
/// and describe a database that no longer exists; without any, its planner
/// takes every index to be selective, which is what the service's queries
/// need.
pub fn tables_changed(migrations: &[Migration]) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    for migration in migrations {
        let Some(sql) = migration.sql() else { continue };
        let text: String = sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        for statement in text.split(';') {
            // Names as written (quotes kept, so that ANALYZE folds their
            // case as the migration did); keywords in lower case.
            let words: Vec<&str> = statement
                .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ','))
                .filter(|w| !w.is_empty())
                .collect();
            let keys: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let name_after = |at: usize| {
                (at..words.len())
                    .find(|&i| !matches!(keys[i], "if" | "not" | "exists" | "only"))
                    .map(|i| words[i].to_owned())
            };
            let table = match keys.as_slice() {
                ["create", "table", ..] | ["alter", "table", ..] => name_after(2),
                ["create", "index" | "unique", ..] => keys
                    .iter()
                    .position(|k| *k == "on")
                    .and_then(|on| name_after(on + 1)),
                ["update", ..] => name_after(1),
                ["insert", "into", ..] | ["delete", "from", ..] => name_after(2),
                ["drop", "table", ..] => {
                    if let Some(dropped) = name_after(2) {
                        tables.retain(|t| *t != dropped);
                    }
                    None
                }
                _ => None,
            };
            if let Some(table) = table
                && !tables.contains(&table)
            {
                tables.push(table);
            }
        }
    }
    tables
}

pub struct PgMigrator(PgConnection);
pub struct SqliteMigrator(SqliteConnection);

/// The same few lines for both connection types; sqlx's generic executor
/// bounds would be longer than the duplication they remove.
macro_rules! refinery_glue {
    ($migrator:ty) => {
        impl AsyncTransaction for $migrator {
            type Error = sqlx::Error;

            async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
                &'a mut self,
                queries: T,
            ) -> Result<usize, Self::Error> {
                let mut tx = self.0.begin().await?;
                let mut count = 0;
                for query in queries {
                    sqlx::raw_sql(AssertSqlSafe(query.to_owned()))
                        .execute(&mut *tx)
                        .await?;
                    count += 1;
                }
                tx.commit().await?;
                Ok(count)
            }
        }

        impl AsyncQuery<Vec<Migration>> for $migrator {
            async fn query<'a>(
                &'a mut self,
                query: &'a str,
            ) -> Result<Vec<Migration>, Self::Error> {
                let rows = sqlx::query(AssertSqlSafe(query.to_owned()))
                    .fetch_all(&mut self.0)
                    .await?;
                rows.iter().map(applied_migration).collect()
            }
        }

        impl AsyncMigrate for $migrator {}
    };
}

refinery_glue!(PgMigrator);
refinery_glue!(SqliteMigrator);

/// Reads a row of refinery's history table (version, name, applied_on, checksum).
fn applied_migration<R: Row>(row: &R) -> Result<Migration, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let decode = |what: &str, err: String| sqlx::Error::Decode(format!("{what}: {err}").into());
    let version: i32 = row.try_get(0)?;
    let name: String = row.try_get(1)?;
    let applied_on: String = row.try_get(2)?;
    let checksum: String = row.try_get(3)?;
    let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339)
        .map_err(|e| decode("applied_on", e.to_string()))?;
    let checksum = checksum
        .parse::<u64>()
        .map_err(|e| decode("checksum", e.to_string()))?;
    Ok(Migration::applied(version, name, applied_on, checksum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_changed_are_those_created_altered_indexed_or_written() {
        let mut applied = postgres::migrations::runner().get_migrations().clone();
        // In the order they apply (the embedded list is not sorted by it).
        applied.sort_by_key(Migration::version);
        assert_eq!(
            tables_changed(&applied),
            [
                "orders",
                "order_items",
                "idempotency_keys",
                "payment_attempts",
                "refunds",
                "resolutions",
                "event_sequences",
                "outbox",
                "action_keys"
            ]
        );
        let later = Migration::unapplied(
            "V9__later",
            "-- CREATE TABLE commented_out (x int);\n\
             CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY \"Mixed\" (a);\n\
             INSERT INTO log SELECT 1; DELETE FROM old; DROP TABLE log;\n\
             CREATE VIEW v AS SELECT 1 FROM refunds ON CONFLICT;",
        )
        .unwrap();
        assert_eq!(tables_changed(&[later]), ["\"Mixed\"", "old"]);
    }
}
