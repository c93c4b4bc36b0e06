//! Configuration, read once from the environment at start-up.
//!
//! [`VARIABLES`] is the only place a variable's name, default and meaning
//! are written: the reader below looks every variable up through its entry,
//! and the README's table is rendered from it. Values are parsed here, once,
//! into typed groups, so a wrong value stops start-up with a message that
//! names the variable instead of surfacing later as a confusing runtime
//! error, and the rest of the service has nothing left to parse.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// The port used when `PORT` is unset; manifests and images expose it. The
/// default in `PORT`'s entry is the one read; a test keeps the two equal.
pub const DEFAULT_PORT: u16 = 8000;

/// An environment variable the service reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub default: Fallback,
    /// Markdown, as the README shows it.
    pub meaning: &'static str,
}

/// What applies while a variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Read as if the variable were set to this, so a default passes the
    /// same parsing and bounds as a given value.
    Value(&'static str),
    /// The default depends on the database backend.
    PerBackend { postgres: u32, sqlite: u32 },
    /// No value stands for it: this says what happens instead.
    Described(&'static str),
}

const DB_URL: Variable = Variable {
    name: "DB_URL",
    default: Fallback::Value("sqlite://orders.db"),
    meaning: "`postgresql://user:password@host:5432/db` or `sqlite://path`",
};
const PORT: Variable = Variable {
    name: "PORT",
    default: Fallback::Value("8000"),
    meaning: "listening port on 0.0.0.0 (`0` picks a free one)",
};
const AUTH_ON: Variable = Variable {
    name: "AUTH_ON",
    default: Fallback::Value("false"),
    meaning: "require a bearer JWT on `/orders`",
};
pub const PAYMENTS_URL: Variable = Variable {
    name: "PAYMENTS_URL",
    default: Fallback::Described("unset: pay answers 503"),
    meaning: "base URL of the payments service",
};
pub const KITCHEN_URL: Variable = Variable {
    name: "KITCHEN_URL",
    default: Fallback::Described(
        "unset: pay answers 503, and so does cancel of an order the kitchen may be making",
    ),
    meaning: "base URL of the kitchen service",
};
const RUST_LOG: Variable = Variable {
    name: "RUST_LOG",
    default: Fallback::Value("info"),
    meaning: "tracing filter, e.g. `info,orders_service=debug`",
};
const LOG_FORMAT: Variable = Variable {
    name: "LOG_FORMAT",
    default: Fallback::Value("json"),
    meaning: "`json` (one object a line) or `pretty`",
};
const DB_POOL_MAX: Variable = Variable {
    name: "DB_POOL_MAX",
    default: Fallback::PerBackend {
        postgres: 16,
        sqlite: 4,
    },
    meaning: "most database connections held open; SQLite writers queue for one lock, \
              so more connections there only add memory and tail latency",
};
const DB_ACQUIRE_TIMEOUT_MS: Variable = Variable {
    name: "DB_ACQUIRE_TIMEOUT_MS",
    default: Fallback::Value("2000"),
    meaning: "wait for a free connection before answering 503; short, so an outage fails fast",
};
const REQUEST_TIMEOUT_MS: Variable = Variable {
    name: "REQUEST_TIMEOUT_MS",
    default: Fallback::Value("15000"),
    meaning: "longest a request may run before answering 503; at least 3 × \
              `UPSTREAM_TIMEOUT_MS` + `DB_ACQUIRE_TIMEOUT_MS`, the most a pay or cancel may need",
};
const SHUTDOWN_TIMEOUT_MS: Variable = Variable {
    name: "SHUTDOWN_TIMEOUT_MS",
    default: Fallback::Value("20000"),
    meaning: "longest drain of requests in flight and background calls after SIGTERM; at \
              least `REQUEST_TIMEOUT_MS`",
};
const MAX_BODY_BYTES: Variable = Variable {
    name: "MAX_BODY_BYTES",
    default: Fallback::Value("65536"),
    meaning: "largest request body (413 above)",
};
const UPSTREAM_CONNECT_TIMEOUT_MS: Variable = Variable {
    name: "UPSTREAM_CONNECT_TIMEOUT_MS",
    default: Fallback::Value("1000"),
    meaning: "connect timeout towards payments and kitchen",
};
const UPSTREAM_TIMEOUT_MS: Variable = Variable {
    name: "UPSTREAM_TIMEOUT_MS",
    default: Fallback::Value("4000"),
    meaning: "whole-call timeout towards payments and kitchen (504 past it)",
};
const RECONCILE_INTERVAL_MS: Variable = Variable {
    name: "RECONCILE_INTERVAL_MS",
    default: Fallback::Value("5000"),
    meaning: "how often each replica looks for unsettled charges, refunds owed and orders to \
              follow with the kitchen",
};
const KITCHEN_POLL_MS: Variable = Variable {
    name: "KITCHEN_POLL_MS",
    default: Fallback::Value("30000"),
    meaning: "least time between two status questions to the kitchen about one `progress` order",
};
const RECONCILE_BACKOFF_MAX_MS: Variable = Variable {
    name: "RECONCILE_BACKOFF_MAX_MS",
    default: Fallback::Value("300000"),
    meaning: "longest wait before an unsettled item is tried again; the wait starts at \
              `RECONCILE_INTERVAL_MS` and doubles after each failure",
};
const RECONCILE_ALERT_AFTER_MS: Variable = Variable {
    name: "RECONCILE_ALERT_AFTER_MS",
    default: Fallback::Value("900000"),
    meaning: "age past which an unsettled charge, refund or kitchen step is logged at error \
              level each time it is tried (it is never dropped)",
};
const CORS_ALLOWED_ORIGINS: Variable = Variable {
    name: "CORS_ALLOWED_ORIGINS",
    default: Fallback::Described("any"),
    meaning: "comma-separated allowed origins; unset or `*` is any origin, without credentials",
};
const IDEMPOTENCY_KEY_TTL_SECS: Variable = Variable {
    name: "IDEMPOTENCY_KEY_TTL_SECS",
    default: Fallback::Value("86400"),
    meaning: "how long an `Idempotency-Key` of `POST /orders` is remembered",
};
const JWT_JWKS_URL: Variable = Variable {
    name: "JWT_JWKS_URL",
    default: Fallback::Described("unset"),
    meaning: "the identity provider's JWKS (with `AUTH_ON=true`); its keys may rotate",
};
const JWT_PUBLIC_KEY_FILE: Variable = Variable {
    name: "JWT_PUBLIC_KEY_FILE",
    default: Fallback::Described("unset"),
    meaning: "a PEM public key or X.509 certificate, instead of a JWKS",
};
const JWT_AUDIENCE: Variable = Variable {
    name: "JWT_AUDIENCE",
    default: Fallback::Described("unset"),
    meaning: "a token's `aud` must contain it; required with `AUTH_ON=true`",
};
const JWT_AUDIENCE_CLAIM: Variable = Variable {
    name: "JWT_AUDIENCE_CLAIM",
    default: Fallback::Value("aud"),
    meaning: "the claim that must hold `JWT_AUDIENCE`: `aud`, or `client_id` for providers whose \
              access tokens name their client there instead (Amazon Cognito)",
};
const JWT_ISSUER: Variable = Variable {
    name: "JWT_ISSUER",
    default: Fallback::Described("unset"),
    meaning: "when set, a token's `iss` must equal it",
};
const JWT_LEEWAY_SECS: Variable = Variable {
    name: "JWT_LEEWAY_SECS",
    default: Fallback::Value("30"),
    meaning: "clock skew tolerated on `exp` and `nbf`",
};
const JWT_JWKS_MIN_REFRESH_SECS: Variable = Variable {
    name: "JWT_JWKS_MIN_REFRESH_SECS",
    default: Fallback::Value("30"),
    meaning: "least time between two JWKS fetches caused by unknown key ids, \
              so forged `kid`s cannot flood the provider",
};

const OTEL_EXPORTER_OTLP_ENDPOINT: Variable = Variable {
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    default: Fallback::Described("unset: no exporter"),
    meaning: "base URL of an OpenTelemetry collector's OTLP/HTTP receiver \
              (`http://collector:4318`); spans go to `/v1/traces` under it",
};
const OTEL_EXPORTER_OTLP_PROTOCOL: Variable = Variable {
    name: "OTEL_EXPORTER_OTLP_PROTOCOL",
    default: Fallback::Value("http/protobuf"),
    meaning: "`http/protobuf` or `http/json` (`grpc` is not built in)",
};
const OTEL_SERVICE_NAME: Variable = Variable {
    name: "OTEL_SERVICE_NAME",
    default: Fallback::Value("orders-service"),
    meaning: "`service.name` of every span",
};
const OTEL_RESOURCE_ATTRIBUTES: Variable = Variable {
    name: "OTEL_RESOURCE_ATTRIBUTES",
    default: Fallback::Described("unset"),
    meaning: "more resource attributes, `key=value,key=value` (values percent-encoded)",
};
const OTEL_TRACES_SAMPLER: Variable = Variable {
    name: "OTEL_TRACES_SAMPLER",
    default: Fallback::Value("parentbased_always_on"),
    meaning: "`always_on`, `always_off`, `traceidratio`, or `parentbased_` before any of \
              them (a caller's sampling decision is followed)",
};
const OTEL_TRACES_SAMPLER_ARG: Variable = Variable {
    name: "OTEL_TRACES_SAMPLER_ARG",
    default: Fallback::Value("1.0"),
    meaning: "the ratio of traces kept by the `traceidratio` samplers, 0 to 1",
};

/// Every variable the service reads, in the README's order. The deployment
/// tests check that manifests and images set no variable outside it.
pub const VARIABLES: &[Variable] = &[
    DB_URL,
    PORT,
    AUTH_ON,
    PAYMENTS_URL,
    KITCHEN_URL,
    RUST_LOG,
    LOG_FORMAT,
    DB_POOL_MAX,
    DB_ACQUIRE_TIMEOUT_MS,
    REQUEST_TIMEOUT_MS,
    SHUTDOWN_TIMEOUT_MS,
    MAX_BODY_BYTES,
    UPSTREAM_CONNECT_TIMEOUT_MS,
    UPSTREAM_TIMEOUT_MS,
    RECONCILE_INTERVAL_MS,
    KITCHEN_POLL_MS,
    RECONCILE_BACKOFF_MAX_MS,
    RECONCILE_ALERT_AFTER_MS,
    CORS_ALLOWED_ORIGINS,
    IDEMPOTENCY_KEY_TTL_SECS,
    JWT_JWKS_URL,
    JWT_PUBLIC_KEY_FILE,
    JWT_AUDIENCE,
    JWT_AUDIENCE_CLAIM,
    JWT_ISSUER,
    JWT_LEEWAY_SECS,
    JWT_JWKS_MIN_REFRESH_SECS,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
];

impl Variable {
    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: self.name,
            reason: reason.into(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable} {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
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
}

/// The background work that settles what requests left open.
#[derive(Debug, Clone)]
pub struct ReconcilerSettings {
    pub interval: Duration,
    pub kitchen_poll: Duration,
    pub backoff_max: Duration,
    pub alert_after: Duration,
}

/// The most calls to payments and kitchen one pay or cancel request makes
/// (a cancel of a paid order may re-send its schedule, cancel it, and ask
/// the kitchen's status); the request timeout must leave room for all of
/// them, or a request would be answered "abandoned" while its work goes on.
pub const MOST_UPSTREAM_CALLS_PER_REQUEST: u32 = 3;

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

/// The claim a token names its audience in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceClaim {
    /// `aud` (a string or a list), as RFC 7519 has it.
    Aud,
    /// `client_id`: Amazon Cognito's access tokens carry no `aud`.
    ClientId,
}

impl FromStr for AudienceClaim {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "aud" => Ok(Self::Aud),
            "client_id" => Ok(Self::ClientId),
            other => Err(format!("must be aud or client_id, not {other:?}")),
        }
    }
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

/// How spans are encoded on the way to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
}

/// Which traces are kept: `ratio` of new ones (1: all, 0: none); with
/// `parent_based`, a caller's decision is followed instead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceSampler {
    pub parent_based: bool,
    pub ratio: f64,
}

impl TraceSettings {
    fn read(env: &Environment) -> Result<Self, ConfigError> {
        let endpoint = env
            .http_url(&OTEL_EXPORTER_OTLP_ENDPOINT)?
            .map(|url| format!("{}/v1/traces", url.trim_end_matches('/')));
        let protocol = match env.text(&OTEL_EXPORTER_OTLP_PROTOCOL)? {
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            "http/json" => OtlpProtocol::HttpJson,
            "grpc" => {
                return Err(OTEL_EXPORTER_OTLP_PROTOCOL.invalid(
                    "grpc is not built into this service: use http/protobuf \
                     (collectors listen for it on port 4318)",
                ));
            }
            other => {
                return Err(OTEL_EXPORTER_OTLP_PROTOCOL
                    .invalid(format!("must be http/protobuf or http/json, not {other:?}")));
            }
        };
        let service_name = env.text(&OTEL_SERVICE_NAME)?.trim();
        if service_name.is_empty() {
            return Err(OTEL_SERVICE_NAME.invalid("must not be empty"));
        }
        Ok(Self {
            endpoint,
            protocol,
            service_name: service_name.to_owned(),
            resource_attributes: resource_attributes(env.get(&OTEL_RESOURCE_ATTRIBUTES))?,
            sampler: TraceSampler::read(env)?,
        })
    }
}

/// `key=value,key=value`, values percent-encoded (the specification's
/// format, so `,` and `=` can be written inside a value).
fn resource_attributes(text: Option<&str>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut attributes = Vec::new();
    for pair in text.unwrap_or_default().split(',') {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            return Err(OTEL_RESOURCE_ATTRIBUTES.invalid(format!("has {pair:?} without `=`")));
        };
        let (key, value) = (key.trim(), percent_decoded(value.trim()));
        match value {
            Some(value) if !key.is_empty() => attributes.push((key.to_owned(), value)),
            _ => {
                return Err(OTEL_RESOURCE_ATTRIBUTES
                    .invalid(format!("has {pair:?}, not key=percent-encoded value")));
            }
        }
    }
    Ok(attributes)
}

fn percent_decoded(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

impl TraceSampler {
    fn read(env: &Environment) -> Result<Self, ConfigError> {
        let name = env.text(&OTEL_TRACES_SAMPLER)?;
        let (parent_based, own) = match name.strip_prefix("parentbased_") {
            Some(own) => (true, own),
            None => (false, name),
        };
        let ratio = match own {
            "always_on" => 1.0,
            "always_off" => 0.0,
            "traceidratio" => {
                let ratio: f64 = env.parsed(&OTEL_TRACES_SAMPLER_ARG)?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(OTEL_TRACES_SAMPLER_ARG
                        .invalid(format!("must be between 0 and 1, not {ratio}")));
                }
                ratio
            }
            _ => {
                return Err(OTEL_TRACES_SAMPLER.invalid(format!(
                    "must be always_on, always_off or traceidratio, with or without \
                     parentbased_ before it, not {name:?}"
                )));
            }
        };
        Ok(Self {
            parent_based,
            ratio,
        })
    }
}

/// Where orders are stored, parsed (so a malformed URL stops start-up
/// naming `DB_URL`, and nothing later parses it again).
#[derive(Clone)]
pub enum DatabaseUrl {
    /// Production: `postgres://` or `postgresql://`.
    Postgres(PgConnectOptions),
    /// Embedded default: `sqlite://path`.
    Sqlite(SqliteConnectOptions),
}

/// Only the redacted URL: the options hold the password, and their own
/// `Debug` would print it.
impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let invalid = |err: sqlx::Error| DB_URL.invalid(format!("is not a usable URL: {err}"));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.parse().map_err(invalid)?))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(url.parse().map_err(invalid)?))
        } else {
            Err(DB_URL.invalid("must start with postgresql://, postgres:// or sqlite://"))
        }
    }

    /// The database without its password, fit for a log line.
    pub fn redacted(&self) -> String {
        match self {
            Self::Postgres(options) => format!(
                "postgresql://{}@{}:{}/{}",
                options.get_username(),
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            ),
            Self::Sqlite(options) => {
                format!("sqlite://{}", options.get_filename().display())
            }
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line, for log collectors.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

impl LogFormat {
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err(LOG_FORMAT.invalid(format!("must be json or pretty, not {name:?}"))),
        }
    }
}

/// The origins CORS allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin, without credentials.
    Any,
    /// Only these (none at all when the list is empty).
    Only(Vec<String>),
}

impl CorsOrigins {
    fn parse(origins: Option<&str>) -> Self {
        match origins.map(str::trim) {
            None | Some("" | "*") => Self::Any,
            Some(origins) => Self::Only(
                origins
                    .split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        }
    }
}

impl Settings {
    /// Reads and checks the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads and checks the given variables (tests pass their own).
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let env = Environment(vars.into_iter().collect());
        Settings {
            database: DatabaseSettings::read(&env)?,
            server: ServerSettings::read(&env)?,
            upstreams: UpstreamSettings::read(&env)?,
            auth: AuthSettings::read(&env)?,
            logging: LogSettings {
                filter: env.text(&RUST_LOG)?.to_owned(),
                format: LogFormat::parse(env.text(&LOG_FORMAT)?)?,
            },
            traces: TraceSettings::read(&env)?,
            idempotency_key_ttl: env.seconds(&IDEMPOTENCY_KEY_TTL_SECS, 1..=30 * 24 * 3_600)?,
            reconciler: ReconcilerSettings::read(&env)?,
        }
        .checked()
    }

    /// A pay or cancel runs to completion even when its client hangs up,
    /// so its answer must not come before its work is done: the request
    /// timeout covers every upstream call it may make plus a wait for a
    /// connection, and the drain after SIGTERM covers the request timeout.
    fn checked(self) -> Result<Self, ConfigError> {
        let longest = self.upstreams.timeout * MOST_UPSTREAM_CALLS_PER_REQUEST
            + self.database.acquire_timeout;
        if self.server.request_timeout < longest {
            return Err(REQUEST_TIMEOUT_MS.invalid(format!(
                "must be at least {} ms: {MOST_UPSTREAM_CALLS_PER_REQUEST} × {} plus {} \
                 (a pay or cancel may make that many upstream calls)",
                longest.as_millis(),
                UPSTREAM_TIMEOUT_MS.name,
                DB_ACQUIRE_TIMEOUT_MS.name,
            )));
        }
        if self.server.shutdown_timeout < self.server.request_timeout {
            return Err(SHUTDOWN_TIMEOUT_MS.invalid(format!(
                "must be at least {} ({} ms), so that a pay in flight at SIGTERM is recorded",
                REQUEST_TIMEOUT_MS.name,
                self.server.request_timeout.as_millis()
            )));
        }
        Ok(self)
    }
}

impl ReconcilerSettings {
    fn read(env: &Environment) -> Result<Self, ConfigError> {
        let interval = env.millis(&RECONCILE_INTERVAL_MS, 10..=3_600_000)?;
        let backoff_max = env.millis(&RECONCILE_BACKOFF_MAX_MS, 10..=86_400_000)?;
        if backoff_max < interval {
            return Err(RECONCILE_BACKOFF_MAX_MS.invalid(format!(
                "must be at least {} ({} ms)",
                RECONCILE_INTERVAL_MS.name,
                interval.as_millis()
            )));
        }
        Ok(Self {
            interval,
            kitchen_poll: env.millis(&KITCHEN_POLL_MS, 10..=86_400_000)?,
            backoff_max,
            alert_after: env.millis(&RECONCILE_ALERT_AFTER_MS, 1_000..=30 * 86_400_000)?,
        })
    }
}

// The upper bounds below keep time arithmetic from overflowing and catch
// values given in the wrong unit.

impl DatabaseSettings {
    fn read(env: &Environment) -> Result<Self, ConfigError> {
        let url = DatabaseUrl::parse(env.text(&DB_URL)?)?;
        let pool_max = match (env.bounded(&DB_POOL_MAX, 1..=1_000)?, DB_POOL_MAX.default) {
            (Some(max), _) => max,
            (None, Fallback::PerBackend { postgres, sqlite }) => match url {
                DatabaseUrl::Postgres(_) => postgres,
                DatabaseUrl::Sqlite(_) => sqlite,
            },
            (None, _) => return Err(DB_POOL_MAX.invalid("must be set")),
        };
        Ok(Self {
            url,
            pool_max,
            acquire_timeout: env.millis(&DB_ACQUIRE_TIMEOUT_MS, 1..=600_000)?,
        })
    }
}

impl ServerSettings {
    fn read(env: &Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            port: env.parsed(&PORT)?,
            request_timeout: env.millis(&REQUEST_TIMEOUT_MS, 1..=3_600_000)?,
            shutdown_timeout: env.millis(&SHUTDOWN_TIMEOUT_MS, 0..=3_600_000)?,
            max_body_bytes: env.number(&MAX_BODY_BYTES, 1..=16 * 1024 * 1024)?,
            cors_origins: CorsOrigins::parse(env.get(&CORS_ALLOWED_ORIGINS)),
        })
    }
}

impl UpstreamSettings {
    fn read(env: &Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            payments_url: env.http_url(&PAYMENTS_URL)?,
            kitchen_url: env.http_url(&KITCHEN_URL)?,
            connect_timeout: env.millis(&UPSTREAM_CONNECT_TIMEOUT_MS, 1..=600_000)?,
            timeout: env.millis(&UPSTREAM_TIMEOUT_MS, 1..=600_000)?,
        })
    }
}

impl AuthSettings {
    /// The JWT variables are checked even when `AUTH_ON` is false, so that a
    /// mistake shows before authentication is switched on.
    fn read(env: &Environment) -> Result<Option<Self>, ConfigError> {
        let on: bool = env.parsed(&AUTH_ON)?;
        let jwks_url = env.http_url(&JWT_JWKS_URL)?;
        let min_refresh = env.seconds(&JWT_JWKS_MIN_REFRESH_SECS, 0..=86_400)?;
        let pem_file = env.get(&JWT_PUBLIC_KEY_FILE);
        let leeway = env.seconds(&JWT_LEEWAY_SECS, 0..=3_600)?;
        let audience_claim = env.parsed(&JWT_AUDIENCE_CLAIM)?;
        if !on {
            return Ok(None);
        }
        let keys = match (jwks_url, pem_file) {
            (Some(url), None) => KeySource::Jwks { url, min_refresh },
            (None, Some(path)) => KeySource::PemFile(path.to_owned()),
            (None, None) => {
                return Err(JWT_JWKS_URL.invalid(format!(
                    "or {} must be set when {}=true",
                    JWT_PUBLIC_KEY_FILE.name, AUTH_ON.name
                )));
            }
            (Some(_), Some(_)) => {
                return Err(JWT_JWKS_URL.invalid(format!(
                    "and {} are exclusive: set one",
                    JWT_PUBLIC_KEY_FILE.name
                )));
            }
        };
        let audience = env
            .get(&JWT_AUDIENCE)
            .filter(|audience| !audience.is_empty())
            .ok_or_else(|| {
                JWT_AUDIENCE.invalid(format!("must be set when {}=true", AUTH_ON.name))
            })?;
        Ok(Some(Self {
            keys,
            audience: audience.to_owned(),
            audience_claim,
            issuer: env.get(&JWT_ISSUER).map(str::to_owned),
            leeway,
        }))
    }
}

/// The variables given, read only through their [`Variable`] entries.
struct Environment(HashMap<String, String>);

impl Environment {
    /// The variable's value, else the value its default stands for.
    fn get(&self, variable: &Variable) -> Option<&str> {
        // A variable read but not listed would be missing from the README
        // and from the deployment checks; every test run reads them all.
        debug_assert!(
            VARIABLES.contains(variable),
            "{} is read but not listed in VARIABLES",
            variable.name
        );
        match (self.0.get(variable.name), variable.default) {
            (Some(value), _) => Some(value),
            (None, Fallback::Value(value)) => Some(value),
            (None, _) => None,
        }
    }

    /// An unset variable without a default is an error here: the reader
    /// asks for a value only where the table promises one.
    fn text(&self, variable: &Variable) -> Result<&str, ConfigError> {
        self.get(variable)
            .ok_or_else(|| variable.invalid("must be set"))
    }

    fn parsed<T>(&self, variable: &Variable) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let text = self.text(variable)?;
        text.parse()
            .map_err(|err| variable.invalid(format!("cannot be {text:?}: {err}")))
    }

    fn bounded<T>(
        &self,
        variable: &Variable,
        bounds: RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + PartialOrd + Display,
        T::Err: Display,
    {
        if self.get(variable).is_none() {
            return Ok(None);
        }
        let value: T = self.parsed(variable)?;
        if &value < bounds.start() {
            Err(variable.invalid(format!("must be at least {}, not {value}", bounds.start())))
        } else if &value > bounds.end() {
            Err(variable.invalid(format!("must be at most {}, not {value}", bounds.end())))
        } else {
            Ok(Some(value))
        }
    }

    fn number<T>(&self, variable: &Variable, bounds: RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display,
        T::Err: Display,
    {
        self.bounded(variable, bounds)?
            .ok_or_else(|| variable.invalid("must be set"))
    }

    fn millis(
        &self,
        variable: &Variable,
        bounds: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(variable, bounds).map(Duration::from_millis)
    }

    fn seconds(
        &self,
        variable: &Variable,
        bounds: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(variable, bounds).map(Duration::from_secs)
    }

    fn http_url(&self, variable: &Variable) -> Result<Option<String>, ConfigError> {
        match self.get(variable) {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                Err(variable.invalid(format!("must be an http:// or https:// URL, not {url:?}")))
            }
            url => Ok(url.map(str::to_owned)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_environment() {
        let settings = Settings::from_vars(vars(&[])).unwrap();
        assert_eq!(settings.database.url.redacted(), "sqlite://orders.db");
        assert_eq!(settings.database.pool_max, 4, "SQLite's default pool");
        assert_eq!(settings.server.port, DEFAULT_PORT);
        assert_eq!(settings.server.max_body_bytes, 64 * 1024);
        assert_eq!(settings.server.cors_origins, CorsOrigins::Any);
        assert!(settings.auth.is_none());
        assert_eq!(settings.logging.format, LogFormat::Json);
        assert!(settings.upstreams.payments_url.is_none());
        assert_eq!(settings.upstreams.timeout, Duration::from_secs(4));
        assert_eq!(settings.reconciler.interval, Duration::from_secs(5));
        assert_eq!(settings.reconciler.kitchen_poll, Duration::from_secs(30));
        assert_eq!(settings.idempotency_key_ttl, Duration::from_secs(86_400));
        let postgres = Settings::from_vars(vars(&[("DB_URL", "postgresql://db/orders")])).unwrap();
        assert_eq!(postgres.database.pool_max, 16);
        let set = Settings::from_vars(vars(&[("DB_POOL_MAX", "7")])).unwrap();
        assert_eq!(set.database.pool_max, 7);
    }

    #[test]
    fn a_request_timeout_too_short_for_its_upstream_calls_stops_start_up() {
        let err = Settings::from_vars(vars(&[("UPSTREAM_TIMEOUT_MS", "6000")])).unwrap_err();
        assert_eq!(err.variable, "REQUEST_TIMEOUT_MS", "{err}");
        assert!(err.to_string().contains("20000 ms"), "{err}");
        let err = Settings::from_vars(vars(&[
            ("REQUEST_TIMEOUT_MS", "30000"),
            ("SHUTDOWN_TIMEOUT_MS", "20000"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "SHUTDOWN_TIMEOUT_MS", "{err}");
        let fits = Settings::from_vars(vars(&[
            ("UPSTREAM_TIMEOUT_MS", "6000"),
            ("REQUEST_TIMEOUT_MS", "20000"),
            ("SHUTDOWN_TIMEOUT_MS", "20000"),
        ]))
        .unwrap();
        assert_eq!(fits.server.request_timeout, Duration::from_secs(20));
        let err = Settings::from_vars(vars(&[("RECONCILE_BACKOFF_MAX_MS", "1000")])).unwrap_err();
        assert_eq!(err.variable, "RECONCILE_BACKOFF_MAX_MS", "{err}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Settings::from_vars(vars(&[("PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
        let err = Settings::from_vars(vars(&[("DB_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("DB_URL"), "{err}");
        let err = Settings::from_vars(vars(&[("LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().contains("LOG_FORMAT"), "{err}");
        let err = Settings::from_vars(vars(&[("AUTH_ON", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("AUTH_ON"), "{err}");
        let err = Settings::from_vars(vars(&[("AUTH_ON", "true")])).unwrap_err();
        assert!(err.to_string().contains("JWT_JWKS_URL"), "{err}");
        let err = Settings::from_vars(vars(&[
            ("AUTH_ON", "true"),
            ("JWT_PUBLIC_KEY_FILE", "k.pem"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("JWT_AUDIENCE"), "{err}");
        let err =
            Settings::from_vars(vars(&[("IDEMPOTENCY_KEY_TTL_SECS", "999999999999")])).unwrap_err();
        assert!(
            err.to_string().contains("IDEMPOTENCY_KEY_TTL_SECS"),
            "{err}"
        );
        let err = Settings::from_vars(vars(&[("DB_POOL_MAX", "0")])).unwrap_err();
        assert!(err.to_string().contains("DB_POOL_MAX"), "{err}");
        let err = Settings::from_vars(vars(&[("PAYMENTS_URL", "payments:80")])).unwrap_err();
        assert!(err.to_string().contains("PAYMENTS_URL"), "{err}");
    }

    #[test]
    fn auth_settings_exist_only_with_auth_on() {
        let settings = Settings::from_vars(vars(&[
            ("AUTH_ON", "true"),
            ("JWT_JWKS_URL", "https://idp/jwks.json"),
            ("JWT_AUDIENCE", "orders"),
        ]))
        .unwrap();
        let auth = settings.auth.unwrap();
        assert_eq!(
            auth.keys,
            KeySource::Jwks {
                url: "https://idp/jwks.json".into(),
                min_refresh: Duration::from_secs(30),
            }
        );
        assert_eq!(auth.audience, "orders");
        assert_eq!(auth.issuer, None);
        let off = Settings::from_vars(vars(&[("JWT_AUDIENCE", "orders")])).unwrap();
        assert!(off.auth.is_none());
    }

    #[test]
    fn cors_origins_are_a_list_or_any() {
        let parse = |value| CorsOrigins::parse(Some(value));
        assert_eq!(parse(" * "), CorsOrigins::Any);
        assert_eq!(parse(""), CorsOrigins::Any);
        assert_eq!(
            parse("https://a.example, https://b.example,"),
            CorsOrigins::Only(vec!["https://a.example".into(), "https://b.example".into()])
        );
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let settings =
            Settings::from_vars(vars(&[("DB_URL", "postgresql://app:s3cret@db/orders")])).unwrap();
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn a_malformed_database_url_stops_start_up_without_printing_its_password() {
        let err = Settings::from_vars(vars(&[(
            "DB_URL",
            "postgresql://app:s3cret@db:notaport/orders",
        )]))
        .unwrap_err();
        assert_eq!(err.variable, "DB_URL", "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn redacts_the_password_only() {
        let url = DatabaseUrl::parse("postgresql://app:s3cret@db:5432/orders").unwrap();
        assert_eq!(url.redacted(), "postgresql://app@db:5432/orders");
        let url = DatabaseUrl::parse("sqlite://orders.db").unwrap();
        assert_eq!(url.redacted(), "sqlite://orders.db");
    }

    fn markdown_table() -> String {
        let mut table = String::from("| variable | meaning | default |\n|---|---|---|\n");
        for variable in VARIABLES {
            let default = match variable.default {
                Fallback::Value(value) => format!("`{value}`"),
                Fallback::PerBackend { postgres, sqlite } => {
                    format!("`{postgres}` (PostgreSQL), `{sqlite}` (SQLite)")
                }
                Fallback::Described(text) => text.to_owned(),
            };
            table.push_str(&format!(
                "| `{}` | {} | {default} |\n",
                variable.name, variable.meaning
            ));
        }
        table
    }

    #[test]
    fn the_readme_table_is_the_one_variables_renders() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("| variable |")
            .expect("README.md has a configuration table");
        let end = readme[start..]
            .find("\n\n")
            .map_or(readme.len(), |end| start + end + 1);
        let table = markdown_table();
        assert!(
            readme[start..end] == table,
            "README.md's configuration table is not the one VARIABLES in src/config.rs \
             renders; replace it with:\n\n{table}"
        );
    }

    #[test]
    fn traces_are_off_by_default_and_read_from_the_standard_variables() {
        let off = Settings::from_vars(vars(&[])).unwrap().traces;
        assert_eq!(off.endpoint, None);
        assert_eq!(off.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(off.service_name, "orders-service");
        assert_eq!(
            off.sampler,
            TraceSampler {
                parent_based: true,
                ratio: 1.0
            }
        );
        let on = Settings::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "orders-eu"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=prod, team=coffee%2Cmesh",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ]))
        .unwrap()
        .traces;
        assert_eq!(
            on.endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(on.protocol, OtlpProtocol::HttpJson);
        assert_eq!(on.service_name, "orders-eu");
        assert_eq!(
            on.resource_attributes,
            [
                ("deployment.environment.name".into(), "prod".into()),
                ("team".into(), "coffee,mesh".into())
            ]
        );
        assert_eq!(
            on.sampler,
            TraceSampler {
                parent_based: true,
                ratio: 0.1
            }
        );
    }

    #[test]
    fn wrong_trace_settings_stop_start_up_naming_the_variable() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
            ("OTEL_SERVICE_NAME", " "),
            ("OTEL_RESOURCE_ATTRIBUTES", "team"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=%zz"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ] {
            let err = Settings::from_vars(vars(&[(variable, value)])).unwrap_err();
            assert_eq!(err.variable, variable, "{value:?}");
        }
        let err = Settings::from_vars(vars(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "10"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "OTEL_TRACES_SAMPLER_ARG");
    }
}
