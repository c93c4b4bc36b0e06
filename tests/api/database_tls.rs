//! `sslmode=verify-full`: the service talks only to a PostgreSQL server whose
//! certificate chains to the CA that `sslrootcert` names and names the host
//! it connected to. The server is a real PostgreSQL cluster of the test's
//! own, started by scripts/tls-postgres.sh with a certificate for
//! `localhost` signed by a CA the script makes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use orders_service::config::DatabaseUrl;
use orders_service::db::migrations;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::helpers::{TestApp, TestDatabase, spawn_on};

/// A TLS-only PostgreSQL server, stopped and removed when dropped.
struct TlsPostgres {
    dir: PathBuf,
    port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls-postgres.sh")
}

impl TlsPostgres {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("orders-tls-{}", Uuid::new_v4().simple()));
        // Dropped on any failure below as well.
        let server = Self { dir, port };
        let output = Command::new(script())
            .arg("start")
            .arg(&server.dir)
            .arg(port.to_string())
            .output()
            .expect("run scripts/tls-postgres.sh");
        assert!(
            output.status.success(),
            "scripts/tls-postgres.sh could not start a TLS PostgreSQL (it needs openssl and \
             PostgreSQL's initdb and pg_ctl): {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(server.dir.join("initdb.log")).unwrap_or_default()
        );
        server
    }

    fn url(&self, host: &str, ca: &str) -> String {
        format!(
            "postgresql://postgres@{host}:{}/postgres?sslmode=verify-full&sslrootcert={}",
            self.port,
            self.dir.join(ca).display()
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

/// The error connecting with `url` as the service parses it.
async fn refused(url: &str) -> String {
    let DatabaseUrl::Postgres(options) = DatabaseUrl::parse(url).unwrap() else {
        unreachable!()
    };
    match PgConnection::connect_with(&options).await {
        Ok(_) => panic!("{url}: connected to a server it must not trust"),
        Err(err) => err.to_string(),
    }
}

/// A service on `url` never becomes ready and answers requests with 503.
async fn stays_unready(url: &str) {
    let app: TestApp = spawn_on(
        TestDatabase::unmanaged(url.to_owned()),
        &[("DB_ACQUIRE_TIMEOUT_MS", "500")],
    )
    .await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(app.get("/readyz").await.status(), 503, "{url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.post_json("/orders", &crate::helpers::latte_order())
            .await
            .status(),
        503,
        "{url}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_server_whose_certificate_does_not_match() {
    let server = TlsPostgres::start();

    // Signed by a CA the client was not given.
    let wrong_ca = server.url("localhost", "other-ca.pem");
    let error = refused(&wrong_ca).await;
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "the error names the untrusted certificate: {error}"
    );
    stays_unready(&wrong_ca).await;

    // The right CA, but the certificate names `localhost`, not 127.0.0.1.
    let wrong_host = server.url("127.0.0.1", "ca.pem");
    let error = refused(&wrong_host).await;
    assert!(
        error.contains("invalid peer certificate") && error.contains("not valid for name"),
        "the error names the certificate's host mismatch: {error}"
    );
    stays_unready(&wrong_host).await;

    // The control: the right CA and host name connect, migrate and serve.
    let right = server.url("localhost", "ca.pem");
    migrations::run(&DatabaseUrl::parse(&right).unwrap())
        .await
        .expect("migrate over verified TLS");
    let app = spawn_on(TestDatabase::unmanaged(right.clone()), &[]).await;
    app.wait_until_ready(Duration::from_secs(10)).await;
    let id = app.create_latte().await;
    assert_eq!(app.get(&format!("/orders/{id}")).await.status(), 200);
    // And the connection really is encrypted.
    let DatabaseUrl::Postgres(options) = DatabaseUrl::parse(&right).unwrap() else {
        unreachable!()
    };
    let mut conn = PgConnection::connect_with(&options).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(encrypted);
}
