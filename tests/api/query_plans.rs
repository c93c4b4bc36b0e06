//! The reads whose cost should not grow with the table (one order, a page
//! of a list) walk their indexes even on tables that have never been
//! analyzed: a freshly migrated database into which many orders were just
//! placed, before autovacuum has looked at it.

use orders_service::repository::sql;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqliteConnection};

use crate::helpers::{Backend, TestDatabase};

/// Orders in the table; with 1 to 3 items each, about twice as many items.
const ORDERS: u32 = 20_000;

/// A freshly migrated PostgreSQL database holding `ORDERS` orders of owner
/// `test`, each with a declined charge and every tenth with a refund, whose
/// tables have no statistics (autovacuum kept off them).
async fn unanalyzed_postgres() -> (TestDatabase, PgConnection) {
    let db = TestDatabase::create(Backend::Postgres).await;
    db.migrate().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE orders SET (autovacuum_enabled = false); \
         ALTER TABLE order_items SET (autovacuum_enabled = false); \
         INSERT INTO orders (id, owner, status, created, updated) \
             SELECT md5(n::text)::uuid, 'test', \
                 CASE WHEN n % 10 = 0 THEN 'cancelled' ELSE 'created' END, \
                 timestamptz '2024-01-01Z' + n * interval '1 second', now() \
             FROM generate_series(1, {ORDERS}) AS n; \
         INSERT INTO order_items (order_id, position, product, size, quantity) \
             SELECT md5(n::text)::uuid, p, 'latte', 'small', 1 \
             FROM generate_series(1, {ORDERS}) AS n, generate_series(0, n % 3) AS p; \
         ALTER TABLE payment_attempts SET (autovacuum_enabled = false); \
         ALTER TABLE refunds SET (autovacuum_enabled = false); \
         INSERT INTO payment_attempts (key, order_id, state, created, updated, next_try) \
             SELECT gen_random_uuid(), md5(n::text)::uuid, 'declined', now(), now(), now() \
             FROM generate_series(1, {ORDERS}) AS n; \
         INSERT INTO refunds (key, payment_id, order_id, state, created, updated, next_try) \
             SELECT gen_random_uuid(), gen_random_uuid(), md5(n::text)::uuid, 'refunded', \
                 now(), now(), now() \
             FROM generate_series(1, {ORDERS}, 10) AS n"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let column_statistics: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stats \
         WHERE tablename IN ('orders', 'order_items', 'payment_attempts', 'refunds')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(column_statistics, 0, "the tables must not be analyzed");
    (db, conn)
}

/// The text of PostgreSQL's plan for `statement` run as a prepared
/// statement with `args`, in the plan cache's `mode` (the service's
/// statements run custom plans first, then possibly a generic one).
async fn pg_plan(conn: &mut PgConnection, statement: &str, args: &str, mode: &str) -> String {
    let types = if statement.starts_with("WITH page") {
        ["text", "int8", "timestamptz", "uuid"][..parameters(statement)].join(", ")
    } else {
        "uuid, text".to_owned()
    };
    pg_plan_typed(conn, statement, &types, args, mode).await
}

/// [`pg_plan`] of a statement whose parameters have these `types`.
async fn pg_plan_typed(
    conn: &mut PgConnection,
    statement: &str,
    types: &str,
    args: &str,
    mode: &str,
) -> String {
    // One simple-protocol batch: its own statements are the only ones named.
    let rows = sqlx::raw_sql(AssertSqlSafe(format!(
        "SET plan_cache_mode = {mode}; PREPARE q({types}) AS {statement}; \
         EXPLAIN EXECUTE q({args}); DEALLOCATE q"
    )))
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    rows.iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many parameters (`$1`..`$n`) a statement takes.
fn parameters(statement: &str) -> usize {
    (1..10)
        .take_while(|n| statement.contains(&format!("${n}")))
        .count()
}

/// An index walk: order_items reached only through its primary key, one
/// order at a time (a nested loop), never scanned whole or hashed.
fn assert_index_walk(plan: &str, what: &str) {
    for bad in [
        "Seq Scan on order_items",
        "Seq Scan on orders",
        "Seq Scan on payment_attempts",
        "Seq Scan on refunds",
        "Hash Join",
        "Merge Join",
    ] {
        assert!(!plan.contains(bad), "{what}: {bad} in\n{plan}");
    }
    assert!(
        plan.contains("Nested Loop"),
        "{what}: no nested loop in\n{plan}"
    );
    assert!(
        plan.contains("order_items_pkey on order_items") || plan.contains("on order_items_pkey"),
        "{what}: order_items not read through its primary key in\n{plan}"
    );
}

#[tokio::test]
async fn postgres_reads_walk_the_indexes_on_tables_never_analyzed() {
    let (_db, mut conn) = unanalyzed_postgres().await;
    let id = "md5('5000')::uuid";
    let cursor = "timestamptz '2024-01-01Z' + interval '10000 seconds', md5('10000')::uuid";
    let mut statements = vec![("get".to_owned(), sql::GET, format!("{id}, 'test'"))];
    for (f, shapes) in sql::LIST.iter().enumerate() {
        statements.push((format!("list {f}"), shapes[0], "'test', 11".to_owned()));
        statements.push((
            format!("list {f} after a cursor"),
            shapes[1],
            format!("'test', 11, {cursor}"),
        ));
    }
    for mode in ["force_custom_plan", "force_generic_plan"] {
        for (what, statement, args) in &statements {
            let plan = pg_plan(&mut conn, statement, args, mode).await;
            assert_index_walk(&plan, &format!("{what} ({mode})"));
        }
    }

    // The tables are in the state that misleads the planner: the same page
    // joined to its items by a plain join hashes the whole items table.
    let plain_join = "WITH page AS (SELECT id, created, status FROM orders \
         WHERE owner = $1 ORDER BY created DESC, id DESC LIMIT $2) \
         SELECT p.id, i.product FROM page p JOIN order_items i ON i.order_id = p.id \
         ORDER BY p.created DESC, p.id DESC, i.position";
    let plan = pg_plan(&mut conn, plain_join, "'test', 11", "force_custom_plan").await;
    assert!(plan.contains("Seq Scan on order_items"), "{plan}");
}

/// The reads of several orders at once (the service's gets, coalesced
/// under load) walk the same indexes, and PostgreSQL keeps a generic plan
/// for each after its first executions instead of planning every one anew,
/// which would cost more than the statement saves.
#[tokio::test]
async fn postgres_reads_of_several_orders_walk_the_indexes_and_are_planned_once() {
    let (_db, mut conn) = unanalyzed_postgres().await;
    for n in [1, 4, 16] {
        let statement = sql::get_many(n);
        let types = vec!["uuid, text"; n].join(", ");
        let args = (0..n)
            .map(|k| format!("md5('{}')::uuid, 'test'", 5000 + k))
            .collect::<Vec<_>>()
            .join(", ");
        for mode in ["force_custom_plan", "force_generic_plan"] {
            let plan = pg_plan_typed(&mut conn, &statement, &types, &args, mode).await;
            assert_index_walk(&plan, &format!("get of {n} ({mode})"));
        }
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET plan_cache_mode = auto; PREPARE m({types}) AS {statement}; {}",
            format!("EXECUTE m({args}); ").repeat(10)
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        let (generic, custom): (i64, i64) = sqlx::query_as(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'm'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        sqlx::raw_sql("DEALLOCATE m")
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(
            generic >= 5,
            "get of {n}: {custom} custom plans and only {generic} generic in 10 executions"
        );
    }
}

#[tokio::test]
async fn sqlite_reads_walk_the_indexes_without_statistics() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    db.migrate().await;
    let options = orders_service::config::DatabaseUrl::parse(&db.url).unwrap();
    let orders_service::config::DatabaseUrl::Sqlite(options) = options else {
        unreachable!()
    };
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < {ORDERS}) \
         INSERT INTO orders (id, owner, status, created, updated) \
             SELECT printf('%032x', v), 'test', \
                 CASE WHEN v % 10 = 0 THEN 'cancelled' ELSE 'created' END, v, v FROM n; \
         WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < {ORDERS}), \
             p(k) AS (VALUES (0), (1), (2)) \
         INSERT INTO order_items (order_id, position, product, size, quantity) \
             SELECT printf('%032x', v), k, 'latte', 'small', 1 FROM n, p WHERE k <= v % 3; \
         WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < {ORDERS}) \
         INSERT INTO payment_attempts (key, order_id, state, created, updated, next_try) \
             SELECT printf('a%031x', v), printf('%032x', v), 'declined', v, v, v FROM n; \
         WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 10 FROM n WHERE v < {ORDERS}) \
         INSERT INTO refunds (key, payment_id, order_id, state, created, updated, next_try) \
             SELECT printf('r%031x', v), printf('p%031x', v), printf('%032x', v), 'refunded', \
                 v, v, v FROM n"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let statistics: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_stat1'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(statistics, 0, "migrate leaves SQLite without statistics");

    let mut statements = vec![("get", sql::GET_SQLITE)];
    for shapes in &sql::LIST_SQLITE {
        statements.push(("list", shapes[0]));
        statements.push(("list after a cursor", shapes[1]));
    }
    for (what, statement) in statements {
        let mut query = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {statement}")));
        for _ in 0..parameters(statement) {
            query = query.bind("x");
        }
        let rows = query.fetch_all(&mut conn).await.unwrap();
        let plan: Vec<String> = rows.iter().map(|row| row.get::<String, _>(3)).collect();
        let plan = plan.join("\n");
        for bad in [
            "SCAN i",
            "SCAN o\n",
            "SCAN orders",
            "SCAN a\n",
            "SCAN r\n",
            "SCAN payment_attempts",
            "SCAN refunds",
            "AUTOMATIC",
        ] {
            assert!(
                !format!("{plan}\n").contains(bad),
                "{what}: {bad} in\n{plan}"
            );
        }
        assert!(
            plan.contains("SEARCH i USING PRIMARY KEY")
                || plan.contains("SEARCH i USING INDEX sqlite_autoindex_order_items"),
            "{what}: order_items not read through its primary key in\n{plan}"
        );
    }
}
