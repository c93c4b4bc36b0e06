use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    Backend, TestDatabase, assert_detail, latte_order, spawn_app, spawn_app_with, spawn_on,
};

async fn healthz_and_readyz_answer_200_on_a_migrated_database(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

async fn shutdown_makes_readyz_503_and_lets_a_request_in_flight_finish(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let body = latte_order().to_string();
    let (head, tail) = body.split_at(body.len() / 2);

    // A request whose body is only half sent when shutdown starts.
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let request = format!(
        "POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A keep-alive client sees readiness drop once shutdown has begun.
    let probe_client = reqwest::Client::new();
    assert_eq!(
        probe_client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .is_err(),
        "no new connections once draining"
    );

    stream.write_all(tail.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    app.shut_down().await.expect("clean exit");
}

both_backends!(
    healthz_and_readyz_answer_200_on_a_migrated_database,
    shutdown_makes_readyz_503_and_lets_a_request_in_flight_finish,
);

#[tokio::test]
async fn readyz_is_503_until_migrate_has_run_on_postgres() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let url = db.url.clone();
    let app = spawn_on(db, &[]).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let detail = assert_detail(app.get("/readyz").await, 503).await;
    assert!(detail.contains("migrate"), "{detail}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_migrate"))
        .env("DB_URL", &url)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn a_database_outage_answers_fast_503s_while_liveness_stays_up() {
    let app = spawn_app_with(Backend::Postgres, &[("DB_ACQUIRE_TIMEOUT_MS", "300")]).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let id = app.create_latte().await;

    // Kill every connection of this database and forbid new ones.
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&crate::helpers::admin_url())
        .await
        .unwrap();
    let statements = [
        format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    ];
    for statement in &statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut admin)
            .await
            .unwrap();
    }

    let started = Instant::now();
    for _ in 0..3 {
        let response = app.get(&format!("/orders/{id}")).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["content-type"], "application/json");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fast: {:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(
        app.get("/readyz").await.status(),
        200,
        "still ready after start-up"
    );

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if app.get(&format!("/orders/{id}")).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the service recovers by itself");
}

#[tokio::test]
async fn an_unreachable_database_at_start_up_leaves_the_pod_live_but_unready() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let mut app = spawn_on(db, &[]).await;
    drop(app.shut_down().await);
    let settings = crate::helpers::test_settings(
        "postgresql://postgres@127.0.0.1:1/nowhere",
        &[("DB_ACQUIRE_TIMEOUT_MS", "300")],
    );
    let app = orders_service::startup::Application::build(settings)
        .await
        .expect("starts without a database");
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let readyz = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    let orders = client.get(format!("{base}/orders")).send().await.unwrap();
    assert_detail(orders, 503).await;
    server.abort();
}
