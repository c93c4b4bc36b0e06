//! Applies the schema migrations missing from `DB_URL`'s database, then
//! exits 0. Safe to run twice and as two copies at once (PostgreSQL runs
//! are serialised by an advisory lock). On PostgreSQL it then analyzes the
//! tables the migrations created or changed.

use std::process::ExitCode;

use orders_service::config::{DatabaseUrl, Settings};
use orders_service::db::migrations;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("migrate: {err}");
            return ExitCode::from(2);
        }
    };
    let url = &settings.database.url;
    println!("migrate: database {}", url.redacted());
    match migrations::run(url).await {
        Ok(report) => {
            let applied = report.applied_migrations();
            if applied.is_empty() {
                println!(
                    "migrate: schema already at version {}",
                    migrations::expected_version()
                );
            }
            for migration in applied {
                println!("migrate: applied {migration}");
            }
            let analyzed = migrations::tables_changed(applied);
            if matches!(url, DatabaseUrl::Postgres(_)) && !analyzed.is_empty() {
                println!("migrate: analyzed {}", analyzed.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("migrate: failed: {err}");
            ExitCode::FAILURE
        }
    }
}
