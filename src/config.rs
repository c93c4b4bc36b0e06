//! Configuration, read once from the environment at start-up.
//!
//! Every setting lives in [`Settings`]; the README's table is generated from
//! the same names. A wrong value stops start-up with a message that names the
//! variable, rather than surfacing later as a confusing runtime error.

use serde::Deserialize;
use std::time::Duration;

/// The port used when `PORT` is unset; manifests and images expose it.
pub const DEFAULT_PORT: u16 = 8000;

/// Every environment variable [`Settings`] reads. The deployment test
/// checks that manifests set no variable outside this list.
pub const VARIABLES: &[&str] = &[
    "DB_URL",
    "PORT",
    "AUTH_ON",
    "PAYMENTS_URL",
    "KITCHEN_URL",
    "RUST_LOG",
    "LOG_FORMAT",
    "DB_POOL_MAX",
    "DB_ACQUIRE_TIMEOUT_MS",
    "REQUEST_TIMEOUT_MS",
    "SHUTDOWN_TIMEOUT_MS",
    "MAX_BODY_BYTES",
    "UPSTREAM_CONNECT_TIMEOUT_MS",
    "UPSTREAM_TIMEOUT_MS",
    "CORS_ALLOWED_ORIGINS",
    "IDEMPOTENCY_KEY_TTL_SECS",
    "JWT_JWKS_URL",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_LEEWAY_SECS",
    "JWT_JWKS_MIN_REFRESH_SECS",
];

/// Where orders are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// Production: `postgres://` or `postgresql://`.
    Postgres(String),
    /// Embedded default: `sqlite://path` (the file is created when missing).
    Sqlite(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(url.to_owned()))
        } else {
            Err(ConfigError::Invalid {
                variable: "DB_URL",
                reason: "must start with postgresql://, postgres:// or sqlite://".into(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Postgres(url) | Self::Sqlite(url) => url,
        }
    }

    /// The URL without its password, fit for a log line.
    pub fn redacted(&self) -> String {
        let url = self.as_str();
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &url[scheme_end + 3..at];
                match credentials.split_once(':') {
                    Some((user, _)) => {
                        format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
                    }
                    None => url.to_owned(),
                }
            }
            _ => url.to_owned(),
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
            _ => Err(ConfigError::Invalid {
                variable: "LOG_FORMAT",
                reason: format!("must be json or pretty, not {name:?}"),
            }),
        }
    }
}

/// Every setting of the service. Field `foo_bar` is variable `FOO_BAR`.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `DB_URL`: `postgresql://...` or `sqlite://path`.
    #[serde(default = "defaults::db_url")]
    pub db_url: String,
    /// `PORT`: listening port on 0.0.0.0 (0 picks a free one).
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// `AUTH_ON`: require a bearer JWT on `/orders`.
    #[serde(default)]
    pub auth_on: bool,
    /// `PAYMENTS_URL`: base URL of the payments service.
    #[serde(default)]
    pub payments_url: Option<String>,
    /// `KITCHEN_URL`: base URL of the kitchen service.
    #[serde(default)]
    pub kitchen_url: Option<String>,
    /// `RUST_LOG`: tracing filter directives.
    #[serde(default = "defaults::rust_log")]
    pub rust_log: String,
    /// `LOG_FORMAT`: `json` or `pretty` (see [`Settings::log_format`]).
    #[serde(default = "defaults::log_format", rename = "log_format")]
    log_format_name: String,
    /// `DB_POOL_MAX`: most connections held open to the database (default
    /// 16 on PostgreSQL; 4 on SQLite, where writers queue for one lock and
    /// more connections only add memory and tail latency).
    #[serde(default)]
    db_pool_max: Option<u32>,
    /// `DB_ACQUIRE_TIMEOUT_MS`: how long a request waits for a connection
    /// before answering 503; short, so an outage fails fast.
    #[serde(default = "defaults::db_acquire_timeout_ms")]
    pub db_acquire_timeout_ms: u64,
    /// `REQUEST_TIMEOUT_MS`: longest a request may take before it answers 503.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `SHUTDOWN_TIMEOUT_MS`: longest the drain after SIGTERM may take.
    #[serde(default = "defaults::shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// `MAX_BODY_BYTES`: largest request body accepted (413 above).
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// `UPSTREAM_CONNECT_TIMEOUT_MS`: connect timeout for payments and kitchen.
    #[serde(default = "defaults::upstream_connect_timeout_ms")]
    pub upstream_connect_timeout_ms: u64,
    /// `UPSTREAM_TIMEOUT_MS`: whole-call timeout for payments and kitchen (504 past it).
    #[serde(default = "defaults::upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins allowed by CORS;
    /// unset or `*` allows any origin (without credentials).
    #[serde(default)]
    pub cors_allowed_origins: Option<String>,
    /// `IDEMPOTENCY_KEY_TTL_SECS`: how long an `Idempotency-Key` of
    /// `POST /orders` is remembered.
    #[serde(default = "defaults::idempotency_key_ttl_secs")]
    pub idempotency_key_ttl_secs: u64,
    /// `JWT_JWKS_URL`: the identity provider's JWKS (e.g.
    /// `https://tenant.auth0.com/.well-known/jwks.json`); keys rotate.
    #[serde(default)]
    pub jwt_jwks_url: Option<String>,
    /// `JWT_PUBLIC_KEY_FILE`: a PEM public key or X.509 certificate, instead
    /// of a JWKS.
    #[serde(default)]
    pub jwt_public_key_file: Option<String>,
    /// `JWT_AUDIENCE`: a token's `aud` must contain it (required with auth).
    #[serde(default)]
    pub jwt_audience: Option<String>,
    /// `JWT_ISSUER`: when set, a token's `iss` must equal it.
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    /// `JWT_LEEWAY_SECS`: clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "defaults::jwt_leeway_secs")]
    pub jwt_leeway_secs: u64,
    /// `JWT_JWKS_MIN_REFRESH_SECS`: least time between two JWKS fetches
    /// triggered by unknown key ids, so forged `kid`s cannot flood the provider.
    #[serde(default = "defaults::jwt_jwks_min_refresh_secs")]
    pub jwt_jwks_min_refresh_secs: u64,
}

mod defaults {

    pub fn db_url() -> String {
        "sqlite://orders.db".into()
    }
    pub fn port() -> u16 {
        super::DEFAULT_PORT
    }
    pub fn rust_log() -> String {
        "info".into()
    }
    pub fn log_format() -> String {
        "json".into()
    }
    pub fn db_acquire_timeout_ms() -> u64 {
        2_000
    }
    pub fn request_timeout_ms() -> u64 {
        15_000
    }
    pub fn shutdown_timeout_ms() -> u64 {
        20_000
    }
    pub fn max_body_bytes() -> usize {
        64 * 1024
    }
    pub fn upstream_connect_timeout_ms() -> u64 {
        1_000
    }
    pub fn upstream_timeout_ms() -> u64 {
        5_000
    }
    pub fn idempotency_key_ttl_secs() -> u64 {
        24 * 60 * 60
    }
    pub fn jwt_leeway_secs() -> u64 {
        30
    }
    pub fn jwt_jwks_min_refresh_secs() -> u64 {
        30
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Environment(#[from] envy::Error),
    #[error("invalid configuration: {variable} {reason}")]
    Invalid {
        variable: &'static str,
        reason: String,
    },
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
        let settings: Settings = envy::from_iter(vars)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        DatabaseUrl::parse(&self.db_url)?;
        LogFormat::parse(&self.log_format_name)?;
        let positive = [
            ("DB_POOL_MAX", u64::from(self.db_pool_max())),
            ("DB_ACQUIRE_TIMEOUT_MS", self.db_acquire_timeout_ms),
            ("REQUEST_TIMEOUT_MS", self.request_timeout_ms),
            ("MAX_BODY_BYTES", self.max_body_bytes as u64),
            (
                "UPSTREAM_CONNECT_TIMEOUT_MS",
                self.upstream_connect_timeout_ms,
            ),
            ("UPSTREAM_TIMEOUT_MS", self.upstream_timeout_ms),
            ("IDEMPOTENCY_KEY_TTL_SECS", self.idempotency_key_ttl_secs),
        ];
        for (variable, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    variable,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        // Upper bounds keep time arithmetic from overflowing and catch
        // values given in the wrong unit.
        let bounded = [
            ("DB_POOL_MAX", u64::from(self.db_pool_max()), 1_000),
            ("DB_ACQUIRE_TIMEOUT_MS", self.db_acquire_timeout_ms, 600_000),
            ("REQUEST_TIMEOUT_MS", self.request_timeout_ms, 3_600_000),
            ("SHUTDOWN_TIMEOUT_MS", self.shutdown_timeout_ms, 3_600_000),
            (
                "MAX_BODY_BYTES",
                self.max_body_bytes as u64,
                16 * 1024 * 1024,
            ),
            (
                "UPSTREAM_CONNECT_TIMEOUT_MS",
                self.upstream_connect_timeout_ms,
                600_000,
            ),
            ("UPSTREAM_TIMEOUT_MS", self.upstream_timeout_ms, 600_000),
            (
                "IDEMPOTENCY_KEY_TTL_SECS",
                self.idempotency_key_ttl_secs,
                30 * 24 * 3_600,
            ),
            ("JWT_LEEWAY_SECS", self.jwt_leeway_secs, 3_600),
            (
                "JWT_JWKS_MIN_REFRESH_SECS",
                self.jwt_jwks_min_refresh_secs,
                86_400,
            ),
        ];
        for (variable, value, max) in bounded {
            if value > max {
                return Err(ConfigError::Invalid {
                    variable,
                    reason: format!("must be at most {max}, not {value}"),
                });
            }
        }
        if self.auth_on {
            if self.jwt_jwks_url.is_none() && self.jwt_public_key_file.is_none() {
                return Err(ConfigError::Invalid {
                    variable: "JWT_JWKS_URL",
                    reason: "or JWT_PUBLIC_KEY_FILE must be set when AUTH_ON=true".into(),
                });
            }
            if self.jwt_jwks_url.is_some() && self.jwt_public_key_file.is_some() {
                return Err(ConfigError::Invalid {
                    variable: "JWT_JWKS_URL",
                    reason: "and JWT_PUBLIC_KEY_FILE are exclusive: set one".into(),
                });
            }
            if self.jwt_audience.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::Invalid {
                    variable: "JWT_AUDIENCE",
                    reason: "must be set when AUTH_ON=true".into(),
                });
            }
        }
        for (variable, url) in [
            ("PAYMENTS_URL", &self.payments_url),
            ("KITCHEN_URL", &self.kitchen_url),
            ("JWT_JWKS_URL", &self.jwt_jwks_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError::Invalid {
                    variable,
                    reason: format!("must be an http:// or https:// URL, not {url:?}"),
                });
            }
        }
        Ok(())
    }

    /// The pool size for the configured backend.
    pub fn db_pool_max(&self) -> u32 {
        let default = match DatabaseUrl::parse(&self.db_url) {
            Ok(DatabaseUrl::Sqlite(_)) => 4,
            _ => 16,
        };
        self.db_pool_max.unwrap_or(default)
    }

    pub fn log_format(&self) -> LogFormat {
        LogFormat::parse(&self.log_format_name).expect("validated at start-up")
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.db_url).expect("validated at start-up")
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn upstream_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_connect_timeout_ms)
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn idempotency_key_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_key_ttl_secs)
    }

    /// `None` means any origin.
    pub fn cors_origins(&self) -> Option<Vec<String>> {
        let origins = self.cors_allowed_origins.as_deref()?.trim();
        if origins.is_empty() || origins == "*" {
            return None;
        }
        Some(
            origins
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        )
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
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
        assert_eq!(settings.db_url, "sqlite://orders.db");
        assert_eq!(settings.port, 8000);
        assert!(!settings.auth_on);
        assert_eq!(settings.log_format(), LogFormat::Json);
        assert!(settings.payments_url.is_none());
        assert_eq!(settings.db_pool_max(), 4, "SQLite's default pool");
        let postgres = Settings::from_vars(vars(&[("DB_URL", "postgresql://db/orders")])).unwrap();
        assert_eq!(postgres.db_pool_max(), 16);
        let set = Settings::from_vars(vars(&[("DB_POOL_MAX", "7")])).unwrap();
        assert_eq!(set.db_pool_max(), 7);
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
    fn every_variable_is_a_documented_field() {
        let source = include_str!("config.rs");
        for variable in VARIABLES {
            assert!(
                source.contains(&format!("/// `{variable}`")),
                "{variable} has no field"
            );
        }
        let documented = source
            .lines()
            .filter_map(|line| line.strip_prefix("    /// `")?.split_once("`:"))
            .filter(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .count();
        assert_eq!(
            documented,
            VARIABLES.len(),
            "a field is missing from VARIABLES"
        );
    }

    #[test]
    fn redacts_the_password_only() {
        let url = DatabaseUrl::parse("postgresql://app:s3cret@db:5432/orders").unwrap();
        assert_eq!(url.redacted(), "postgresql://app:***@db:5432/orders");
        let url = DatabaseUrl::parse("sqlite://orders.db").unwrap();
        assert_eq!(url.redacted(), "sqlite://orders.db");
    }
}
