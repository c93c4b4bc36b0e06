//! Building the application from settings, serving it, and stopping it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Audience, Authenticator, KeyStore};
use crate::config::{self, AuthSettings, CorsOrigins, DatabaseUrl, KeySource, Settings};
use crate::db::{Database, migrations};
use crate::http::{self, AppState, HttpSettings, Shared};
use crate::lifecycle::{OrderLifecycle, Timing, reconciler};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::repository::OrdersRepository;
use crate::upstream::{self, Kitchen, KitchenClient, Payments, PaymentsClient};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot migrate the embedded database: {0}")]
    Migration(#[from] migrations::MigrationError),
    #[error("{0}")]
    Keys(#[from] crate::auth::KeyError),
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on OPS_ADDR {addr}: {source}")]
    BindOps {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound, not yet serving, instance of the service.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// The operator's listener and router (`OPS_ADDR`).
    ops_listener: TcpListener,
    ops_router: Router,
    state: AppState,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let url = &settings.database.url;
        // Only the embedded default migrates itself, so one command gives a
        // working service; on PostgreSQL the `migrate` Job owns the schema.
        if let DatabaseUrl::Sqlite(_) = url {
            let report = migrations::run(url).await?;
            for migration in report.applied_migrations() {
                tracing::info!(%migration, "applied migration");
            }
        }
        let (router, state) = app(&settings).await?;
        let port = settings.server.port;
        let listener = TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(|source| StartupError::Bind { port, source })?;
        let addr = settings.server.ops_addr;
        let ops_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::BindOps { addr, source })?;
        let ops_router = crate::http::ops::router(state.clone());
        tracing::info!(
            database = %url.redacted(),
            auth = settings.auth.is_some(),
            events = settings.events.as_ref().map(|events| events.url.redacted()),
            "service built"
        );
        Ok(Self {
            listener,
            router,
            ops_listener,
            ops_router,
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

    /// Where the operator's listener is bound.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_listener
            .local_addr()
            .expect("a bound listener has an address")
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
        let stop_reconciling = CancellationToken::new();
        // When SIGTERM came: the one deadline, for the requests in flight
        // and then the background work (pays whose clients hung up, the
        // reconciler's call in hand), runs from there.
        let drain_started = Arc::new(std::sync::OnceLock::new());
        let (stop, started) = (stop_reconciling.clone(), drain_started.clone());
        let signal = async move {
            shutdown.await;
            let _ = started.set(tokio::time::Instant::now());
            readiness.start_draining();
            // No new background work from now on; the item in hand finishes.
            stop.cancel();
            tracing::info!("shutdown requested: draining requests in flight");
        };
        let purge = tokio::spawn(purge_expired_keys(self.state.repo.clone()));
        let reap = tokio::spawn(close_idle_connections(self.state.repo.database().clone()));
        let tasks = self.state.tasks.clone();
        tasks.spawn(reconciler::run(
            self.state.lifecycle.clone(),
            self.settings.reconciler.interval,
            stop_reconciling.clone(),
        ));
        if let Some(events) = self.settings.events.clone() {
            let relay = crate::events::Relay::new(
                self.state.repo.clone(),
                self.state.metrics.clone(),
                events,
            );
            tasks.spawn(relay.run(stop_reconciling.clone()));
        }
        let ops = {
            let stop = stop_reconciling.clone();
            let server = axum::serve(self.ops_listener, self.ops_router)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            tokio::spawn(async move {
                if let Err(err) = server.await {
                    tracing::error!(error = %err, "the operator's listener failed");
                }
            })
        };
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(signal);
        let deadline = self.settings.server.shutdown_timeout;
        let drain_timer = {
            let (signalled, started) = (stop_reconciling.clone(), drain_started.clone());
            async move {
                signalled.cancelled().await;
                let at = started
                    .get()
                    .copied()
                    .unwrap_or_else(tokio::time::Instant::now);
                tokio::time::sleep_until(at + deadline).await;
            }
        };
        let outcome = tokio::select! {
            served = server.into_future() => served,
            () = drain_timer => {
                tracing::warn!(?deadline, "drain timed out; abandoning requests still in flight");
                Ok(())
            }
        };
        stop_reconciling.cancel();
        tasks.close();
        let waited = match drain_started.get() {
            Some(at) => tokio::time::timeout_at(*at + deadline, tasks.wait())
                .await
                .is_ok(),
            // Stopped without a signal (the server failed): the tracked work
            // is bounded by its own timeouts.
            None => {
                tasks.wait().await;
                true
            }
        };
        if !waited {
            tracing::error!(
                ?deadline,
                "drain timed out; abandoning background work in flight"
            );
        }
        purge.abort();
        reap.abort();
        ops.abort();
        self.state.repo.database().close().await;
        tracing::info!("stopped");
        // The spans of the drain go out last, in what is left of the deadline.
        let left = match drain_started.get() {
            Some(at) => (*at + deadline).saturating_duration_since(tokio::time::Instant::now()),
            None => deadline,
        };
        crate::telemetry::flush(left).await;
        outcome
    }
}

/// Everything but the socket and the migrations: the router and the state
/// behind it. Tests drive it in-process with `oneshot`; nothing here
/// connects to the database (the pools connect lazily).
pub async fn app(settings: &Settings) -> Result<(Router, AppState), StartupError> {
    let db = Database::connect_lazy(&settings.database);
    let repo = match settings.events {
        Some(_) => OrdersRepository::with_events(db),
        None => OrdersRepository::new(db),
    };
    let upstreams = &settings.upstreams;
    let http = upstream::http_client(upstreams.connect_timeout, upstreams.timeout);
    let payments = upstreams
        .payments_url
        .as_ref()
        .map(|url| Arc::new(PaymentsClient::new(http.clone(), url.clone())) as Arc<dyn Payments>);
    let kitchen = upstreams
        .kitchen_url
        .as_ref()
        .map(|url| Arc::new(KitchenClient::new(http.clone(), url.clone())) as Arc<dyn Kitchen>);
    for (variable, configured) in [
        (config::PAYMENTS_URL, payments.is_some()),
        (config::KITCHEN_URL, kitchen.is_some()),
    ] {
        if !configured {
            // The table says what an unset upstream means.
            if let config::Fallback::Described(meaning) = variable.default {
                tracing::warn!("{} is {meaning}", variable.name);
            }
        }
    }
    let authenticator = authenticator(settings.auth.as_ref(), http.clone()).await?;
    let metrics = Arc::new(Metrics::new());
    let state = AppState::new(Shared {
        lifecycle: Arc::new(OrderLifecycle::new(
            repo.clone(),
            payments,
            kitchen,
            timing(settings),
            metrics.clone(),
        )),
        tasks: TaskTracker::new(),
        metrics,
        authenticator,
        readiness: Arc::new(Readiness::new(migrations::expected_version())),
        max_body_bytes: settings.server.max_body_bytes,
        idempotency_key_ttl: settings.idempotency_key_ttl,
        repo,
    });
    let router = http::router(
        state.clone(),
        &HttpSettings {
            request_timeout: settings.server.request_timeout,
            max_body_bytes: settings.server.max_body_bytes,
            cors_origins: match &settings.server.cors_origins {
                CorsOrigins::Any => None,
                CorsOrigins::Only(origins) => Some(origins.clone()),
            },
        },
    );
    Ok((router, state))
}

/// Leases outlast the longest request (every upstream call at its timeout,
/// every database round trip at its longest wait for a connection), plus
/// a margin for the database work itself.
fn timing(settings: &Settings) -> Timing {
    let reconciler = &settings.reconciler;
    Timing {
        lease: config::longest_request(
            settings.upstreams.timeout,
            settings.database.acquire_timeout,
        ) + LEASE_MARGIN,
        retry: reconciler.interval,
        backoff_max: reconciler.backoff_max,
        kitchen_poll: reconciler.kitchen_poll,
        alert_after: reconciler.alert_after,
        needs_attention_after: reconciler.needs_attention_after,
        payment_key_ttl: reconciler.payment_key_ttl,
    }
}

const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The token checker `AUTH_ON` asks for.
async fn authenticator(
    settings: Option<&AuthSettings>,
    http: reqwest::Client,
) -> Result<Option<Arc<Authenticator>>, StartupError> {
    let Some(settings) = settings else {
        tracing::warn!(
            "AUTH_ON is false: requests are not authenticated and every caller is the user \"test\""
        );
        return Ok(None);
    };
    let keys = match &settings.keys {
        KeySource::Jwks { url, min_refresh } => {
            KeyStore::from_jwks_url(http, url.clone(), *min_refresh).await
        }
        KeySource::PemFile(path) => KeyStore::from_pem_file(path)?,
    };
    Ok(Some(Arc::new(Authenticator::new(
        keys,
        Audience {
            value: settings.audience.clone(),
            client_id: settings.audience_claim == config::AudienceClaim::ClientId,
        },
        settings.issuer.clone(),
        settings.leeway,
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
