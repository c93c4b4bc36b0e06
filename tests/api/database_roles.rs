//! Least privilege on PostgreSQL: the schema's owner runs the migrations, the
//! service runs as a user that may read and write rows and nothing else.
//! The roles and grants are made by the SQL of the EKS guide (docs/deploy-eks.md), run as
//! written, so the guide cannot drift from what is tested here.

use std::time::Duration;

use orders_service::config::DatabaseUrl;
use orders_service::db::migrations;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use crate::helpers::{TestDatabase, admin_url, block_on_own_thread, latte_order, spawn_on};

/// The guide's SQL: the here-document fed to psql in docs/deploy-eks.md.
fn readme_sql() -> &'static str {
    let readme = include_str!("../../docs/deploy-eks.md");
    let start = readme
        .find("<<SQL\n")
        .expect("docs/deploy-eks.md creates the database users with a <<SQL here-document")
        + "<<SQL\n".len();
    let length = readme[start..]
        .find("\nSQL\n")
        .expect("the here-document ends with SQL");
    &readme[start..start + length]
}

/// The statements of a script, one by one (CREATE DATABASE cannot run in
/// the implicit transaction of a multi-statement query).
fn statements(script: &str) -> Vec<String> {
    script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Two roles and a database named for one test, dropped when it ends
/// (roles belong to the whole server, so even a failed test drops them).
struct Roles {
    admin: PgConnectOptions,
    database: String,
    owner: String,
    app: String,
    owner_password: String,
    app_password: String,
}

impl Roles {
    fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let DatabaseUrl::Postgres(admin) = DatabaseUrl::parse(&admin_url()).unwrap() else {
            panic!("TEST_DATABASE_URL must be a PostgreSQL URL");
        };
        Self {
            admin,
            database: format!("orders_roles_{id}"),
            owner: format!("orders_owner_{id}"),
            app: format!("orders_app_{id}"),
            owner_password: Uuid::new_v4().simple().to_string(),
            app_password: Uuid::new_v4().simple().to_string(),
        }
    }

    /// The guide's SQL with this test's names: (on the server's default
    /// database, on the new database).
    fn guide(&self) -> (Vec<String>, Vec<String>) {
        let sql = readme_sql()
            .replace("orders_owner", &self.owner)
            .replace("orders_app", &self.app)
            .replace("$DB_OWNER_PASSWORD", &self.owner_password)
            .replace("$DB_APP_PASSWORD", &self.app_password)
            .replace("DATABASE orders ", &format!("DATABASE {} ", self.database));
        let (server, database) = sql
            .split_once("\\connect orders\n")
            .expect("the guide connects to the new database with \\connect orders");
        (statements(server), statements(database))
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!(
            "postgresql://{user}:{password}@{}:{}/{}",
            self.admin.get_host(),
            self.admin.get_port(),
            self.database
        )
    }

    fn owner_url(&self) -> String {
        self.url(&self.owner, &self.owner_password)
    }

    fn app_url(&self) -> String {
        self.url(&self.app, &self.app_password)
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let statements = [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            // The database held all their privileges; nothing else does.
            format!("DROP ROLE IF EXISTS {}", self.app),
            format!("DROP ROLE IF EXISTS {}", self.owner),
        ];
        block_on_own_thread(async move {
            if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                for statement in statements {
                    if let Err(err) = sqlx::raw_sql(AssertSqlSafe(statement.clone()))
                        .execute(&mut conn)
                        .await
                    {
                        eprintln!("cleanup: {statement}: {err}");
                    }
                }
            }
        });
    }
}

async fn run_all(options: &PgConnectOptions, statements: &[String]) {
    let mut conn = PgConnection::connect_with(options).await.unwrap();
    for statement in statements {
        sqlx::raw_sql(AssertSqlSafe(statement.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err}"));
    }
}

/// What PostgreSQL answers `statement` run as `url`'s user: the SQLSTATE of
/// its error, or None when it succeeded.
async fn refusal(url: &str, statement: &str) -> Option<String> {
    let DatabaseUrl::Postgres(options) = DatabaseUrl::parse(url).unwrap() else {
        unreachable!()
    };
    let mut conn = PgConnection::connect_with(&options).await.unwrap();
    match sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
    {
        Ok(_) => None,
        Err(sqlx::Error::Database(err)) => Some(err.code().unwrap_or_default().into_owned()),
        Err(err) => panic!("{statement}: {err}"),
    }
}

/// insufficient_privilege: a missing privilege, or not the object's owner.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_as_a_data_only_user_that_cannot_change_the_schema() {
    let roles = Roles::new();
    let (on_server, on_database) = roles.guide();
    run_all(&roles.admin, &on_server).await;
    run_all(&roles.admin.clone().database(&roles.database), &on_database).await;

    // The migrations Job's user applies the schema after the grants: the
    // default privileges, not a grant on existing tables, reach the app.
    migrations::run(&DatabaseUrl::parse(&roles.owner_url()).unwrap())
        .await
        .expect("the owner applies the migrations");

    // With events on, so that the outbox's writes run as the app user too.
    let consumer = crate::events::Consumer::start().await;
    let events = consumer.settings(None);
    let mut settings = vec![("DB_ACQUIRE_TIMEOUT_MS", "2000")];
    settings.extend(crate::events::pairs(&events));
    let app = spawn_on(TestDatabase::unmanaged(roles.app_url()), &settings).await;
    // Ready means the app user read the schema's version.
    app.wait_until_ready(Duration::from_secs(10)).await;
    let id = app.create_latte().await;
    let read = app.get(&format!("/orders/{id}")).await;
    assert_eq!(read.status(), 200);
    let list: serde_json::Value = app.get("/orders").await.json().await.unwrap();
    assert!(
        list.to_string().contains(&id.to_string()),
        "the list shows the order: {list}"
    );
    let changed = app.put_json(&format!("/orders/{id}"), &latte_order()).await;
    assert_eq!(changed.status(), 200, "update");
    assert_eq!(app.delete(&format!("/orders/{id}")).await.status(), 204);
    consumer
        .wait_for_kinds(id, &["order.created", "order.updated", "order.deleted"])
        .await;
    consumer.close().await;

    for ddl in [
        "CREATE TABLE intruder (id integer)",
        "CREATE TEMPORARY TABLE intruder (id integer)",
        "CREATE SCHEMA intruder",
        "DROP TABLE orders",
        "ALTER TABLE orders ADD COLUMN intruder integer",
        "TRUNCATE orders",
        "CREATE INDEX intruder ON orders (created)",
    ] {
        assert_eq!(
            refusal(&roles.app_url(), ddl).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "the app user must not run {ddl}"
        );
    }
    // The control: the same statements are the owner's to run.
    assert_eq!(
        refusal(&roles.owner_url(), "CREATE TABLE allowed (id integer)").await,
        None
    );
}
