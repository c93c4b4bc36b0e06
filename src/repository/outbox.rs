//! The outbox of order events. With events on, every change of an order
//! writes its event in the transaction that makes the change (so an event
//! exists exactly when its change was committed), with the order as it is
//! after the change; the relay then takes the rows in turn, under leases
//! in database time like the reconciler's, and marks each published once
//! the broker confirmed it.
//!
//! Events of one order are numbered (`sequence`, from 1) and taken one at a
//! time: the relay takes an event only when every earlier event of its
//! order is published, so whichever replica publishes, one order's events
//! leave in their order.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::codec::{Id, Time};
use super::rows::{self, ItemRow, row};
use super::{OrdersRepository, RepositoryError, Result, sqlite};
use crate::db::Database;
use crate::domain::order::now_micros;
use crate::domain::{EventKind, Order, OrderId, PaymentStatus};

/// The next sequence number of order `$1`'s events.
pub(super) const NEXT_SEQUENCE: &str = "INSERT INTO event_sequences (order_id, last) VALUES ($1, 1) \
     ON CONFLICT (order_id) DO UPDATE SET last = event_sequences.last + 1 RETURNING last";

/// Event `$1` of order `$2`, number `$3`, of kind `$4` with data `$5`, made
/// in the trace `$6`, now.
pub(super) const INSERT_EVENT: &str = "INSERT INTO outbox (id, order_id, sequence, kind, occurred, data, traceparent) \
     SELECT $1, $2, $3, $4, now, $5, $6 FROM clock";

/// The order as `GET /orders/{id}` shows it, read inside the change.
/// (Its money columns are read and left: the event tells money its own way,
/// see [`MONEY`].) Both backends read the latest charge through SQLite's
/// form of the join, which PostgreSQL runs as well.
pub(super) const SNAPSHOT: &str = super::sql::SNAPSHOT;

/// What the data tells beside the order: the id of its charge, why it was
/// cancelled, why it waits for an operator; and, once the order is
/// deleted, its refund (which outlives it).
pub(super) const MONEY: &str = "SELECT o.payment_id, r.state AS refund_state, \
     r.attention AS refund_attention, r.updated AS refund_updated, o.cancel_reason, o.attention \
     FROM orders o LEFT JOIN refunds r ON r.order_id = o.id AND r.payment_id = o.payment_id WHERE o.id = $1 \
     UNION ALL SELECT r.payment_id, r.state, r.attention, \
         CASE WHEN r.attention IS NOT NULL THEN r.attention_since ELSE r.updated END, NULL, NULL \
     FROM refunds r \
     WHERE r.order_id = $1 AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = $1)";

row!(MoneyRow {
    payment_id: Option<Id>,
    refund_state: Option<String>,
    refund_attention: Option<String>,
    refund_updated: Option<Time>,
    cancel_reason: Option<String>,
    attention: Option<String>,
});

/// Records event `$kind` of order `$order` (an `OrderId`) on the
/// transaction `$tx` of the repository `$repo`, with the order read as it
/// now is; nothing when events are off.
macro_rules! record_event {
    ($repo:expr, $tx:expr, $order:expr, $kind:expr) => {
        if $repo.events {
            let order: $crate::domain::OrderId = $order;
            let items: Vec<$crate::repository::rows::ItemRow> =
                sqlx::query_as($crate::repository::outbox::SNAPSHOT)
                    .bind($crate::repository::codec::Id(order))
                    .fetch_all(&mut *$tx)
                    .await?;
            let money: Vec<$crate::repository::outbox::MoneyRow> =
                sqlx::query_as($crate::repository::outbox::MONEY)
                    .bind($crate::repository::codec::Id(order))
                    .fetch_all(&mut *$tx)
                    .await?;
            let data = $crate::repository::outbox::data(order, $kind, items, money)?;
            record_event!(@insert $tx, order, $kind, data);
        }
    };
    (@insert $tx:expr, $order:expr, $kind:expr, $data:expr) => {{
        let sequence: i64 = sqlx::query_scalar($crate::repository::outbox::NEXT_SEQUENCE)
            .bind($crate::repository::codec::Id($order))
            .fetch_one(&mut *$tx)
            .await?;
        sqlx::query($crate::repository::outbox::INSERT_EVENT)
            .bind($crate::repository::codec::Id(::uuid::Uuid::now_v7()))
            .bind($crate::repository::codec::Id($order))
            .bind(sequence)
            .bind($crate::domain::EventKind::routing_key($kind))
            .bind($data)
            .bind($crate::trace_context::current())
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(super) use record_event;

/// The order's JSON as `GET /orders/{id}` shows it.
pub(super) fn order_json(order: &Order) -> Value {
    let payment = order
        .payment
        .map(|payment| payment_json(payment.status, payment.updated));
    let items: Vec<Value> = order
        .items
        .as_slice()
        .iter()
        .map(|item| {
            json!({
                "product": item.product.as_str(),
                "size": item.size.as_str(),
                "quantity": item.quantity.get(),
            })
        })
        .collect();
    json!({
        "id": order.id,
        "created": order.created.format(&Rfc3339).unwrap_or_default(),
        "status": order.status.as_str(),
        "order": items,
        "payment": payment,
    })
}

fn payment_json(status: PaymentStatus, updated: OffsetDateTime) -> Value {
    json!({
        "status": status.as_str(),
        "updated": updated.format(&Rfc3339).unwrap_or_default(),
    })
}

/// The data of an event: the order after the change as a read shows it
/// (its `payment` too, with the payment's `id` once a charge went
/// through), the reason it was cancelled and, for `order.needs_attention`,
/// why. A refund delivered after its order was deleted tells the order's
/// id and the payment only.
pub(super) fn data(
    id: OrderId,
    kind: EventKind,
    items: Vec<ItemRow>,
    money: Vec<MoneyRow>,
) -> Result<String> {
    let mut data = match rows::assemble(items)?.pop() {
        Some(order) => order_json(&order),
        None if matches!(kind, EventKind::Refunded | EventKind::NeedsAttention) => {
            json!({ "id": id })
        }
        None => {
            return Err(RepositoryError::Corrupt(format!(
                "order {id} has no items to tell of"
            )));
        }
    };
    let object = data.as_object_mut().expect("an object");
    // At most one charge of an order went through, so one row tells it
    // (the row without a charge, when none did).
    let row = match money.iter().position(|row| row.payment_id.is_some()) {
        Some(charged) => money.into_iter().nth(charged),
        None => money.into_iter().next(),
    };
    if let Some(row) = row {
        if let Some(Id(payment_id)) = row.payment_id {
            if !object.contains_key("payment") {
                // The order is gone; its refund tells the money.
                let raised = row.refund_attention.is_some();
                let status =
                    PaymentStatus::from_states(Some("paid"), row.refund_state.as_deref(), raised)
                        .unwrap_or(PaymentStatus::Paid);
                let updated = row.refund_updated.map_or_else(now_micros, |Time(at)| at);
                object.insert("payment".into(), payment_json(status, updated));
            }
            if let Some(payment) = object.get_mut("payment").and_then(Value::as_object_mut) {
                payment.insert("id".into(), json!(payment_id));
            }
        }
        if let Some(reason) = row.cancel_reason {
            object.insert("cancel_reason".into(), reason.into());
        }
        if kind == EventKind::NeedsAttention
            && let Some(reason) = row.refund_attention.or(row.attention)
        {
            object.insert("attention".into(), json!({ "reason": reason }));
        }
    }
    Ok(data.to_string())
}

/// An event the relay took, under its lease until `until`.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub position: i64,
    pub id: Uuid,
    pub order_id: OrderId,
    pub sequence: i64,
    /// The routing key.
    pub kind: String,
    pub occurred: OffsetDateTime,
    /// The event's data, JSON.
    pub data: String,
    /// The trace of the request (or reconciler pass) that made the change.
    pub traceparent: Option<String>,
    pub until: OffsetDateTime,
}

row!(PendingRow {
    position: i64,
    id: Id,
    order_id: Id,
    sequence: i64,
    kind: String,
    occurred: Time,
    data: String,
    traceparent: Option<String>,
    claimed_until: Time,
});

/// Takes up to `$2` events for `$1` ms: each the first unpublished event of
/// its order, not held by another relay; oldest first. PostgreSQL skips the
/// rows another relay is taking right now; SQLite has one writer at a time.
macro_rules! claim_events {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET claimed_until = (SELECT now + CAST($1 AS BIGINT) * ms FROM clock) \
             WHERE position IN (SELECT e.position FROM outbox e \
                 WHERE e.published IS NULL \
                 AND (e.claimed_until IS NULL OR e.claimed_until < (SELECT now FROM clock)) \
                 AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.order_id = e.order_id \
                     AND p.published IS NULL AND p.sequence < e.sequence) \
                 ORDER BY e.position LIMIT $2",
            $lock,
            ") RETURNING position, id, order_id, sequence, kind, occurred, data, traceparent, \
             claimed_until"
        )
    };
}
const CLAIM_EVENTS_POSTGRES: &str = claim_events!(" FOR UPDATE SKIP LOCKED");
const CLAIM_EVENTS_SQLITE: &str = claim_events!("");

/// The broker confirmed the events whose positions are in the JSON array
/// `$1`: one statement for a whole batch.
const PUBLISHED_POSTGRES: &str = "UPDATE outbox SET published = (SELECT now FROM clock), \
     claimed_until = NULL \
     WHERE position IN (SELECT CAST(value AS BIGINT) FROM json_array_elements_text(CAST($1 AS json))) \
     AND published IS NULL";
const PUBLISHED_SQLITE: &str = "UPDATE outbox SET published = (SELECT now FROM clock), \
     claimed_until = NULL \
     WHERE position IN (SELECT CAST(value AS INTEGER) FROM json_each($1)) \
     AND published IS NULL";

/// Event `$1` was not published: free for the next pass.
const RELEASE_EVENT: &str =
    "UPDATE outbox SET claimed_until = NULL WHERE position = $1 AND claimed_until = $2";

/// Published events older than `$1` ms, and the sequences of orders long
/// gone with no event left (an order that still exists keeps its count).
const PURGE_EVENTS: &str = "DELETE FROM outbox \
     WHERE published < (SELECT now - CAST($1 AS BIGINT) * ms FROM clock)";
const PURGE_SEQUENCES: &str = "DELETE FROM event_sequences \
     WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = event_sequences.order_id) \
     AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = event_sequences.order_id \
         AND r.state <> 'refunded') \
     AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.order_id = event_sequences.order_id)";

impl OrdersRepository {
    /// Takes up to `limit` events to publish, for `lease_ms`.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "claim_events", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "claim_events"))]
    pub async fn claim_events(&self, lease_ms: i64, limit: u32) -> Result<Vec<PendingEvent>> {
        let claim = if self.db.is_postgres() {
            CLAIM_EVENTS_POSTGRES
        } else {
            CLAIM_EVENTS_SQLITE
        };
        let rows: Vec<PendingRow> = on_backend!(&self.db, transaction, async |tx| {
            Ok(sqlx::query_as(claim)
                .bind(lease_ms)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?)
        })?;
        let mut events: Vec<PendingEvent> = rows
            .into_iter()
            .map(|row| PendingEvent {
                position: row.position,
                id: row.id.0,
                order_id: row.order_id.0,
                sequence: row.sequence,
                kind: row.kind,
                occurred: row.occurred.0,
                data: row.data,
                traceparent: row.traceparent,
                until: row.claimed_until.0,
            })
            .collect();
        events.sort_by_key(|event| event.position);
        Ok(events)
    }

    /// The broker confirmed these events: they are not published again.
    #[tracing::instrument(name = "db", skip_all, fields(otel.name = "mark_published", otel.kind = "client", db.system.name = self.db.system(), db.operation.name = "mark_published"))]
    pub async fn mark_published(&self, positions: &[i64]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let published = if self.db.is_postgres() {
            PUBLISHED_POSTGRES
        } else {
            PUBLISHED_SQLITE
        };
        let positions = serde_json::to_string(positions).unwrap_or_default();
        execute!(&self.db, published; positions)?;
        Ok(())
    }

    /// These events were not published: the next pass takes them again.
    pub async fn release_events(&self, events: &[&PendingEvent]) -> Result<()> {
        for event in events {
            execute!(&self.db, RELEASE_EVENT; event.position, Time(event.until))?;
        }
        Ok(())
    }

    /// Deletes the events published more than `retention_ms` ago.
    pub async fn purge_published(&self, retention_ms: i64) -> Result<u64> {
        let purged = execute!(&self.db, PURGE_EVENTS; retention_ms)?;
        if purged > 0 {
            execute!(&self.db, PURGE_SEQUENCES;)?;
        }
        Ok(purged)
    }

    /// How many events wait to be published, and how long the oldest has.
    pub async fn events_waiting(&self) -> Result<(i64, f64)> {
        let (count, oldest): (i64, Option<Time>) =
            on_backend!(&self.db, run, async |conn| {
                Ok(sqlx::query_as(
                    "SELECT COUNT(*), MIN(occurred) FROM outbox WHERE published IS NULL",
                )
                .fetch_one(&mut *conn)
                .await?)
            })?;
        let now: Time = on_backend!(&self.db, run, async |conn| {
            Ok(sqlx::query_scalar("SELECT now FROM clock")
                .fetch_one(&mut *conn)
                .await?)
        })?;
        let age = oldest.map_or(0.0, |Time(at)| (now.0 - at).as_seconds_f64().max(0.0));
        Ok((count, age))
    }
}

/// The first event of a new order, written with it: the data is the order
/// as created, and it is the order's first event.
pub(super) fn created_data(order: &Order) -> String {
    order_json(order).to_string()
}
