//! `spawn_app`: a service on a random port with its own fresh database.

use std::time::Duration;

use orders_service::config::{DatabaseUrl, LogFormat, LogSettings, Settings};
use orders_service::db::migrations;
use orders_service::domain::OrderStatus;
use orders_service::repository::codec::{Id, Time};
use orders_service::startup::Application;
use reqwest::Response;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Runs each listed `async fn name(backend: Backend)` of the calling module
/// as two tests: `postgres::name` and `sqlite::name`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }
            )*
        }
    };
}

/// Runs one statement on a test database directly, whichever its backend;
/// the codecs store the values as the service does.
macro_rules! on_test_db {
    ($url:expr, $sql:expr; $($bind:expr),* $(,)?) => {
        match DatabaseUrl::parse($url).unwrap() {
            DatabaseUrl::Postgres(options) => {
                let mut conn = PgConnection::connect_with(&options).await.unwrap();
                sqlx::query($sql)$(.bind($bind))*.execute(&mut conn).await.unwrap();
            }
            DatabaseUrl::Sqlite(options) => {
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
                sqlx::query($sql)$(.bind($bind))*.execute(&mut conn).await.unwrap();
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The server to create test databases on; `.ci/run` sets it.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test and is dropped after it.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres {
        admin_url: String,
        name: String,
    },
    Sqlite {
        path: std::path::PathBuf,
    },
    /// Another `TestDatabase` owns it.
    None,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        let name = format!("orders_test_{}", Uuid::new_v4().simple());
        match backend {
            Backend::Postgres => {
                let admin_url = admin_url();
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|err| {
                        panic!(
                            "PostgreSQL is required for these tests ({admin_url}): {err}. \
                         Start it, or set TEST_DATABASE_URL."
                        )
                    });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let base = admin_url.rsplit_once('/').expect("URL with a database").0;
                Self {
                    url: format!("{base}/{name}"),
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Self {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::Sqlite { path },
                }
            }
        }
    }

    pub async fn migrate(&self) {
        migrations::run(&DatabaseUrl::parse(&self.url).unwrap())
            .await
            .expect("migrations apply");
    }
}

impl TestDatabase {
    /// A database someone else creates and drops, such as a test that
    /// needs its own roles or its own server.
    pub fn unmanaged(url: String) -> Self {
        Self {
            url,
            cleanup: Cleanup::None,
        }
    }

    /// The same database, for a second service on it; the first one drops it.
    pub fn share(&self) -> Self {
        Self {
            url: self.url.clone(),
            cleanup: Cleanup::None,
        }
    }
}

/// Runs `cleanup` to the end from a `Drop`, which runs inside the test's
/// runtime and so cannot block on it: on a thread and runtime of its own.
pub fn block_on_own_thread(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(cleanup);
    })
    .join();
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::None => {}
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                block_on_own_thread(async move {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                });
            }
            Cleanup::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// The operator's listener.
    pub ops_address: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Settings for a test: random port, quiet logs, the test's database.
pub fn test_settings(db_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars = vec![
        ("DB_URL".to_owned(), db_url.to_owned()),
        ("PORT".to_owned(), "0".to_owned()),
        ("OPS_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
        // The reconciler runs once at start and then stays out of the way;
        // the tests of the reconciler set their own interval.
        ("RECONCILE_INTERVAL_MS".to_owned(), "3600000".to_owned()),
        ("RECONCILE_BACKOFF_MAX_MS".to_owned(), "3600000".to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_vars(vars).expect("valid test settings")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// A migrated database and a running service with extra settings.
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let db = TestDatabase::create(backend).await;
    db.migrate().await;
    spawn_on(db, extra).await
}

/// A running service on an existing database (migrated or not).
pub async fn spawn_on(db: TestDatabase, extra: &[(&str, &str)]) -> TestApp {
    let settings = test_settings(&db.url, extra);
    // `TEST_LOG=debug cargo test ...` shows the service's logs.
    if let Ok(filter) = std::env::var("TEST_LOG") {
        orders_service::telemetry::init_logs(&LogSettings {
            filter,
            format: LogFormat::Pretty,
        });
    }
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let ops_address = format!("http://{}", app.ops_addr());
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop.await;
    }));
    TestApp {
        address,
        ops_address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        db,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// A typical valid order body.
pub fn latte_order() -> Value {
    json!({"order": [{"product": "latte", "size": "small", "quantity": 2}]})
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str) -> Response {
        self.client
            .post(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Pays for an order from a client that hangs up after `patience`;
    /// asserts that it did.
    pub async fn pay_and_hang_up(&self, id: Uuid, patience: Duration) {
        let impatient = reqwest::Client::builder()
            .timeout(patience)
            .build()
            .unwrap();
        let hung_up = impatient
            .post(self.url(&format!("/orders/{id}/pay")))
            .send()
            .await;
        assert!(hung_up.is_err(), "the client gave up first");
    }

    /// Creates an order and returns its JSON.
    pub async fn create_order(&self, body: &Value) -> Value {
        let response = self.post_json("/orders", body).await;
        assert_eq!(response.status(), 201, "create failed");
        response.json().await.unwrap()
    }

    pub async fn create_latte(&self) -> Uuid {
        let order = self.create_order(&latte_order()).await;
        order["id"].as_str().unwrap().parse().unwrap()
    }

    /// Puts an order into any status directly in the database, to reach
    /// states that only other services (kitchen, delivery) can cause.
    /// A `progress` order also gets a schedule id, as a real one has.
    pub async fn force_status(&self, id: Uuid, status: OrderStatus) {
        let schedule = (status == OrderStatus::Progress).then(Uuid::new_v4);
        on_test_db!(
            &self.db.url,
            "UPDATE orders SET status = $1, schedule_id = COALESCE($3, schedule_id) WHERE id = $2";
            status.as_str(), Id(id), schedule.map(Id)
        );
    }

    /// Sets the order's upstream lease to end `seconds` from now (negative:
    /// already expired), as a request that died mid-call would leave it.
    pub async fn force_lease(&self, id: Uuid, seconds: i64) {
        let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        on_test_db!(
            &self.db.url,
            "UPDATE orders SET claimed_until = $1 WHERE id = $2";
            Time(until), Id(id)
        );
    }

    /// The order's status as stored.
    pub async fn status_of(&self, id: Uuid) -> String {
        let order: Value = self
            .get(&format!("/orders/{id}"))
            .await
            .json()
            .await
            .unwrap();
        order["status"].as_str().unwrap().to_owned()
    }

    /// Waits until `/readyz` answers 200, at most `within`.
    pub async fn wait_until_ready(&self, within: Duration) {
        let started = std::time::Instant::now();
        while self.get("/readyz").await.status() != 200 {
            assert!(
                started.elapsed() < within,
                "{} never became ready",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the service the way SIGTERM does and waits for it to finish.
    pub async fn shut_down(&mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A response reduced to what the assertions look at, whether it came over
/// a socket or from the router in-process.
pub struct Answer {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "JSON body ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

pub trait IntoAnswer {
    fn answer(self) -> impl std::future::Future<Output = Answer> + Send;
}

impl IntoAnswer for Response {
    async fn answer(self) -> Answer {
        let status = self.status().as_u16();
        let headers = self.headers().clone();
        let body = self.bytes().await.expect("body").to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
}

impl IntoAnswer for axum::response::Response {
    async fn answer(self) -> Answer {
        let status = self.status().as_u16();
        let headers = self.headers().clone();
        let body = axum::body::to_bytes(self.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
}

impl IntoAnswer for Answer {
    async fn answer(self) -> Answer {
        self
    }
}

/// The router of a service whose database is never reached (its pool
/// connects lazily to a port nothing listens on), driven in-process: for
/// behaviour decided before any query, such as routing, parsing and docs.
pub struct InProcess {
    router: axum::Router,
}

impl InProcess {
    pub async fn new(extra: &[(&str, &str)]) -> Self {
        let settings = test_settings("postgresql://orders@127.0.0.1:1/unreachable", extra);
        let (router, _) = orders_service::startup::app(&settings)
            .await
            .expect("the router builds");
        Self { router }
    }

    /// Sends `request` through the whole middleware stack.
    pub async fn send(&self, request: axum::http::Request<axum::body::Body>) -> Answer {
        use tower::ServiceExt;
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible")
            .answer()
            .await
    }

    pub async fn call(&self, method: &str, uri: &str) -> Answer {
        self.send(
            request(method, uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `body` sent as it is, with `content_type` when given.
    pub async fn call_with(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<axum::body::Body>,
    ) -> Answer {
        let mut builder = request(method, uri);
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        self.send(builder.body(body.into()).unwrap()).await
    }
}

pub fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    axum::http::Request::builder().method(method).uri(uri)
}

/// Asserts a `{"detail": "..."}` error with this status, returning the text.
pub async fn assert_detail(response: impl IntoAnswer, status: u16) -> String {
    let response = response.answer().await;
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(
        response.header("content-type"),
        "application/json",
        "error bodies are JSON"
    );
    let body = response.json();
    let detail = body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("detail is a string: {body}"));
    assert_eq!(body.as_object().unwrap().len(), 1, "only detail: {body}");
    detail.to_owned()
}

/// Asserts a 422 validation error and returns its (loc, type) pairs.
pub async fn assert_validation(response: impl IntoAnswer) -> Vec<(Value, String)> {
    let response = response.answer().await;
    assert_eq!(response.status, 422, "{}", response.text());
    let body = response.json();
    let errors = body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is a list: {body}"));
    errors
        .iter()
        .map(|e| {
            assert!(e["msg"].is_string(), "msg: {e}");
            (e["loc"].clone(), e["type"].as_str().unwrap().to_owned())
        })
        .collect()
}
