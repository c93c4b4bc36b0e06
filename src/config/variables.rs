//! Every variable the service reads, written once: its name, the type that
//! parses it, its default and its meaning. From this one list come the
//! struct envy fills, the table the documentation shows, and the errors that
//! name the variable whose value does not parse (serde's own errors do not
//! say which field failed).

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

use super::values::{
    AmqpUrl, AudienceClaim, Bounded, CorsOrigins, DatabaseUrl, HttpUrl, LogFormat, Millis,
    NonEmpty, OtlpProtocol, Parse, ResourceAttributes, SamplerName, Secs, SocketAddress,
};
use super::{ConfigError, PerBackend};

/// An environment variable the service reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub default: Fallback,
    /// Markdown, as the documentation shows it.
    pub meaning: &'static str,
}

/// What applies while a variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Read as if the variable were set to this, so a default passes the
    /// same parsing and bounds as a given value.
    Value(&'static str),
    /// The default depends on the database backend.
    PerBackend(PerBackend),
    /// No value stands for it: this says what happens instead.
    Described(&'static str),
}

/// The largest pool by backend: SQLite writers queue for one lock.
pub const POOL_MAX: PerBackend = PerBackend {
    postgres: 16,
    sqlite: 4,
};

/// A variable's value as envy hands it over: parsed, or the reason it does
/// not parse, kept until the variable's name is at hand.
struct Read<T>(Result<T, String>);

impl<T: Parse> Default for Read<T> {
    fn default() -> Self {
        Self(T::unset())
    }
}

impl<'de, T: Parse> Deserialize<'de> for Read<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self(T::parse(&text)))
    }
}

macro_rules! variables {
    ($( $field:ident $name:ident : $ty:ty = $default:expr => $meaning:expr; )*) => {
        $( pub const $name: Variable = Variable {
            name: stringify!($name),
            default: $default,
            meaning: $meaning,
        }; )*

        /// Every variable the service reads, in the documentation's order.
        /// The deployment tests check that manifests and images set no
        /// variable outside it.
        pub const VARIABLES: &[Variable] = &[$($name),*];

        /// The environment as envy reads it: it matches a variable to the
        /// field of its name in lower case.
        #[derive(Deserialize)]
        struct Environment { $( #[serde(default)] $field: Read<$ty>, )* }

        /// Every variable's value, parsed by its type.
        pub(super) struct Values { $( pub $field: $ty, )* }

        impl Environment {
            fn values(self) -> Result<Values, ConfigError> {
                Ok(Values { $( $field: self.$field.0.map_err(|reason| $name.invalid(reason))?, )* })
            }
        }
    };
}

variables! {
    db_url DB_URL: DatabaseUrl = Fallback::Value("sqlite://orders.db")
        => "`postgresql://user:password@host:5432/db` or `sqlite://path`";
    port PORT: u16 = Fallback::Value("8000")
        => "listening port on 0.0.0.0 (`0` picks a free one)";
    ops_addr OPS_ADDR: SocketAddress = Fallback::Value("127.0.0.1:9000")
        => "the operator's listener (`/ops/stuck`, `/ops/orders/{id}/retry`, \
            `/ops/orders/{id}/resolve`); never routed by the Service or the ingress: reach it \
            with `kubectl port-forward` (port `0` picks a free one)";
    auth_on AUTH_ON: bool = Fallback::Value("false")
        => "require a bearer JWT on `/orders`";
    payments_url PAYMENTS_URL: Option<HttpUrl> = Fallback::Described("unset: pay answers 503")
        => "base URL of the payments service";
    kitchen_url KITCHEN_URL: Option<HttpUrl> = Fallback::Described(
        "unset: pay answers 503, and so does cancel of an order the kitchen may be making")
        => "base URL of the kitchen service";
    rust_log RUST_LOG: String = Fallback::Value("info")
        => "tracing filter, e.g. `info,orders_service=debug`";
    log_format LOG_FORMAT: LogFormat = Fallback::Value("json")
        => "`json` (one object a line) or `pretty`";
    db_pool_max DB_POOL_MAX: Option<Bounded<1, 1_000>> = Fallback::PerBackend(POOL_MAX)
        => "most database connections held open; SQLite writers queue for one lock, \
            so more connections there only add memory and tail latency";
    db_acquire_timeout_ms DB_ACQUIRE_TIMEOUT_MS: Millis<1, 600_000> = Fallback::Value("2000")
        => "wait for a free connection before answering 503; short, so an outage fails fast";
    request_timeout_ms REQUEST_TIMEOUT_MS: Millis<1, 3_600_000> = Fallback::Value("35000")
        => "longest a request may run before answering 504; at least 3 × \
            `UPSTREAM_TIMEOUT_MS` + 10 × `DB_ACQUIRE_TIMEOUT_MS`, the most a pay or cancel \
            may need (its upstream calls and database round trips)";
    shutdown_timeout_ms SHUTDOWN_TIMEOUT_MS: Millis<0, 3_600_000> = Fallback::Value("40000")
        => "longest drain of requests in flight and background calls after SIGTERM; at \
            least `REQUEST_TIMEOUT_MS`";
    max_body_bytes MAX_BODY_BYTES: Bounded<1, { 16 * 1024 * 1024 }> = Fallback::Value("65536")
        => "largest request body (413 above)";
    upstream_connect_timeout_ms UPSTREAM_CONNECT_TIMEOUT_MS: Millis<1, 600_000> = Fallback::Value("1000")
        => "connect timeout towards payments and kitchen";
    upstream_timeout_ms UPSTREAM_TIMEOUT_MS: Millis<1, 600_000> = Fallback::Value("4000")
        => "whole-call timeout towards payments and kitchen (504 past it)";
    reconcile_interval_ms RECONCILE_INTERVAL_MS: Millis<10, 3_600_000> = Fallback::Value("5000")
        => "how often each replica looks for unsettled charges, refunds owed and orders to \
            follow with the kitchen";
    kitchen_poll_ms KITCHEN_POLL_MS: Millis<10, 86_400_000> = Fallback::Value("30000")
        => "least time between two status questions to the kitchen about one `progress` order";
    reconcile_backoff_max_ms RECONCILE_BACKOFF_MAX_MS: Millis<10, 86_400_000> = Fallback::Value("300000")
        => "longest wait before an unsettled item is tried again; the wait starts at \
            `RECONCILE_INTERVAL_MS` and doubles after each failure";
    reconcile_alert_after_ms RECONCILE_ALERT_AFTER_MS: Millis<1_000, 2_592_000_000> = Fallback::Value("900000")
        => "age past which an unsettled charge, refund or kitchen step is logged at error \
            level each time it is tried (it is never dropped)";
    needs_attention_after_ms NEEDS_ATTENTION_AFTER_MS: Millis<100, 2_592_000_000> = Fallback::Value("3600000")
        => "age past which an unsettled charge, refund, schedule or kitchen follow-up stops \
            being retried and becomes `needs_attention`, for an operator to end (a refund \
            payments refuses becomes so at once)";
    payment_key_ttl_secs PAYMENT_KEY_TTL_SECS: Secs<60, 31_536_000> = Fallback::Value("86400")
        => "how long payments remembers an `Idempotency-Key` (Stripe: 24 hours); a charge or \
            refund already sent whose key is older is not sent again, it becomes \
            `needs_attention`, because payments could take it for a new one";
    cors_allowed_origins CORS_ALLOWED_ORIGINS: Option<CorsOrigins> = Fallback::Described("any")
        => "comma-separated allowed origins; unset or `*` is any origin, without credentials";
    idempotency_key_ttl_secs IDEMPOTENCY_KEY_TTL_SECS: Secs<1, 2_592_000> = Fallback::Value("86400")
        => "how long an `Idempotency-Key` of `POST /orders` is remembered";
    jwt_jwks_url JWT_JWKS_URL: Option<HttpUrl> = Fallback::Described("unset")
        => "the identity provider's JWKS (with `AUTH_ON=true`); its keys may rotate";
    jwt_public_key_file JWT_PUBLIC_KEY_FILE: Option<String> = Fallback::Described("unset")
        => "a PEM public key or X.509 certificate, instead of a JWKS";
    jwt_audience JWT_AUDIENCE: Option<String> = Fallback::Described("unset")
        => "a token's `aud` must contain it; required with `AUTH_ON=true`";
    jwt_audience_claim JWT_AUDIENCE_CLAIM: AudienceClaim = Fallback::Value("aud")
        => "the claim that must hold `JWT_AUDIENCE`: `aud`, or `client_id` for providers whose \
            access tokens name their client there instead (Amazon Cognito)";
    jwt_issuer JWT_ISSUER: Option<String> = Fallback::Described("unset")
        => "when set, a token's `iss` must equal it";
    jwt_leeway_secs JWT_LEEWAY_SECS: Secs<0, 3_600> = Fallback::Value("30")
        => "clock skew tolerated on `exp` and `nbf`";
    jwt_jwks_min_refresh_secs JWT_JWKS_MIN_REFRESH_SECS: Secs<0, 86_400> = Fallback::Value("30")
        => "least time between two JWKS fetches caused by unknown key ids, \
            so forged `kid`s cannot flood the provider";
    events_url EVENTS_URL: Option<AmqpUrl> = Fallback::Described("unset: no events are recorded or published")
        => "the RabbitMQ broker order events are published to, `amqp://` or \
            `amqps://user:password@host:port/vhost` (the vhost `/` is written `%2f`); a \
            broker that is down never fails a request: events wait in the database";
    events_exchange EVENTS_EXCHANGE: NonEmpty = Fallback::Value("orders")
        => "the durable topic exchange the events go to, declared by the service";
    events_source EVENTS_SOURCE: NonEmpty = Fallback::Value("/orders-service")
        => "the CloudEvents `source` of every event";
    events_retention_secs EVENTS_RETENTION_SECS: Secs<1, 2_592_000> = Fallback::Value("86400")
        => "how long a published event stays in the database before it is deleted";
    otel_exporter_otlp_endpoint OTEL_EXPORTER_OTLP_ENDPOINT: Option<HttpUrl> = Fallback::Described("unset: no exporter")
        => "base URL of an OpenTelemetry collector's OTLP/HTTP receiver \
            (`http://collector:4318`); spans go to `/v1/traces` under it";
    otel_exporter_otlp_protocol OTEL_EXPORTER_OTLP_PROTOCOL: OtlpProtocol = Fallback::Value("http/protobuf")
        => "`http/protobuf` or `http/json` (`grpc` is not built in)";
    otel_service_name OTEL_SERVICE_NAME: NonEmpty = Fallback::Value("orders-service")
        => "`service.name` of every span";
    otel_resource_attributes OTEL_RESOURCE_ATTRIBUTES: Option<ResourceAttributes> = Fallback::Described("unset")
        => "more resource attributes, `key=value,key=value` (values percent-encoded)";
    otel_traces_sampler OTEL_TRACES_SAMPLER: SamplerName = Fallback::Value("parentbased_always_on")
        => "`always_on`, `always_off`, `traceidratio`, or `parentbased_` before any of \
            them (a caller's sampling decision is followed)";
    otel_traces_sampler_arg OTEL_TRACES_SAMPLER_ARG: f64 = Fallback::Value("1.0")
        => "the ratio of traces kept by the `traceidratio` samplers, 0 to 1";
}

impl Variable {
    pub(super) fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: self.name,
            reason: reason.into(),
        }
    }
}

/// Reads the given variables, each unset one as its default.
pub(super) fn read<I>(vars: I) -> Result<Values, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    // Only the names as written: envy matches in lower case, so `port`
    // would otherwise stand in for `PORT`, or clash with its default.
    let mut vars: HashMap<String, String> = vars
        .into_iter()
        .filter(|(name, _)| VARIABLES.iter().any(|variable| variable.name == name))
        .collect();
    for variable in VARIABLES {
        if let Fallback::Value(value) = variable.default {
            vars.entry(variable.name.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    // Every field reads a string and keeps its own failure, so envy itself
    // cannot fail; the message says so if that ever changes.
    let environment: Environment = envy::from_iter(vars).map_err(|err| ConfigError {
        variable: "environment",
        reason: err.to_string(),
    })?;
    environment.values()
}

/// The table of the documentation's configuration page.
pub fn markdown_table() -> String {
    let mut table = String::from("| variable | meaning | default |\n|---|---|---|\n");
    for variable in VARIABLES {
        let default = match variable.default {
            Fallback::Value(value) => format!("`{value}`"),
            Fallback::PerBackend(PerBackend { postgres, sqlite }) => {
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
