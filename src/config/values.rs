//! The types a variable's text becomes. Each parses itself, so a setting
//! that exists is a valid one and nothing after start-up parses again.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::ConfigError;
use super::variables::DB_URL;

/// A variable's type: how its text parses, and what an unset variable
/// without a default means (an error unless the type is optional).
pub trait Parse: Sized {
    fn parse(text: &str) -> Result<Self, String>;

    fn unset() -> Result<Self, String> {
        Err("must be set".to_owned())
    }
}

impl<T: Parse> Parse for Option<T> {
    fn parse(text: &str) -> Result<Self, String> {
        T::parse(text).map(Some)
    }

    fn unset() -> Result<Self, String> {
        Ok(None)
    }
}

macro_rules! parse_from_str {
    ($($ty:ty),*) => {$(
        impl Parse for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                text.parse().map_err(|err| format!("cannot be {text:?}: {err}"))
            }
        }
    )*};
}
parse_from_str!(u16, bool, f64, String);

/// A whole number within the variable's bounds, which keep time arithmetic
/// from overflowing and catch values given in the wrong unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> Parse for Bounded<MIN, MAX> {
    fn parse(text: &str) -> Result<Self, String> {
        match u64::parse(text)? {
            value if value < MIN => Err(format!("must be at least {MIN}, not {value}")),
            value if value > MAX => Err(format!("must be at most {MAX}, not {value}")),
            value => Ok(Self(value)),
        }
    }
}
parse_from_str!(u64);

/// Milliseconds, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis<const MIN: u64, const MAX: u64>(pub Duration);

impl<const MIN: u64, const MAX: u64> Parse for Millis<MIN, MAX> {
    fn parse(text: &str) -> Result<Self, String> {
        Bounded::<MIN, MAX>::parse(text).map(|ms| Self(Duration::from_millis(ms.0)))
    }
}

/// Seconds, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs<const MIN: u64, const MAX: u64>(pub Duration);

impl<const MIN: u64, const MAX: u64> Parse for Secs<MIN, MAX> {
    fn parse(text: &str) -> Result<Self, String> {
        Bounded::<MIN, MAX>::parse(text).map(|s| Self(Duration::from_secs(s.0)))
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub String);

impl Parse for HttpUrl {
    fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!("must be an http:// or https:// URL, not {text:?}"))
        }
    }
}

/// An address and port to listen on (`127.0.0.1:9000`, `[::1]:9000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAddress(pub std::net::SocketAddr);

impl Parse for SocketAddress {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim().parse().map(Self).map_err(|_| {
            format!("must be an address and port such as 127.0.0.1:9000, not {text:?}")
        })
    }
}

/// Text that is not blank, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmpty(pub String);

impl Parse for NonEmpty {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" => Err("must not be empty".to_owned()),
            text => Ok(Self(text.to_owned())),
        }
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

impl Parse for DatabaseUrl {
    /// The reason never quotes the URL: it holds the password.
    fn parse(url: &str) -> Result<Self, String> {
        let invalid = |err: sqlx::Error| format!("is not a usable URL: {err}");
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.parse().map_err(invalid)?))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(url.parse().map_err(invalid)?))
        } else {
            Err("must start with postgresql://, postgres:// or sqlite://".to_owned())
        }
    }
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        <Self as Parse>::parse(url).map_err(|reason| DB_URL.invalid(reason))
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

/// The broker of the order events, parsed as the AMQP client reads it (so a
/// malformed URL stops start-up naming `EVENTS_URL`).
#[derive(Clone)]
pub struct AmqpUrl(pub lapin::uri::AMQPUri);

/// Only the redacted URL: the parsed one holds the password.
impl std::fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Parse for AmqpUrl {
    /// The reason never quotes the URL: it holds the password.
    fn parse(text: &str) -> Result<Self, String> {
        if !(text.starts_with("amqp://") || text.starts_with("amqps://")) {
            return Err("must start with amqp:// or amqps://".to_owned());
        }
        let unusable = |_| "is not a usable AMQP URL".to_owned();
        let mut uri: lapin::uri::AMQPUri = text.parse().map_err(unusable)?;
        // The client's parser reads only a domain name as the host and puts
        // `localhost` in place of an IP address.
        uri.authority.host = match url::Url::parse(text)
            .map_err(|err| unusable(err.to_string()))?
            .host()
        {
            Some(url::Host::Domain(_)) => uri.authority.host,
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("names no host".to_owned()),
        };
        Ok(Self(uri))
    }
}

impl AmqpUrl {
    /// The broker without its password, fit for a log line.
    pub fn redacted(&self) -> String {
        let scheme = match self.0.scheme {
            lapin::uri::AMQPScheme::AMQP => "amqp",
            lapin::uri::AMQPScheme::AMQPS => "amqps",
        };
        let authority = &self.0.authority;
        format!(
            "{scheme}://{}@{}:{}/{}",
            authority.userinfo.username,
            authority.host,
            authority.port,
            self.0.vhost.replace('/', "%2f")
        )
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

impl Parse for LogFormat {
    fn parse(name: &str) -> Result<Self, String> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err(format!("must be json or pretty, not {name:?}")),
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

impl Parse for CorsOrigins {
    fn parse(origins: &str) -> Result<Self, String> {
        Ok(match origins.trim() {
            "" | "*" => Self::Any,
            origins => Self::Only(
                origins
                    .split(',')
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        })
    }
}

/// The claim a token names its audience in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceClaim {
    /// `aud` (a string or a list), as RFC 7519 has it.
    Aud,
    /// `client_id`: Amazon Cognito's access tokens carry no `aud`.
    ClientId,
}

impl Parse for AudienceClaim {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "aud" => Ok(Self::Aud),
            "client_id" => Ok(Self::ClientId),
            other => Err(format!("must be aud or client_id, not {other:?}")),
        }
    }
}

/// How spans are encoded on the way to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
}

impl Parse for OtlpProtocol {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            "grpc" => Err("grpc is not built into this service: use http/protobuf \
                           (collectors listen for it on port 4318)"
                .to_owned()),
            other => Err(format!("must be http/protobuf or http/json, not {other:?}")),
        }
    }
}

/// A sampler as OpenTelemetry's variables name it; its ratio comes from
/// another variable, so [`super::TraceSampler`] is made from both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerName {
    pub parent_based: bool,
    /// 1 for `always_on`, 0 for `always_off`; `None` for `traceidratio`,
    /// whose ratio is `OTEL_TRACES_SAMPLER_ARG`.
    pub fixed_ratio: Option<f64>,
}

impl Parse for SamplerName {
    fn parse(name: &str) -> Result<Self, String> {
        let (parent_based, own) = match name.strip_prefix("parentbased_") {
            Some(own) => (true, own),
            None => (false, name),
        };
        let fixed_ratio = match own {
            "always_on" => Some(1.0),
            "always_off" => Some(0.0),
            "traceidratio" => None,
            _ => {
                return Err(format!(
                    "must be always_on, always_off or traceidratio, with or without \
                     parentbased_ before it, not {name:?}"
                ));
            }
        };
        Ok(Self {
            parent_based,
            fixed_ratio,
        })
    }
}

/// `key=value,key=value`, values percent-encoded (the specification's
/// format, so `,` and `=` can be written inside a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceAttributes(pub Vec<(String, String)>);

impl Parse for ResourceAttributes {
    fn parse(text: &str) -> Result<Self, String> {
        let mut attributes = Vec::new();
        for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("has {pair:?} without `=`"));
            };
            match (key.trim(), percent_decoded(value.trim())) {
                (key, Some(value)) if !key.is_empty() => attributes.push((key.to_owned(), value)),
                _ => return Err(format!("has {pair:?}, not key=percent-encoded value")),
            }
        }
        Ok(Self(attributes))
    }
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
