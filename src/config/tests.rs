use std::time::Duration;

use super::values::Parse;
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
    assert!(err.to_string().contains("38000 ms"), "{err}");
    assert!(
        err.to_string().contains("10 × DB_ACQUIRE_TIMEOUT_MS"),
        "{err}"
    );
    // The defaults fit: 3 × 4000 + 10 × 2000 ≤ 35000 ≤ 40000.
    Settings::from_vars(vars(&[])).unwrap();
    let err = Settings::from_vars(vars(&[
        ("REQUEST_TIMEOUT_MS", "50000"),
        ("SHUTDOWN_TIMEOUT_MS", "40000"),
    ]))
    .unwrap_err();
    assert_eq!(err.variable, "SHUTDOWN_TIMEOUT_MS", "{err}");
    let fits = Settings::from_vars(vars(&[
        ("UPSTREAM_TIMEOUT_MS", "6000"),
        ("REQUEST_TIMEOUT_MS", "40000"),
        ("SHUTDOWN_TIMEOUT_MS", "40000"),
    ]))
    .unwrap();
    assert_eq!(fits.server.request_timeout, Duration::from_secs(40));
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
    let parse = |value| <CorsOrigins as Parse>::parse(value).unwrap();
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

#[test]
fn the_readme_table_is_the_one_variables_renders() {
    let readme = include_str!("../../docs/configuration.md");
    let start = readme
        .find("| variable |")
        .expect("docs/configuration.md has a configuration table");
    let end = readme[start..]
        .find("\n\n")
        .map_or(readme.len(), |end| start + end + 1);
    let table = markdown_table();
    assert!(
        readme[start..end] == table,
        "docs/configuration.md's configuration table is not the one VARIABLES in src/config/ \
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

#[test]
fn only_upper_case_names_are_read() {
    let settings = Settings::from_vars(vars(&[("port", "9000")])).unwrap();
    assert_eq!(settings.server.port, DEFAULT_PORT);
}

#[test]
fn events_are_off_unless_a_broker_is_named() {
    assert!(Settings::from_vars(vars(&[])).unwrap().events.is_none());
    let settings = Settings::from_vars(vars(&[(
        "EVENTS_URL",
        "amqps://orders:s3cret@b-1234.mq.us-east-1.on.aws:5671/%2f",
    )]))
    .unwrap();
    let events = settings.events.expect("events on");
    assert_eq!(events.exchange, "orders");
    assert_eq!(events.source, "/orders-service");
    assert_eq!(events.retention, Duration::from_secs(86_400));
    assert_eq!(events.url.0.authority.port, 5671);
    assert_eq!(events.url.0.vhost, "/");
    let shown = format!("{events:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("amqps://orders@b-1234.mq.us-east-1.on.aws:5671/%2f"),
        "{shown}"
    );
    // An address, not a name, is kept as given (the AMQP client's own
    // parser would read it as `localhost`).
    let local = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5673/%2f").unwrap();
    assert_eq!(local.0.authority.host, "127.0.0.1");
    assert_eq!(local.0.authority.port, 5673);
}

#[test]
fn a_bad_events_url_stops_start_up_naming_it_without_its_password() {
    for url in [
        "http://broker:5672",
        "amqp://user:s3cret@:5672/",
        "amqp://user:s3cret@broker:notaport/",
        "",
    ] {
        let err = Settings::from_vars(vars(&[("EVENTS_URL", url)])).unwrap_err();
        assert_eq!(err.variable, "EVENTS_URL", "{url}: {err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
    let err = Settings::from_vars(vars(&[
        ("EVENTS_URL", "amqp://broker"),
        ("EVENTS_RETENTION_SECS", "0"),
    ]))
    .unwrap_err();
    assert_eq!(err.variable, "EVENTS_RETENTION_SECS");
    let err = Settings::from_vars(vars(&[("EVENTS_EXCHANGE", " ")])).unwrap_err();
    assert_eq!(err.variable, "EVENTS_EXCHANGE");
}
