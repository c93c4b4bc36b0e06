//! A consumer that knows only the exchange: it rebuilds every order's
//! status and the money owed on it from the order events, and prints the
//! ledger. Run beside a service that publishes events:
//!
//! ```text
//! EVENTS_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example order_ledger
//! ```
//!
//! Delivery is at least once and in order per order, so the consumer keeps,
//! for each order, the highest `sequence` it applied and ignores any event
//! at or below it (an event published again after a crash). Its queue is
//! durable and named (`LEDGER_QUEUE`, default `order-ledger`), so events
//! published while it is away wait for it. `LEDGER_SUMMARY=1` prints only
//! the count of orders and of refunds owed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::message::DeliveryResult;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

/// What a consumer knows of one order.
#[derive(Debug, Default)]
struct Entry {
    /// The highest sequence applied.
    sequence: u64,
    /// The order's status, or `deleted`.
    status: String,
    /// `paid` (the customer paid, the money is kept), `refund_pending`
    /// (money owed back to the customer), `refunded`, or none charged.
    payment: Option<String>,
}

/// Applies one event; `false` when it was applied before.
fn apply(ledger: &mut BTreeMap<String, Entry>, event: &Value) -> bool {
    let (Some(order), Some(sequence)) = (
        event["subject"].as_str(),
        event["sequence"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return false;
    };
    let entry = ledger.entry(order.to_owned()).or_default();
    if sequence <= entry.sequence {
        return false;
    }
    entry.sequence = sequence;
    let data = &event["data"];
    entry.status = match event["type"].as_str() {
        Some("coffeemesh.order.deleted") => "deleted".to_owned(),
        _ => data["status"]
            .as_str()
            .unwrap_or(entry.status.as_str())
            .to_owned(),
    };
    if let Some(payment) = data["payment"]["status"].as_str() {
        entry.payment = Some(payment.to_owned());
    }
    true
}

/// The ledger; with `summary`, only its first line.
fn print(ledger: &BTreeMap<String, Entry>, summary: bool) {
    let owed = ledger
        .values()
        .filter(|entry| match entry.payment.as_deref() {
            Some("refund_pending") => true,
            // A refund waiting for an operator is owed all the same.
            Some("needs_attention") => matches!(entry.status.as_str(), "cancelled" | "deleted"),
            _ => false,
        })
        .count();
    println!("{} orders, {owed} with a refund owed", ledger.len());
    if summary {
        return;
    }
    for (order, entry) in ledger {
        let payment = entry.payment.as_deref().unwrap_or("not charged");
        println!(
            "{order}  {:<10}  {payment:<14}  (event {})",
            entry.status, entry.sequence
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), lapin::Error> {
    let url = std::env::var("EVENTS_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let exchange = std::env::var("EVENTS_EXCHANGE").unwrap_or_else(|_| "orders".to_owned());
    let queue = std::env::var("LEDGER_QUEUE").unwrap_or_else(|_| "order-ledger".to_owned());
    let summary = std::env::var_os("LEDGER_SUMMARY").is_some();
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
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
        .await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "order.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let ledger: Arc<Mutex<BTreeMap<String, Entry>>> = Arc::default();
    let into = ledger.clone();
    channel
        .basic_consume(
            queue.as_str().into(),
            "order-ledger".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?
        .set_delegate(move |delivery: DeliveryResult| {
            let into = into.clone();
            async move {
                let Ok(Some(delivery)) = delivery else { return };
                if let Ok(event) = serde_json::from_slice::<Value>(&delivery.data) {
                    apply(&mut into.lock().unwrap(), &event);
                }
                // Acknowledged once applied: a crash before replays it.
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        });
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        print(&ledger.lock().unwrap(), summary);
    }
}
