//! OpenTelemetry traces, as a collector receives them: the service runs as a
//! process of its own (the tracing set-up is once per process) exporting
//! OTLP/HTTP JSON to a fake collector served by the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::fakes::{Fake, Fault};
use crate::faults::eventually;
use crate::helpers::{Backend, TestDatabase, latte_order};

/// A collector's OTLP/HTTP receiver: keeps every `/v1/traces` body, or
/// answers 500 to all of them.
#[derive(Clone)]
struct Collector {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start(answer: StatusCode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    if answer.is_success() {
                        let body = serde_json::from_slice(&body).expect("OTLP JSON");
                        kept.lock().unwrap().push(body);
                    }
                    (answer, "{}")
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies }
    }

    /// Every span received, with its resource's attributes.
    fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        for body in self.bodies.lock().unwrap().iter() {
            for resource in body["resourceSpans"].as_array().unwrap() {
                let service = attribute(&resource["resource"]["attributes"], "service.name");
                for scope in resource["scopeSpans"].as_array().unwrap() {
                    for span in scope["spans"].as_array().unwrap() {
                        spans.push(Span {
                            service: service.clone(),
                            raw: span.clone(),
                        });
                    }
                }
            }
        }
        spans
    }
}

/// A value of an OTLP attribute list, as text (`intValue`s come as strings
/// or numbers depending on the encoder).
fn attribute(attributes: &Value, key: &str) -> Option<String> {
    let found = attributes
        .as_array()?
        .iter()
        .find(|attribute| attribute["key"] == key)?;
    let value = &found["value"];
    ["stringValue", "intValue", "boolValue", "doubleValue"]
        .iter()
        .find_map(|kind| match &value[kind] {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        })
}

#[derive(Debug, Clone)]
struct Span {
    service: Option<String>,
    raw: Value,
}

impl Span {
    fn name(&self) -> &str {
        self.raw["name"].as_str().unwrap()
    }
    fn trace_id(&self) -> &str {
        self.raw["traceId"].as_str().unwrap()
    }
    fn span_id(&self) -> &str {
        self.raw["spanId"].as_str().unwrap()
    }
    fn parent_id(&self) -> &str {
        self.raw["parentSpanId"].as_str().unwrap_or_default()
    }
    /// 2: server, 3: client (OTLP's `SpanKind`).
    fn kind(&self) -> i64 {
        self.raw["kind"].as_i64().unwrap()
    }
    fn get(&self, key: &str) -> Option<String> {
        attribute(&self.raw["attributes"], key)
    }
    /// 2: error (OTLP's `StatusCode`).
    fn status_code(&self) -> i64 {
        self.raw["status"]["code"].as_i64().unwrap_or(0)
    }
}

/// The service as a process, exporting to `collector` (or to nothing
/// listening, for `None`), with its log lines kept.
struct Traced {
    child: tokio::process::Child,
    address: String,
    lines: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Traced {
    async fn start(db: &TestDatabase, fake: &Fake, endpoint: &str) -> Self {
        Self::batching_every(db, fake, endpoint, "100").await
    }

    /// `delay_ms`: the SDK's `OTEL_BSP_SCHEDULE_DELAY`, how often batches
    /// go out (5 s unless set).
    async fn batching_every(
        db: &TestDatabase,
        fake: &Fake,
        endpoint: &str,
        delay_ms: &str,
    ) -> Self {
        Self::spawn(db, fake, endpoint, delay_ms, &[]).await
    }

    /// `settings` added to (or overriding) the ones above; an empty
    /// `endpoint` sets no exporter.
    async fn spawn(
        db: &TestDatabase,
        fake: &Fake,
        endpoint: &str,
        delay_ms: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Chosen here, as the service may not log the port it listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|free| free.local_addr())
            .unwrap()
            .port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_orders-service"))
            .env("DB_URL", &db.url)
            .env("PORT", port.to_string())
            .env("OPS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("PAYMENTS_URL", &fake.url)
            .env("KITCHEN_URL", &fake.url)
            .env("RECONCILE_INTERVAL_MS", "3600000")
            .env("RECONCILE_BACKOFF_MAX_MS", "3600000")
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test",
            )
            .env("OTEL_BSP_SCHEDULE_DELAY", delay_ms)
            .envs(settings.iter().copied())
            .envs((!endpoint.is_empty()).then_some(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the service starts");
        let mut reader = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually("the service to listen", async || {
            let ready = client.get(format!("{address}/healthz")).send().await;
            ready.is_ok_and(|answer| answer.status().is_success())
        })
        .await;
        Self {
            child,
            address,
            lines,
            client,
        }
    }

    async fn create(&self) -> Uuid {
        let response = self
            .client
            .post(format!("{}/orders", self.address))
            .json(&latte_order())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let order: Value = response.json().await.unwrap();
        order["id"].as_str().unwrap().parse().unwrap()
    }

    async fn pay(&self, id: Uuid, traceparent: Option<&str>) -> Value {
        let mut request = self
            .client
            .post(format!("{}/orders/{id}/pay", self.address));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "the pay succeeds");
        response.json().await.unwrap()
    }

    /// A POST whose caller is in the trace `trace_id`; its status.
    async fn post_in_trace(&self, path: &str, trace_id: &str) -> u16 {
        let caller = format!("00-{trace_id}-b7ad6b7169203331-01");
        let request = self.client.post(format!("{}{path}", self.address));
        let response = request.header("traceparent", caller).send().await;
        response.unwrap().status().as_u16()
    }

    /// The order's status, as the API says.
    async fn status_of(&self, id: Uuid) -> String {
        let url = format!("{}/orders/{id}", self.address);
        let order: Value = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        order["status"].as_str().unwrap_or_default().to_owned()
    }

    /// The count of spans dropped for `reason`, as `/metrics` says.
    async fn dropped(&self, reason: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("orders_trace_spans_dropped_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0, |count| count.trim().parse().unwrap())
    }

    /// SIGTERM, then waits for the exit: what was queued is flushed.
    async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the service stops within its drain deadline")
            .unwrap();
        assert!(exit.success(), "the service exits cleanly: {exit}");
        // The reader may still hold the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.lines.lock().unwrap().clone()
    }
}

async fn migrated(backend: Backend) -> TestDatabase {
    let db = TestDatabase::create(backend).await;
    db.migrate().await;
    db
}

/// The spans of one trace, as an operator's trace view lists them: each
/// under its parent, with its duration and the attributes that matter.
fn render(spans: &[Span], trace_id: &str) -> String {
    fn walk(spans: &[&Span], parent: &str, depth: usize, out: &mut String) {
        for span in spans.iter().filter(|span| span.parent_id() == parent) {
            let nanos = |key: &str| -> u128 {
                let value = &span.raw[key];
                value
                    .as_str()
                    .map(|text| text.parse().unwrap())
                    .or_else(|| value.as_u64().map(u128::from))
                    .unwrap()
            };
            let millis =
                (nanos("endTimeUnixNano") - nanos("startTimeUnixNano")) as f64 / 1_000_000.0;
            let shown: Vec<String> = [
                "http.response.status_code",
                "order.id",
                "payment.attempt_key",
                "payment.id",
                "kitchen.schedule_id",
                "db.system.name",
                "server.address",
            ]
            .iter()
            .filter_map(|key| span.get(key).map(|value| format!("{key}={value}")))
            .collect();
            out.push_str(&format!(
                "{:indent$}{} [{}] {millis:.1} ms  {}\n",
                "",
                span.name(),
                match span.kind() {
                    2 => "server",
                    3 => "client",
                    _ => "internal",
                },
                shown.join(" "),
                indent = depth * 2
            ));
            walk(spans, span.span_id(), depth + 1, out);
        }
    }
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id() == trace_id).collect();
    let mut out = format!("trace {trace_id}\n");
    walk(&trace, "", 1, &mut out);
    out
}

/// A create and a pay: two traces, each rooted in its server span; the
/// pay's calls to payments and kitchen are children of its server span,
/// named by their route templates and carrying the ids they concern.
async fn a_create_and_a_pay_reach_the_collector_as_traces_rooted_in_server_spans(backend: Backend) {
    let db = migrated(backend).await;
    let fake = Fake::start().await;
    let collector = Collector::start(StatusCode::OK).await;
    let service = Traced::start(&db, &fake, &collector.url).await;
    let id = service.create().await;
    let paid = service.pay(id, None).await;
    service.stop().await;

    let spans = collector.spans();
    assert!(
        spans
            .iter()
            .all(|span| span.service.as_deref() == Some("orders-service")),
        "every span names the service"
    );
    let root = |name: &str| {
        spans
            .iter()
            .find(|span| span.name() == name && span.parent_id().is_empty())
            .unwrap_or_else(|| panic!("no root span {name}: {spans:#?}"))
            .clone()
    };
    let create = root("POST /orders");
    assert_eq!(create.kind(), 2, "a server span");
    assert_eq!(create.get("http.route").as_deref(), Some("/orders"));
    assert_eq!(create.get("http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        create.get("http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(create.get("order.id"), Some(id.to_string()));
    let stored = spans
        .iter()
        .find(|span| span.parent_id() == create.span_id() && span.name() == "create")
        .expect("the insert is a child of the create");
    assert_eq!(
        stored.get("db.system.name").as_deref(),
        Some(match backend {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        })
    );

    let pay = root("POST /orders/{order_id}/pay");
    assert_ne!(pay.trace_id(), create.trace_id(), "one trace a request");
    assert_eq!(pay.kind(), 2);
    assert_eq!(pay.get("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(pay.get("order.id"), Some(id.to_string()));
    assert_eq!(pay.status_code(), 0, "a success leaves the status unset");
    let child = |name: &str| {
        spans
            .iter()
            .find(|span| span.name() == name && span.trace_id() == pay.trace_id())
            .unwrap_or_else(|| panic!("no span {name} in the pay's trace: {spans:#?}"))
            .clone()
    };
    let charge = child("POST /payments");
    assert_eq!(charge.parent_id(), pay.span_id(), "a child of the pay");
    assert_eq!(charge.kind(), 3, "a client span");
    assert_eq!(charge.get("peer.service").as_deref(), Some("payments"));
    assert_eq!(charge.get("http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        charge.get("http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(charge.get("order.id"), Some(id.to_string()));
    assert!(charge.get("payment.attempt_key").is_some());
    assert_eq!(
        charge.get("url.full"),
        Some(format!("{}/payments", fake.url))
    );
    assert_eq!(charge.get("server.address").as_deref(), Some("127.0.0.1"));
    let schedule = child("POST /kitchen/schedules");
    assert_eq!(schedule.parent_id(), pay.span_id());
    assert_eq!(schedule.kind(), 3);
    assert_eq!(schedule.get("peer.service").as_deref(), Some("kitchen"));
    assert_eq!(
        schedule.get("http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(
        schedule.get("kitchen.schedule_id"),
        Some(fake.schedule_of(id).unwrap().id.to_string())
    );
    assert_eq!(paid["status"], "progress");
    for step in [
        "lifecycle_state",
        "begin_charge",
        "record_paid",
        "record_scheduled",
    ] {
        let span = child(step);
        assert_eq!(span.parent_id(), pay.span_id(), "{step} under the pay");
        assert_eq!(span.get("order.id"), Some(id.to_string()), "{step}");
    }
    // `TRACE_REPORT=1 cargo nextest run ... --no-capture` prints the
    // example of docs/observability.md.
    if std::env::var_os("TRACE_REPORT").is_some() {
        println!("{}", render(&spans, pay.trace_id()));
    }
}

/// A caller's `traceparent` is continued: the server span is its child, in
/// its trace, and the calls to payments carry that trace on.
async fn an_incoming_traceparent_is_continued_to_payments(backend: Backend) {
    let db = migrated(backend).await;
    let fake = Fake::start().await;
    let collector = Collector::start(StatusCode::OK).await;
    let service = Traced::start(&db, &fake, &collector.url).await;
    let id = service.create().await;
    let (trace_id, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    service
        .pay(id, Some(&format!("00-{trace_id}-{caller}-01")))
        .await;
    service.stop().await;

    let spans = collector.spans();
    let pay = spans
        .iter()
        .find(|span| span.name() == "POST /orders/{order_id}/pay")
        .expect("the pay's server span");
    assert_eq!(pay.trace_id(), trace_id);
    assert_eq!(pay.parent_id(), caller, "a child of the caller's span");
    let charge = spans
        .iter()
        .find(|span| span.name() == "POST /payments")
        .unwrap();
    assert_eq!(charge.trace_id(), trace_id);
    let sent: Vec<String> = fake
        .traceparents()
        .into_iter()
        .filter(|(call, _)| call == "POST /payments")
        .map(|(_, traceparent)| traceparent.expect("the charge carries a traceparent"))
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0],
        format!("00-{trace_id}-{}-01", charge.span_id()),
        "payments is told the charge's span as its parent"
    );
}

/// Every log line a traced request writes names its trace and span; lines
/// outside requests name none.
async fn log_lines_of_a_traced_request_carry_its_trace_id(backend: Backend) {
    let db = migrated(backend).await;
    let fake = Fake::start().await;
    let collector = Collector::start(StatusCode::OK).await;
    let service = Traced::start(&db, &fake, &collector.url).await;
    let id = service.create().await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    service
        .pay(id, Some(&format!("00-{trace_id}-b7ad6b7169203331-01")))
        .await;
    let lines = service.stop().await;

    let entries: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let served: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["message"] == "request served")
        .collect();
    assert_eq!(served.len(), 2, "the create and the pay: {lines:#?}");
    let pay = served
        .iter()
        .find(|entry| entry["span"]["route"] == "/orders/{order_id}/pay")
        .unwrap();
    assert_eq!(pay["trace_id"], trace_id);
    assert_eq!(pay["span_id"].as_str().map(str::len), Some(16));
    assert!(
        pay["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "the request id stays"
    );
    let create = served
        .iter()
        .find(|entry| entry["span"]["route"] == "/orders")
        .unwrap();
    assert_eq!(create["trace_id"].as_str().map(str::len), Some(32));
    assert_ne!(create["trace_id"], trace_id);
    let listening = entries
        .iter()
        .find(|entry| entry["message"] == "listening")
        .unwrap();
    assert_eq!(listening.get("trace_id"), None);
    let collected = collector.spans();
    let exported = collected
        .iter()
        .find(|span| span.name() == "POST /orders/{order_id}/pay")
        .unwrap();
    assert_eq!(json!(exported.span_id()), pay["span_id"]);
}

/// A collector that refuses every batch, or none at all: requests are
/// served as ever, and the spans lost are counted.
async fn requests_succeed_and_drops_are_counted_when_the_collector_fails(backend: Backend) {
    let refusing = Collector::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for endpoint in [refusing.url.as_str(), down.as_str()] {
        let db = migrated(backend).await;
        let fake = Fake::start().await;
        let service = Traced::start(&db, &fake, endpoint).await;
        assert_eq!(service.dropped("export_failed").await, 0);
        for _ in 0..3 {
            let id = service.create().await;
            let paid = service.pay(id, None).await;
            assert_eq!(paid["status"], "progress");
        }
        eventually("spans to be counted as dropped", async || {
            service.dropped("export_failed").await >= 6
        })
        .await;
        service.stop().await;
    }
    assert!(refusing.spans().is_empty());
}

/// Spans still queued at SIGTERM are sent before the process exits.
async fn queued_spans_are_flushed_at_shutdown(backend: Backend) {
    let db = migrated(backend).await;
    let fake = Fake::start().await;
    let collector = Collector::start(StatusCode::OK).await;
    let service = Traced::batching_every(&db, &fake, &collector.url, "600000").await;
    let id = service.create().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.spans().is_empty(),
        "nothing is sent before a batch is due"
    );
    service.stop().await;
    let spans = collector.spans();
    let create = spans
        .iter()
        .find(|span| span.name() == "POST /orders")
        .expect("the create's span was flushed at shutdown");
    assert_eq!(create.get("order.id"), Some(id.to_string()));
}

/// A charge whose answer was lost is settled by the reconciler in a trace
/// of its own, which links back to the pay that opened it; so is the
/// refund a cancel owes: an operator goes from the customer's request to
/// the work finished after it ended.
async fn the_reconcilers_spans_link_to_the_requests_that_opened_their_work(backend: Backend) {
    let db = migrated(backend).await;
    let fake = Fake::start().await;
    let collector = Collector::start(StatusCode::OK).await;
    let every = [
        ("RECONCILE_INTERVAL_MS", "200"),
        ("RECONCILE_BACKOFF_MAX_MS", "200"),
        ("KITCHEN_POLL_MS", "200"),
        ("UPSTREAM_TIMEOUT_MS", "700"),
    ];
    let service = Traced::spawn(&db, &fake, &collector.url, "100", &every).await;
    let id = service.create().await;
    // Charged, but the answer is lost: the pay ends with the charge open.
    fake.fail_charges(&[Fault::ServerError]);
    let pay_trace = "0af7651916cd43dd8448eb211c80319c";
    let pay = service
        .post_in_trace(&format!("/orders/{id}/pay"), pay_trace)
        .await;
    assert_eq!(pay, 502, "the charge's answer was lost");
    eventually("the reconciler to settle the charge", async || {
        service.status_of(id).await == "progress"
    })
    .await;
    // The customer cancels; the refund's first call fails, so it is owed,
    // and the reconciler delivers it in a trace linked to the cancel's.
    let cancel_trace = "5b8aa5a2d2c872e8321cf37308d69df2";
    fake.fail_refunds(&[Fault::ServerError]);
    let cancel = service
        .post_in_trace(&format!("/orders/{id}/cancel"), cancel_trace)
        .await;
    assert_eq!(cancel, 200);
    eventually("the refund to be delivered", async || {
        fake.refunds_of(id) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.stop().await;

    let spans = collector.spans();
    let linked = |name: &str, trace: &str| {
        spans.iter().any(|span| {
            span.name() == name
                && span.parent_id().is_empty()
                && span.trace_id() != trace
                && span.raw["links"]
                    .as_array()
                    .is_some_and(|links| links.iter().any(|link| link["traceId"] == trace))
        })
    };
    assert!(
        linked("reconcile charge", pay_trace),
        "a reconcile charge span links to the pay's trace: {spans:#?}"
    );
    assert!(
        linked("reconcile refund", cancel_trace),
        "a reconcile refund span links to the cancel's trace: {spans:#?}"
    );
}

/// With no exporter and no caller's trace, a request still names a trace
/// of its own: in its log lines (at `warn`, where the request has no span,
/// and at `info`), in the `traceparent` of its calls to payments, and
/// the reconciler's work names another, one per item.
async fn without_an_exporter_work_still_names_its_trace(backend: Backend) {
    for level in ["warn", "info"] {
        let db = migrated(backend).await;
        let fake = Fake::start().await;
        let settings = [
            ("RUST_LOG", level),
            ("RECONCILE_INTERVAL_MS", "200"),
            ("RECONCILE_BACKOFF_MAX_MS", "200"),
            ("UPSTREAM_TIMEOUT_MS", "700"),
        ];
        let service = Traced::spawn(&db, &fake, "", "100", &settings).await;
        let id = service.create().await;
        // Charged, but the answer is lost: a 502, logged at `warn`, and
        // the reconciler settles the charge afterwards.
        fake.fail_charges(&[Fault::ServerError]);
        let pay = service
            .client
            .post(format!("{}/orders/{id}/pay", service.address));
        assert_eq!(pay.send().await.unwrap().status(), 502);
        eventually("the reconciler to settle the charge", async || {
            service.status_of(id).await == "progress"
        })
        .await;
        let lines = service.stop().await;

        let entries: Vec<Value> = lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let failed = entries
            .iter()
            .find(|entry| entry["message"] == "request failed")
            .unwrap_or_else(|| panic!("the pay's line at {level}: {lines:#?}"));
        let trace_id = failed["trace_id"].as_str().expect("the line names a trace");
        assert_eq!(trace_id.len(), 32);
        assert_ne!(trace_id, "0".repeat(32));
        assert_eq!(failed["span_id"].as_str().map(str::len), Some(16));
        if level == "info" {
            let served: Vec<&str> = entries
                .iter()
                .filter(|entry| entry["message"] == "request served")
                .filter_map(|entry| entry["trace_id"].as_str())
                .collect();
            assert!(!served.is_empty(), "{lines:#?}");
            assert!(!served.contains(&trace_id), "one trace a request");
        }
        let sent = fake.traceparents();
        let (first, later) = sent
            .split_first()
            .expect("payments was called by the pay and the reconciler");
        assert_eq!(first.0, "POST /payments");
        let pays = first
            .1
            .as_deref()
            .expect("the charge carries a traceparent");
        assert_eq!(
            pays,
            format!("00-{trace_id}-{}-01", failed["span_id"].as_str().unwrap()),
            "payments is told the request's trace"
        );
        let reconciled = later
            .first()
            .and_then(|(_, traceparent)| traceparent.as_deref())
            .expect("the reconciler's call carries a traceparent");
        assert!(reconciled.starts_with("00-") && reconciled.ends_with("-01"));
        assert!(
            !reconciled.contains(trace_id),
            "the reconciler's work is a trace of its own: {reconciled}"
        );
    }
}

both_backends!(
    without_an_exporter_work_still_names_its_trace,
    the_reconcilers_spans_link_to_the_requests_that_opened_their_work,
    queued_spans_are_flushed_at_shutdown,
    a_create_and_a_pay_reach_the_collector_as_traces_rooted_in_server_spans,
    an_incoming_traceparent_is_continued_to_payments,
    log_lines_of_a_traced_request_carry_its_trace_id,
    requests_succeed_and_drops_are_counted_when_the_collector_fails,
);
