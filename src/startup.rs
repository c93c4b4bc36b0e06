//! Building the application from settings, serving it, and stopping it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::auth::{Authenticator, KeyStore};
use crate::config::{DatabaseUrl, Settings};
use crate::db::{Database, PoolSettings, migrations};
use crate::http::{self, AppState, HttpSettings};
use crate::lifecycle::OrderLifecycle;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::repository::OrdersRepository;
use crate::upstream::{self, Kitchen, KitchenClient, Payments, PaymentsClient};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot migrate the embedded database: {0}")]
    Migration(#[from] migrations::MigrationError),
    #[error("DB_URL is not a usable database URL: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    #[error("{0}")]
    Keys(#[from] crate::auth::KeyError),
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// A bound, not yet serving, instance of the service.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let url = settings.database_url();
        // Only the embedded default migrates itself, so one command gives a
        // working service; on PostgreSQL the `migrate` Job owns the schema.
        if let DatabaseUrl::Sqlite(_) = url {
            let report = migrations::run(&url).await?;
            for migration in report.applied_migrations() {
                tracing::info!(%migration, "applied migration");
            }
        }
        let db = Database::connect_lazy(
            &url,
            PoolSettings {
                max_connections: settings.db_pool_max(),
                acquire_timeout: settings.db_acquire_timeout(),
            },
        )
        .map_err(StartupError::DatabaseUrl)?;
        let repo = OrdersRepository::new(db);
        let http = upstream::http_client(
            settings.upstream_connect_timeout(),
            settings.upstream_timeout(),
        );
        let payments = settings.payments_url.as_ref().map(|url| {
            Arc::new(PaymentsClient::new(http.clone(), url.clone())) as Arc<dyn Payments>
        });
        let kitchen = settings
            .kitchen_url
            .as_ref()
            .map(|url| Arc::new(KitchenClient::new(http.clone(), url.clone())) as Arc<dyn Kitchen>);
        for (variable, configured) in [
            ("PAYMENTS_URL", payments.is_some()),
            ("KITCHEN_URL", kitchen.is_some()),
        ] {
            if !configured {
                tracing::warn!("{variable} is not set: paying for orders answers 503");
            }
        }
        let authenticator = authenticator(&settings, http.clone()).await?;
        let metrics = Arc::new(Metrics::new());
        let state = AppState {
            lifecycle: Arc::new(OrderLifecycle::new(
                repo.clone(),
                payments,
                kitchen,
                settings.upstream_timeout(),
                metrics.clone(),
            )),
            metrics,
            authenticator,
            readiness: Arc::new(Readiness::new(migrations::expected_version())),
            max_body_bytes: settings.max_body_bytes,
            idempotency_key_ttl: settings.idempotency_key_ttl(),
            repo,
        };
        let router = http::router(
            state.clone(),
            &HttpSettings {
                request_timeout: settings.request_timeout(),
                max_body_bytes: settings.max_body_bytes,
                cors_origins: settings.cors_origins(),
            },
        );
        let listener = TcpListener::bind(("0.0.0.0", settings.port))
            .await
            .map_err(|source| StartupError::Bind {
                port: settings.port,
                source,
            })?;
        tracing::info!(
            database = %url.redacted(),
            auth = settings.auth_on,
            "service built"
        );
        Ok(Self {
            listener,
            router,
            state,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting connections,
    /// lets requests in flight finish (for at most `SHUTDOWN_TIMEOUT_MS`) and
    /// returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let readiness = self.state.readiness.clone();
        let drain_started = Arc::new(Notify::new());
        let notify = drain_started.clone();
        let signal = async move {
            shutdown.await;
            readiness.start_draining();
            tracing::info!("shutdown requested: draining requests in flight");
            notify.notify_one();
        };
        let purge = tokio::spawn(purge_expired_keys(self.state.repo.clone()));
        let reap = tokio::spawn(close_idle_connections(self.state.repo.database().clone()));
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(signal);
        let deadline = self.settings.shutdown_timeout();
        let outcome = tokio::select! {
            served = server.into_future() => served,
            () = async {
                drain_started.notified().await;
                tokio::time::sleep(deadline).await;
            } => {
                tracing::warn!(?deadline, "drain timed out; abandoning requests still in flight");
                Ok(())
            }
        };
        purge.abort();
        reap.abort();
        self.state.repo.database().close().await;
        tracing::info!("stopped");
        outcome
    }
}

/// The token checker `AUTH_ON` asks for (settings were validated: a key
/// source and an audience are present).
async fn authenticator(
    settings: &Settings,
    http: reqwest::Client,
) -> Result<Option<Arc<Authenticator>>, StartupError> {
    if !settings.auth_on {
        tracing::warn!(
            "AUTH_ON is false: requests are not authenticated and every caller is the user \"test\""
        );
        return Ok(None);
    }
    let keys = match (&settings.jwt_jwks_url, &settings.jwt_public_key_file) {
        (Some(url), _) => {
            KeyStore::from_jwks_url(
                http,
                url.clone(),
                std::time::Duration::from_secs(settings.jwt_jwks_min_refresh_secs),
            )
            .await
        }
        (None, Some(path)) => KeyStore::from_pem_file(path)?,
        (None, None) => unreachable!("validated in Settings"),
    };
    Ok(Some(Arc::new(Authenticator::new(
        keys,
        settings.jwt_audience.clone().unwrap_or_default(),
        settings.jwt_issuer.clone(),
        std::time::Duration::from_secs(settings.jwt_leeway_secs),
    ))))
}

/// Expired idempotency keys are never read again; deleting them now and
/// then keeps the table small. Every replica does it; the work is idempotent.
async fn purge_expired_keys(repo: OrdersRepository) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(15 * 60));
    loop {
        every.tick().await;
        match repo
            .purge_expired_keys(crate::domain::order::now_micros())
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
            Err(err) => tracing::debug!(error = %err, "could not purge idempotency keys"),
        }
    }
}

async fn close_idle_connections(db: Database) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every.tick().await;
        db.close_idle().await;
    }
}

/// Completes on SIGTERM (Kubernetes) or Ctrl-C (a terminal).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
