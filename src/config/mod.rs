//! Configuration, read once from the environment at start-up.
//!
//! [`VARIABLES`] is the only place a variable's name, type, default and
//! meaning are written; envy reads the environment into it and the
//! documentation's table is rendered from it. Each value parses itself
//! ([`values`]), and the rules that tie variables together are all in
//! [`Settings::from_vars`], so a wrong value stops start-up with a message
//! that names the variable instead of surfacing later as a confusing runtime
//! error, and the rest of the service has nothing left to parse.

use std::time::Duration;

mod values;
mod variables;

pub use values::{AmqpUrl, AudienceClaim, CorsOrigins, DatabaseUrl, LogFormat, OtlpProtocol};
use variables::{
    AUTH_ON, DB_ACQUIRE_TIMEOUT_MS, JWT_AUDIENCE, JWT_JWKS_URL, JWT_PUBLIC_KEY_FILE,
    OTEL_TRACES_SAMPLER_ARG, RECONCILE_BACKOFF_MAX_MS, RECONCILE_INTERVAL_MS, REQUEST_TIMEOUT_MS,
    SHUTDOWN_TIMEOUT_MS, UPSTREAM_TIMEOUT_MS,
};
pub use variables::{
    Fallback, KITCHEN_URL, PAYMENTS_URL, POOL_MAX, VARIABLES, Variable, markdown_table,
};

/// The port used when `PORT` is unset; manifests and images expose it. The
/// default in `PORT`'s entry is the one read; a test keeps the two equal.
pub const DEFAULT_PORT: u16 = 8000;

/// The most calls to payments and kitchen one pay or cancel request makes
/// (a cancel of a paid order may re-send its schedule, cancel it, and ask
/// the kitchen's status); the request timeout must leave room for all of
/// them, or a request would be answered "abandoned" while its work goes on.
pub const MOST_UPSTREAM_CALLS_PER_REQUEST: u32 = 3;

/// The most database round trips one pay or cancel request makes, each of
/// which may wait `DB_ACQUIRE_TIMEOUT_MS` for a connection. A pay: take its
/// `Idempotency-Key`, read the order, claim it with its charge attempt,
/// record the charge, read the items, mark the schedule sent, record the
/// schedule, read the order to answer, keep the answer (9). A cancel of a
/// paid order whose schedule answer was lost: the key, the order, the claim,
/// the items, the schedule marked sent, recorded, the order read again, the
/// cancellation, the answer read, the answer kept (10).
pub const MOST_DATABASE_STEPS_PER_REQUEST: u32 = 10;

/// The longest a pay or cancel may need when every upstream call takes its
/// whole timeout and every database round trip waits its longest for a
/// connection: what `REQUEST_TIMEOUT_MS` must leave room for, and what a
/// lease on an order must outlast.
pub fn longest_request(upstream_timeout: Duration, acquire_timeout: Duration) -> Duration {
    upstream_timeout * MOST_UPSTREAM_CALLS_PER_REQUEST
        + acquire_timeout * MOST_DATABASE_STEPS_PER_REQUEST
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable} {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

/// A default that depends on the database backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerBackend {
    pub postgres: u32,
    pub sqlite: u32,
}

/// Every setting of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub server: ServerSettings,
    pub upstreams: UpstreamSettings,
    /// `None` when `AUTH_ON` is false.
    pub auth: Option<AuthSettings>,
    pub logging: LogSettings,
    pub traces: TraceSettings,
    pub idempotency_key_ttl: Duration,
    pub reconciler: ReconcilerSettings,
    /// `None`: `EVENTS_URL` is unset, and no event is recorded.
    pub events: Option<EventsSettings>,
}

/// The background work that settles what requests left open.
#[derive(Debug, Clone)]
pub struct ReconcilerSettings {
    pub interval: Duration,
    pub kitchen_poll: Duration,
    pub backoff_max: Duration,
    pub alert_after: Duration,
    /// Age past which an unsettled item waits for an operator.
    pub needs_attention_after: Duration,
    /// Age past which payments may have forgotten a key.
    pub payment_key_ttl: Duration,
}

/// Where and how order events are published.
#[derive(Debug, Clone)]
pub struct EventsSettings {
    pub url: AmqpUrl,
    pub exchange: String,
    pub source: String,
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    pub pool_max: u32,
    /// Short, so that a request fails fast with 503 during an outage.
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub port: u16,
    /// The operator's listener.
    pub ops_addr: std::net::SocketAddr,
    pub request_timeout: Duration,
    /// Longest drain of requests in flight after SIGTERM.
    pub shutdown_timeout: Duration,
    pub max_body_bytes: usize,
    pub cors_origins: CorsOrigins,
}

/// Base URLs of the services an order's payment and cancellation call.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `None`: paying answers 503.
    pub payments_url: Option<String>,
    /// `None`: paying and cancelling a scheduled order answer 503.
    pub kitchen_url: Option<String>,
    pub connect_timeout: Duration,
    /// For a whole call; past it the request answers 504.
    pub timeout: Duration,
}

/// Checking bearer JWTs; only exists when `AUTH_ON` is true, so a key
/// source and an audience are always at hand.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub keys: KeySource,
    pub audience: String,
    pub audience_claim: AudienceClaim,
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Where token signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The identity provider's JWKS, fetched again when a token names an
    /// unknown key, but never more often than `min_refresh`, so that forged
    /// key ids cannot flood the provider.
    Jwks { url: String, min_refresh: Duration },
    /// A PEM public key or X.509 certificate: keys that do not rotate.
    PemFile(String),
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Tracing filter directives.
    pub filter: String,
    pub format: LogFormat,
}

/// OpenTelemetry traces.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// Where spans are sent (`.../v1/traces`); `None`: spans are made, so
    /// logs and calls to other services still carry trace ids, but never
    /// sent anywhere.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: TraceSampler,
}

/// Which traces are kept: `ratio` of new ones (1: all, 0: none); with
/// `parent_based`, a caller's decision is followed instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceSampler {
    pub parent_based: bool,
    pub ratio: f64,
}

impl Settings {
    /// Reads and checks the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads and checks the given variables (tests pass their own). Every
    /// rule that ties one variable to another is here.
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let v = variables::read(vars)?;

        // A pay or cancel runs to completion even when its client hangs up,
        // so its answer should not come before its work is done: the request
        // timeout covers every upstream call it may make and every wait for
        // a connection, and the drain after SIGTERM covers the request timeout.
        let request_timeout = v.request_timeout_ms.0;
        let longest = longest_request(v.upstream_timeout_ms.0, v.db_acquire_timeout_ms.0);
        if request_timeout < longest {
            return Err(REQUEST_TIMEOUT_MS.invalid(format!(
                "must be at least {} ms: {MOST_UPSTREAM_CALLS_PER_REQUEST} × {} plus \
                 {MOST_DATABASE_STEPS_PER_REQUEST} × {} (a pay or cancel may make that many \
                 upstream calls and database round trips)",
                longest.as_millis(),
                UPSTREAM_TIMEOUT_MS.name,
                DB_ACQUIRE_TIMEOUT_MS.name,
            )));
        }
        if v.shutdown_timeout_ms.0 < request_timeout {
            return Err(SHUTDOWN_TIMEOUT_MS.invalid(format!(
                "must be at least {} ({} ms), so that a pay in flight at SIGTERM is recorded",
                REQUEST_TIMEOUT_MS.name,
                request_timeout.as_millis()
            )));
        }
        if v.reconcile_backoff_max_ms.0 < v.reconcile_interval_ms.0 {
            return Err(RECONCILE_BACKOFF_MAX_MS.invalid(format!(
                "must be at least {} ({} ms)",
                RECONCILE_INTERVAL_MS.name,
                v.reconcile_interval_ms.0.as_millis()
            )));
        }
        let ratio = match v.otel_traces_sampler.fixed_ratio {
            Some(ratio) => ratio,
            None if (0.0..=1.0).contains(&v.otel_traces_sampler_arg) => v.otel_traces_sampler_arg,
            None => {
                return Err(OTEL_TRACES_SAMPLER_ARG.invalid(format!(
                    "must be between 0 and 1, not {}",
                    v.otel_traces_sampler_arg
                )));
            }
        };
        // The JWT variables are checked even when `AUTH_ON` is false, so
        // that a mistake shows before authentication is switched on.
        let keys = match (v.jwt_jwks_url, v.jwt_public_key_file) {
            (Some(url), None) => Some(KeySource::Jwks {
                url: url.0,
                min_refresh: v.jwt_jwks_min_refresh_secs.0,
            }),
            (None, Some(path)) => Some(KeySource::PemFile(path)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(JWT_JWKS_URL.invalid(format!(
                    "and {} are exclusive: set one",
                    JWT_PUBLIC_KEY_FILE.name
                )));
            }
        };
        let auth = if v.auth_on {
            let keys = keys.ok_or_else(|| {
                JWT_JWKS_URL.invalid(format!(
                    "or {} must be set when {}=true",
                    JWT_PUBLIC_KEY_FILE.name, AUTH_ON.name
                ))
            })?;
            let audience = v.jwt_audience.filter(|a| !a.is_empty()).ok_or_else(|| {
                JWT_AUDIENCE.invalid(format!("must be set when {}=true", AUTH_ON.name))
            })?;
            Some(AuthSettings {
                keys,
                audience,
                audience_claim: v.jwt_audience_claim,
                issuer: v.jwt_issuer,
                leeway: v.jwt_leeway_secs.0,
            })
        } else {
            None
        };
        let pool_max = match (&v.db_pool_max, &v.db_url) {
            (Some(max), _) => max.0 as u32,
            (None, DatabaseUrl::Postgres(_)) => POOL_MAX.postgres,
            (None, DatabaseUrl::Sqlite(_)) => POOL_MAX.sqlite,
        };
        Ok(Settings {
            database: DatabaseSettings {
                url: v.db_url,
                pool_max,
                acquire_timeout: v.db_acquire_timeout_ms.0,
            },
            server: ServerSettings {
                port: v.port,
                ops_addr: v.ops_addr.0,
                request_timeout,
                shutdown_timeout: v.shutdown_timeout_ms.0,
                max_body_bytes: v.max_body_bytes.0 as usize,
                cors_origins: v.cors_allowed_origins.unwrap_or(CorsOrigins::Any),
            },
            upstreams: UpstreamSettings {
                payments_url: v.payments_url.map(|url| url.0),
                kitchen_url: v.kitchen_url.map(|url| url.0),
                connect_timeout: v.upstream_connect_timeout_ms.0,
                timeout: v.upstream_timeout_ms.0,
            },
            auth,
            logging: LogSettings {
                filter: v.rust_log,
                format: v.log_format,
            },
            traces: TraceSettings {
                endpoint: v
                    .otel_exporter_otlp_endpoint
                    .map(|url| format!("{}/v1/traces", url.0.trim_end_matches('/'))),
                protocol: v.otel_exporter_otlp_protocol,
                service_name: v.otel_service_name.0,
                resource_attributes: v.otel_resource_attributes.map(|a| a.0).unwrap_or_default(),
                sampler: TraceSampler {
                    parent_based: v.otel_traces_sampler.parent_based,
                    ratio,
                },
            },
            idempotency_key_ttl: v.idempotency_key_ttl_secs.0,
            reconciler: ReconcilerSettings {
                interval: v.reconcile_interval_ms.0,
                kitchen_poll: v.kitchen_poll_ms.0,
                backoff_max: v.reconcile_backoff_max_ms.0,
                alert_after: v.reconcile_alert_after_ms.0,
                needs_attention_after: v.needs_attention_after_ms.0,
                payment_key_ttl: v.payment_key_ttl_secs.0,
            },
            events: v.events_url.map(|url| EventsSettings {
                url,
                exchange: v.events_exchange.0,
                source: v.events_source.0,
                retention: v.events_retention_secs.0,
            }),
        })
    }
}

#[cfg(test)]
mod tests;
