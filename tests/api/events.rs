//! Order events against the RabbitMQ broker of this machine
//! (`EVENTS_TEST_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`):
//! each test publishes to an exchange of its own, and a consumer bound to
//! it checks every message it receives against `asyncapi.yaml`. Outages
//! are made with a TCP proxy between the service and the broker; the
//! broker itself is never touched.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::message::DeliveryResult;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fakes::Fake;
use crate::faults::{Process, cancel, eventually, eventually_within, pay, reaches, wired};
use crate::helpers::{Backend, TestApp, TestDatabase, latte_order, spawn_on};
use crate::proxy::Proxy;

fn broker_url() -> String {
    std::env::var("EVENTS_TEST_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The broker's `host:port`, for a proxy in front of it.
fn broker_address() -> String {
    let url: lapin::uri::AMQPUri = broker_url().parse().unwrap();
    let host = match url.authority.host.as_str() {
        "localhost" => "127.0.0.1",
        host => host,
    };
    format!("{host}:{}", url.authority.port)
}

/// One message as the consumer received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The broker's count of deliveries on the channel: the order they
    /// arrived in (the client may hand two of them over at once).
    pub tag: u64,
    pub routing_key: String,
    pub event: Value,
    pub traceparent: Option<String>,
}

impl Received {
    fn sequence(&self) -> u64 {
        self.event["sequence"].as_str().unwrap().parse().unwrap()
    }

    fn subject(&self) -> Uuid {
        self.event["subject"].as_str().unwrap().parse().unwrap()
    }
}

/// A consumer of an exchange of the test's own: a queue of its own bound to
/// every routing key; each message is checked against the contract.
pub struct Consumer {
    pub exchange: String,
    connection: Connection,
    received: Arc<Mutex<Vec<Received>>>,
    invalid: Arc<Mutex<Vec<String>>>,
}

impl Consumer {
    pub async fn start() -> Self {
        let exchange = format!("orders-test-{}", Uuid::new_v4());
        let connection = Connection::connect(&broker_url(), ConnectionProperties::default())
            .await
            .expect("the broker of this machine answers (see the README)");
        let channel = connection.create_channel().await.unwrap();
        // As the service declares it: the same settings, whoever is first.
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.as_str().into(),
                "order.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let invalid: Arc<Mutex<Vec<String>>> = Arc::default();
        let (into, wrong) = (received.clone(), invalid.clone());
        channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .set_delegate(move |delivery: DeliveryResult| {
                let (into, wrong) = (into.clone(), wrong.clone());
                async move {
                    let Ok(Some(delivery)) = delivery else {
                        return;
                    };
                    match check(&delivery) {
                        Ok(received) => into.lock().unwrap().push(received),
                        Err(why) => wrong.lock().unwrap().push(why),
                    }
                }
            });
        Self {
            exchange,
            connection,
            received,
            invalid,
        }
    }

    /// The service's settings to publish to this consumer's exchange
    /// through `broker` (`host:port`; the broker itself by default).
    pub fn settings(&self, broker: Option<&str>) -> Vec<(String, String)> {
        let url = match broker {
            Some(address) => format!("amqp://guest:guest@{address}/%2f"),
            None => broker_url(),
        };
        vec![
            ("EVENTS_URL".to_owned(), url),
            ("EVENTS_EXCHANGE".to_owned(), self.exchange.clone()),
        ]
    }

    pub fn all(&self) -> Vec<Received> {
        let invalid = self.invalid.lock().unwrap().clone();
        assert!(invalid.is_empty(), "messages off the contract: {invalid:?}");
        let mut received = self.received.lock().unwrap().clone();
        received.sort_by_key(|received| received.tag);
        // The client hands deliveries over to concurrent tasks: one may be
        // stored before an earlier one. Only the deliveries up to the first
        // one not stored yet count (tags run 1, 2, 3, ... on the channel).
        let stored = received
            .iter()
            .enumerate()
            .take_while(|(at, received)| received.tag == *at as u64 + 1)
            .count();
        received.truncate(stored);
        received
    }

    /// Each order's events, by sequence, with repeats (at least once) left
    /// out; every order's first received events must come in order.
    pub fn by_order(&self) -> BTreeMap<Uuid, Vec<Received>> {
        let mut orders: BTreeMap<Uuid, Vec<Received>> = BTreeMap::new();
        for received in self.all() {
            let events = orders.entry(received.subject()).or_default();
            let sequence = received.sequence();
            let last = events.last().map_or(0, Received::sequence);
            if sequence <= last {
                // Published again: the same event as before, never a new one.
                let before = &events[sequence as usize - 1];
                assert_eq!(before.event, received.event, "a repeat differs");
                continue;
            }
            assert_eq!(
                sequence,
                last + 1,
                "order {}: event {sequence} came after {last}",
                received.subject()
            );
            events.push(received);
        }
        orders
    }

    pub fn kinds_of(&self, id: Uuid) -> Vec<String> {
        self.by_order()
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .map(|received| received.routing_key)
            .collect()
    }

    pub async fn wait_for_kinds(&self, id: Uuid, kinds: &[&str]) {
        eventually(&format!("the events {kinds:?} of order {id}"), async || {
            self.kinds_of(id).len() >= kinds.len()
        })
        .await;
        assert_eq!(self.kinds_of(id), kinds, "order {id}");
    }

    pub async fn close(self) {
        let channel = self.connection.create_channel().await.unwrap();
        let _ = channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A delivery as the contract says it must be: persistent CloudEvents JSON
/// whose message id is the event's id, and a body the contract accepts.
fn check(delivery: &lapin::message::Delivery) -> Result<Received, String> {
    let properties = &delivery.properties;
    let routing_key = delivery.routing_key.to_string();
    let content_type = properties.content_type().as_ref().map(|t| t.to_string());
    if *properties.delivery_mode() != Some(2) {
        return Err(format!("{routing_key}: not persistent"));
    }
    let event = crate::events_contract::validate_event(
        &routing_key,
        content_type.as_deref(),
        &delivery.data,
    )?;
    let message_id = properties.message_id().as_ref().map(|id| id.to_string());
    if message_id.as_deref() != event["id"].as_str() {
        return Err(format!(
            "{routing_key}: message_id {message_id:?} is not the event's id"
        ));
    }
    let traceparent = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("traceparent").cloned())
        .and_then(|value| match value {
            AMQPValue::LongString(text) => Some(text.to_string()),
            _ => None,
        });
    Ok(Received {
        tag: delivery.delivery_tag,
        routing_key,
        event,
        traceparent,
    })
}

pub(crate) fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// A service wired to the fakes (reconciling every 200 ms) and to the
/// consumer's exchange.
async fn service(backend: Backend, consumer: &Consumer, fake: &Fake) -> TestApp {
    let db = TestDatabase::create(backend).await;
    db.migrate().await;
    let events = consumer.settings(None);
    let mut settings = wired(fake, Some("200"));
    settings.extend(pairs(&events));
    spawn_on(db, &settings).await
}

/// The data of an event is the order as `GET /orders/{id}` shows it.
async fn shows_as_read(app: &TestApp, received: &Received) {
    let read: Value = app
        .get(&format!("/orders/{}", received.subject()))
        .await
        .json()
        .await
        .unwrap();
    for field in ["id", "created", "status", "order"] {
        assert_eq!(received.event["data"][field], read[field], "{field}");
    }
    // The money as the read tells it, with the payment's id besides.
    let mut payment = received.event["data"]["payment"].clone();
    if let Some(payment) = payment.as_object_mut() {
        payment.remove("id");
    }
    assert_eq!(payment, read["payment"], "payment");
}

/// Every change of an order, in its order: created, updated, paid, in
/// progress, dispatched; another paid, cancelled with its refund pending,
/// then refunded; a third created and deleted. Each event's data is the
/// order as it was after the change.
async fn a_full_lifecycle_publishes_each_change_once_in_order(backend: Backend) {
    let consumer = Consumer::start().await;
    let fake = Fake::start().await;
    let app = service(backend, &consumer, &fake).await;

    let made = app.create_latte().await;
    let changed = json!({"order": [{"product": "mocha", "size": "big", "quantity": 1}]});
    assert_eq!(
        app.put_json(&format!("/orders/{made}"), &changed)
            .await
            .status(),
        200
    );
    assert_eq!(pay(&app, made).await.status(), 200);
    fake.kitchen_sets(made, "finished");
    reaches(&app, made, "dispatched").await;
    consumer
        .wait_for_kinds(
            made,
            &[
                "order.created",
                "order.updated",
                "order.paid",
                "order.progress",
                "order.dispatched",
            ],
        )
        .await;
    let events = consumer.by_order().remove(&made).unwrap();
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e.event["data"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["created", "created", "paid", "progress", "dispatched"]
    );
    assert_eq!(events[0].event["data"]["order"][0]["product"], "latte");
    assert_eq!(events[1].event["data"]["order"][0]["product"], "mocha");
    assert_eq!(events[2].event["data"]["payment"]["status"], "paid");
    shows_as_read(&app, &events[4]).await;

    let refunded = app.create_latte().await;
    assert_eq!(pay(&app, refunded).await.status(), 200);
    assert_eq!(cancel(&app, refunded).await.status(), 200);
    consumer
        .wait_for_kinds(
            refunded,
            &[
                "order.created",
                "order.paid",
                "order.progress",
                "order.cancelled",
                "order.refunded",
            ],
        )
        .await;
    let events = consumer.by_order().remove(&refunded).unwrap();
    assert_eq!(events[3].event["data"]["status"], "cancelled");
    assert_eq!(
        events[3].event["data"]["payment"]["status"],
        "refund_pending"
    );
    assert_eq!(events[4].event["data"]["status"], "cancelled");
    assert_eq!(events[4].event["data"]["payment"]["status"], "refunded");
    assert_eq!(
        events[4].event["data"]["payment"]["id"],
        events[2].event["data"]["payment"]["id"]
    );
    assert_eq!(fake.refunds_of(refunded), 1);

    let deleted = app.create_latte().await;
    assert_eq!(
        app.delete(&format!("/orders/{deleted}")).await.status(),
        204
    );
    consumer
        .wait_for_kinds(deleted, &["order.created", "order.deleted"])
        .await;
    let events = consumer.by_order().remove(&deleted).unwrap();
    assert_eq!(events[1].event["data"], json!({ "id": deleted }));
    for received in consumer.all() {
        assert_eq!(received.event["source"], "/orders-service");
    }
    consumer.close().await;
}

/// Refused, failed and replayed requests change nothing, and tell nothing.
async fn no_event_for_a_refused_failed_or_replayed_request(backend: Backend) {
    let consumer = Consumer::start().await;
    let fake = Fake::start().await;
    let app = service(backend, &consumer, &fake).await;

    let keyed = app
        .client
        .post(app.url("/orders"))
        .header("idempotency-key", "one-order-please")
        .json(&latte_order())
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201);
    let id: Uuid = keyed.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let replayed = app
        .client
        .post(app.url("/orders"))
        .header("idempotency-key", "one-order-please")
        .json(&latte_order())
        .send()
        .await
        .unwrap();
    assert!(replayed.status().is_success());
    // Declined: the order stays `created`.
    fake.verdicts(&["invalid"]);
    assert_eq!(pay(&app, id).await.status(), 402);
    let invalid = json!({"order": [{"product": "latte", "size": "huge"}]});
    assert_eq!(app.post_json("/orders", &invalid).await.status(), 422);
    assert_eq!(
        app.put_json(&format!("/orders/{}", Uuid::now_v7()), &latte_order())
            .await
            .status(),
        404
    );
    // Paid, then refused a change of its items.
    assert_eq!(pay(&app, id).await.status(), 200);
    assert_eq!(
        app.put_json(&format!("/orders/{id}"), &latte_order())
            .await
            .status(),
        409
    );
    assert_eq!(app.delete(&format!("/orders/{id}")).await.status(), 409);
    consumer
        .wait_for_kinds(id, &["order.created", "order.paid", "order.progress"])
        .await;
    // Whatever was still to come has had its time.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        consumer.kinds_of(id),
        ["order.created", "order.paid", "order.progress"]
    );
    assert_eq!(consumer.by_order().len(), 1, "one order, nothing else");
    consumer.close().await;
}

/// The broker out of reach for 10 s while 200 orders are made: every
/// request answers as usual, the outbox shows the backlog, and every event
/// arrives once the broker is back.
async fn a_broker_outage_delays_events_and_loses_none(backend: Backend) {
    let consumer = Consumer::start().await;
    let proxy = Proxy::start(&broker_address()).await;
    let db = TestDatabase::create(backend).await;
    db.migrate().await;
    let events = consumer.settings(Some(&proxy.address));
    let app = spawn_on(db, &pairs(&events)).await;
    let first = app.create_latte().await;
    consumer.wait_for_kinds(first, &["order.created"]).await;

    proxy.cut();
    let outage = std::time::Instant::now();
    let mut made = vec![first];
    for _ in 0..200 {
        let started = std::time::Instant::now();
        made.push(app.create_latte().await);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a create waited for the broker"
        );
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "the pod stays ready");
    eventually("the backlog to show", async || {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        metric(&metrics, "orders_outbox_pending") == 200.0
            && metric(&metrics, "orders_outbox_oldest_age_seconds") > 0.0
            && metric(&metrics, "orders_events_publish_errors_total") >= 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed())).await;
    assert_eq!(consumer.by_order().len(), 1, "nothing passed the outage");
    proxy.restore();

    eventually("every event after the outage", async || {
        consumer.by_order().len() == made.len()
    })
    .await;
    for id in made {
        assert_eq!(consumer.kinds_of(id), ["order.created"]);
    }
    eventually("the outbox to empty", async || {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        metric(&metrics, "orders_outbox_pending") == 0.0
    })
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("orders_events_published_total{type=\"order.created\"} 201"));
    consumer.close().await;
}

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

/// SIGKILL while events are being published, then the service started
/// again on the same database: every event arrives (some twice, the same),
/// each order's in order.
async fn a_service_killed_mid_relay_loses_no_event(backend: Backend) {
    let consumer = Consumer::start().await;
    let db = TestDatabase::create(backend).await;
    db.migrate().await;
    let fake = Fake::start().await;
    let events = consumer.settings(None);
    // The relay is held back (the broker out of reach) while the orders
    // are made, then let go and killed in the middle of its work.
    let proxy = Proxy::start(&broker_address()).await;
    proxy.cut();
    let through = consumer.settings(Some(&proxy.address));
    let first = Process::start_with(&db.url, &fake, "3600000", &pairs(&through)).await;
    let client = reqwest::Client::new();
    let mut made = Vec::new();
    for _ in 0..300 {
        let created: Value = client
            .post(format!("{}/orders", first.address))
            .json(&latte_order())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        made.push(created["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    proxy.restore();
    eventually("the relay to be under way", async || {
        !consumer.all().is_empty()
    })
    .await;
    let mut first = first;
    first.child.kill().await.unwrap();
    let before = consumer.by_order().len();

    let _second = Process::start_with(&db.url, &fake, "3600000", &pairs(&events)).await;
    // What the killed relay held is taken again once its lease runs out.
    eventually_within(
        Duration::from_secs(60),
        "every event after the restart",
        async || consumer.by_order().len() == made.len(),
    )
    .await;
    for id in made {
        assert_eq!(consumer.kinds_of(id), ["order.created"]);
    }
    eprintln!("{before} of 300 orders' events had arrived at the kill");
    consumer.close().await;
}

/// The publish continues the trace of the request that made the change:
/// the message's `traceparent` is in the caller's trace, or in the
/// request's own when it came with none (the service as a process, with
/// its telemetry as in production, no exporter).
async fn an_event_carries_the_trace_of_the_request_that_made_it(backend: Backend) {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let consumer = Consumer::start().await;
    let db = TestDatabase::create(backend).await;
    db.migrate().await;
    let fake = Fake::start().await;
    let events = consumer.settings(None);
    let service = Process::start_with(&db.url, &fake, "3600000", &pairs(&events)).await;
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/orders", service.address))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&latte_order())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let traced: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let untraced: Value = client
        .post(format!("{}/orders", service.address))
        .json(&latte_order())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let untraced: Uuid = untraced["id"].as_str().unwrap().parse().unwrap();
    consumer.wait_for_kinds(traced, &["order.created"]).await;
    consumer.wait_for_kinds(untraced, &["order.created"]).await;
    let orders = consumer.by_order();
    let carried = orders[&traced][0].traceparent.clone().unwrap_or_default();
    assert!(
        carried.starts_with(&format!("00-{TRACE}-")) && !carried.contains("00f067aa0ba902b7"),
        "a span of its own in the caller's trace: {carried:?}"
    );
    let own = orders[&untraced][0].traceparent.clone().unwrap_or_default();
    assert!(
        own.len() == 55 && own.starts_with("00-") && !own.contains(TRACE),
        "a request with no caller's trace has one of its own: {own:?}"
    );
    consumer.close().await;
}

/// Two replicas on one database, both relaying: every event of every order
/// arrives, each order's in order, whichever replica made or published it.
async fn two_replicas_publish_every_event_in_order(backend: Backend) {
    let consumer = Consumer::start().await;
    let fake = Fake::start().await;
    let one = service(backend, &consumer, &fake).await;
    let events = consumer.settings(None);
    let mut settings = wired(&fake, Some("200"));
    settings.extend(pairs(&events));
    let two = spawn_on(one.db.share(), &settings).await;
    let mut made = Vec::new();
    for round in 0..20 {
        let (maker, payer) = if round % 2 == 0 {
            (&one, &two)
        } else {
            (&two, &one)
        };
        let id = maker.create_latte().await;
        assert_eq!(pay(payer, id).await.status(), 200);
        assert_eq!(cancel(maker, id).await.status(), 200);
        made.push(id);
    }
    // Half of them delivered: the other half stays paid and in progress.
    let delivered = one.create_latte().await;
    assert_eq!(pay(&two, delivered).await.status(), 200);
    fake.kitchen_sets(delivered, "finished");
    reaches(&one, delivered, "dispatched").await;
    for &id in &made {
        consumer
            .wait_for_kinds(
                id,
                &[
                    "order.created",
                    "order.paid",
                    "order.progress",
                    "order.cancelled",
                    "order.refunded",
                ],
            )
            .await;
    }
    consumer
        .wait_for_kinds(
            delivered,
            &[
                "order.created",
                "order.paid",
                "order.progress",
                "order.dispatched",
            ],
        )
        .await;
    // What a consumer rebuilds from the exchange alone is what the service
    // and the payments provider say: each order's status and its money.
    for (id, events) in consumer.by_order() {
        let last = &events.last().unwrap().event["data"];
        assert_eq!(last["status"].as_str().unwrap(), one.status_of(id).await);
        let money = last["payment"]["status"].as_str().unwrap();
        let expected = match fake.refunds_of(id) {
            0 => "paid",
            _ => "refunded",
        };
        assert_eq!(money, expected, "order {id}");
        assert_eq!(fake.charges_of(id), 1);
    }
    consumer.close().await;
}

both_backends!(
    a_full_lifecycle_publishes_each_change_once_in_order,
    no_event_for_a_refused_failed_or_replayed_request,
    a_broker_outage_delays_events_and_loses_none,
    a_service_killed_mid_relay_loses_no_event,
    an_event_carries_the_trace_of_the_request_that_made_it,
    two_replicas_publish_every_event_in_order,
);
