//! The order events' contract, `asyncapi.yaml`, as a check for tests: a
//! test that took a message off the events exchange asks
//!
//! ```ignore
//! let event = events_contract::validate_event(routing_key, content_type, &body)?;
//! ```
//!
//! which answers the parsed CloudEvent when the message is the one
//! `asyncapi.yaml` describes for that routing key (content type, payload
//! schema, `type`), and otherwise every way in which it is not.
//!
//! The document is read once per test process. Each channel's address is a
//! routing key; its message's payload schema is compiled with `jsonschema`
//! as a `$ref` into the whole document, registered under one base URI, so
//! the payload's `#/components/...` references resolve as they do in
//! AsyncAPI tools. AsyncAPI's Schema Object is a superset of JSON Schema
//! draft 7, the draft used here, with formats asserted (`uuid` included)
//! and an unknown format an error.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use jsonschema::{Draft, Registry, Validator};
use serde_json::Value;

/// The base URI the document is registered under: never fetched, as the
/// validator has no retriever.
const DOCUMENT_URI: &str = "urn:coffeemesh:orders:asyncapi";

struct Message {
    content_type: String,
    payload: Validator,
}

/// Every routing key's message, or why `asyncapi.yaml` could not be read.
static CONTRACT: LazyLock<Result<HashMap<String, Message>, String>> = LazyLock::new(|| {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("asyncapi.yaml");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let document: Value = yaml_serde::from_str(&text)
        .map_err(|error| format!("{} is not YAML: {error}", path.display()))?;
    messages(&document).map_err(|error| format!("asyncapi.yaml: {error}"))
});

fn messages(document: &Value) -> Result<HashMap<String, Message>, String> {
    let registry = Registry::new()
        .draft(Draft::Draft7)
        .add(DOCUMENT_URI, document)
        .and_then(|registry| registry.prepare())
        .map_err(|error| format!("cannot register the document: {error}"))?;
    let default_content_type = document["defaultContentType"].as_str();
    let channels = document["channels"].as_object().ok_or("no channels")?;
    let mut messages = HashMap::new();
    for (channel_id, channel) in channels {
        let routing_key = channel["address"]
            .as_str()
            .ok_or_else(|| format!("channel {channel_id} has no address"))?;
        let channel_messages = channel["messages"]
            .as_object()
            .filter(|messages| messages.len() == 1)
            .ok_or_else(|| format!("channel {channel_id} has not exactly one message"))?;
        let (message_id, message) = channel_messages.iter().next().expect("one message");
        // The message where it is defined: a components entry, or inline.
        let pointer = match message["$ref"].as_str() {
            Some(reference) => reference
                .strip_prefix('#')
                .ok_or_else(|| format!("{reference} is not a reference into the document"))?
                .to_owned(),
            None => format!(
                "/channels/{}/messages/{}",
                escape(channel_id),
                escape(message_id)
            ),
        };
        let message = document
            .pointer(&pointer)
            .ok_or_else(|| format!("#{pointer} does not exist"))?;
        if message.get("payload").is_none() {
            return Err(format!("#{pointer} has no payload"));
        }
        let content_type = message["contentType"]
            .as_str()
            .or(default_content_type)
            .ok_or_else(|| format!("#{pointer} has no content type"))?
            .to_owned();
        let payload = jsonschema::options()
            .with_draft(Draft::Draft7)
            .with_registry(&registry)
            .should_validate_formats(true)
            // Draft 7 has no `uuid` format; AsyncAPI documents use it.
            .with_format("uuid", |text| uuid::Uuid::try_parse(text).is_ok())
            .should_ignore_unknown_formats(false)
            .build(&serde_json::json!({ "$ref": format!("{DOCUMENT_URI}#{pointer}/payload") }))
            .map_err(|error| format!("the payload of #{pointer} does not compile: {error}"))?;
        let message = Message {
            content_type,
            payload,
        };
        if messages.insert(routing_key.to_owned(), message).is_some() {
            return Err(format!("two channels have the address {routing_key}"));
        }
    }
    Ok(messages)
}

/// A JSON Pointer reference token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Checks one message published with `routing_key` against `asyncapi.yaml`:
/// its AMQP `content_type` is the message's, its body is JSON that matches
/// the message's payload schema, and its CloudEvents `type` is
/// `coffeemesh.` and the routing key. Answers the event, or every problem
/// found in one sentence.
pub fn validate_event(
    routing_key: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Value, String> {
    let messages = CONTRACT.as_ref().map_err(Clone::clone)?;
    let message = messages.get(routing_key).ok_or_else(|| {
        format!("asyncapi.yaml has no channel for the routing key {routing_key:?}")
    })?;
    if content_type != Some(message.content_type.as_str()) {
        return Err(format!(
            "{routing_key}: content type {content_type:?}, expected {:?}",
            message.content_type
        ));
    }
    let event: Value = serde_json::from_slice(body)
        .map_err(|error| format!("{routing_key}: the body is not JSON: {error}"))?;
    let mut problems: Vec<String> = message
        .payload
        .iter_errors(&event)
        .map(|error| format!("{} (at {:?})", error, error.instance_path().as_str()))
        .collect();
    let expected_type = format!("coffeemesh.{routing_key}");
    if event.get("type").and_then(Value::as_str) != Some(expected_type.as_str()) {
        problems.push(format!(
            "type is {}, expected {expected_type:?}",
            event.get("type").unwrap_or(&Value::Null)
        ));
    }
    if problems.is_empty() {
        Ok(event)
    } else {
        Err(format!(
            "{routing_key}: the event does not match asyncapi.yaml: {}",
            problems.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONTENT_TYPE: Option<&str> = Some("application/cloudevents+json");
    const ORDER_ID: &str = "6a1f2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    const PAYMENT_ID: &str = "9d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f60";

    const ROUTING_KEYS: [&str; 10] = [
        "order.created",
        "order.updated",
        "order.deleted",
        "order.paid",
        "order.progress",
        "order.dispatched",
        "order.delivered",
        "order.cancelled",
        "order.refunded",
        "order.needs_attention",
    ];

    const UPDATED: &str = "2026-12-05T09:31:00.250Z";

    fn order(status: &str) -> Value {
        json!({
            "id": ORDER_ID,
            "created": "2026-12-05T09:30:00.120Z",
            "status": status,
            "order": [{"product": "cappuccino", "size": "big", "quantity": 2}],
            "payment": null,
        })
    }

    fn paid_order(status: &str, payment_status: &str) -> Value {
        let mut order = order(status);
        order["payment"] = json!({"id": PAYMENT_ID, "status": payment_status, "updated": UPDATED});
        order
    }

    /// A valid `data` for each routing key, as the service would send it.
    fn data(routing_key: &str) -> Value {
        match routing_key {
            "order.created" | "order.updated" => order("created"),
            "order.deleted" => json!({"id": ORDER_ID}),
            "order.paid" => paid_order("paid", "paid"),
            "order.progress" => paid_order("progress", "paid"),
            "order.dispatched" => paid_order("dispatched", "paid"),
            "order.delivered" => paid_order("delivered", "paid"),
            "order.cancelled" => {
                let mut order = paid_order("cancelled", "refund_pending");
                order["cancel_reason"] = json!("out of milk");
                order
            }
            "order.refunded" => paid_order("cancelled", "refunded"),
            "order.needs_attention" => {
                let mut order = paid_order("progress", "paid");
                order["attention"] = json!({"reason": "the kitchen does not answer"});
                order
            }
            other => panic!("no data for {other}"),
        }
    }

    fn event(routing_key: &str, data: Value) -> Value {
        json!({
            "specversion": "1.0",
            "id": "0f4f3e5c-8d6a-4b57-9d3e-2b8f1c6a7e01",
            "source": "/orders-service",
            "type": format!("coffeemesh.{routing_key}"),
            "subject": ORDER_ID,
            "time": "2026-12-05T09:30:00.123Z",
            "datacontenttype": "application/json",
            "sequence": "12",
            "data": data,
        })
    }

    fn check(routing_key: &str, event: &Value) -> Result<Value, String> {
        // A refusal counts only when the contract itself was read.
        if let Err(problem) = CONTRACT.as_ref() {
            panic!("{problem}");
        }
        validate_event(routing_key, CONTENT_TYPE, event.to_string().as_bytes())
    }

    #[track_caller]
    fn refused(routing_key: &str, event: &Value, expected: &str) {
        match check(routing_key, event) {
            Ok(_) => panic!("{routing_key} event accepted: {event:#}"),
            Err(problem) => assert!(
                problem.contains(expected),
                "{routing_key} event refused, but not for {expected:?}: {problem}"
            ),
        }
    }

    #[test]
    fn a_valid_event_of_each_type_passes() {
        for routing_key in ROUTING_KEYS {
            let sent = event(routing_key, data(routing_key));
            let answered =
                check(routing_key, &sent).unwrap_or_else(|problem| panic!("{problem}\n{sent:#}"));
            assert_eq!(answered, sent);
        }
    }

    #[test]
    fn the_contract_has_a_message_for_exactly_these_routing_keys() {
        let messages = CONTRACT.as_ref().expect("asyncapi.yaml reads");
        let mut keys: Vec<&str> = messages.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = ROUTING_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn every_example_in_the_contract_passes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("asyncapi.yaml");
        let document: Value =
            yaml_serde::from_str(&std::fs::read_to_string(path).expect("asyncapi.yaml reads"))
                .expect("asyncapi.yaml is YAML");
        let mut checked = 0;
        for (name, message) in document["components"]["messages"]
            .as_object()
            .expect("messages")
        {
            let routing_key = message["name"].as_str().expect("message name");
            let examples = message["examples"].as_array();
            assert!(
                examples.is_some_and(|examples| !examples.is_empty()),
                "{name} has no example"
            );
            for example in examples.into_iter().flatten() {
                check(routing_key, &example["payload"])
                    .unwrap_or_else(|problem| panic!("{name} example: {problem}"));
                checked += 1;
            }
        }
        assert!(checked >= ROUTING_KEYS.len());
    }

    #[test]
    fn a_refund_of_a_deleted_order_carries_only_its_id_and_payment() {
        let refunded = json!({"id": ORDER_ID, "payment":
            {"id": PAYMENT_ID, "status": "refunded", "updated": UPDATED}});
        check("order.refunded", &event("order.refunded", refunded)).expect("valid");
        let undated = json!({"id": ORDER_ID, "payment": {"id": PAYMENT_ID, "status": "refunded"}});
        refused("order.refunded", &event("order.refunded", undated), "/data");

        let pending = json!({"id": ORDER_ID, "payment":
            {"id": PAYMENT_ID, "status": "refund_pending", "updated": UPDATED}});
        refused("order.refunded", &event("order.refunded", pending), "/data");
        let still_owed = paid_order("cancelled", "refund_pending");
        refused(
            "order.refunded",
            &event("order.refunded", still_owed),
            "/data",
        );
    }

    #[test]
    fn a_wrong_type_is_refused() {
        let mut sent = event("order.paid", data("order.paid"));
        sent["type"] = json!("coffeemesh.order.created");
        refused("order.paid", &sent, "expected \"coffeemesh.order.paid\"");
        // A type of another service entirely.
        sent["type"] = json!("com.example.order.paid");
        refused("order.paid", &sent, "/type");
    }

    #[test]
    fn a_missing_sequence_is_refused() {
        let mut sent = event("order.created", data("order.created"));
        sent.as_object_mut().expect("object").remove("sequence");
        refused(
            "order.created",
            &sent,
            "\"sequence\" is a required property",
        );
    }

    #[test]
    fn a_sequence_that_is_not_a_string_of_digits_is_refused() {
        for sequence in [json!(3), json!("0"), json!("03"), json!("3.0"), json!("")] {
            let mut sent = event("order.created", data("order.created"));
            sent["sequence"] = sequence;
            refused("order.created", &sent, "/sequence");
        }
    }

    #[test]
    fn an_extra_envelope_field_is_refused() {
        let mut sent = event("order.delivered", data("order.delivered"));
        sent["traceparent"] = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        refused("order.delivered", &sent, "traceparent");
    }

    #[test]
    fn an_extra_order_field_is_refused() {
        let mut order = data("order.paid");
        order["total"] = json!(12);
        refused("order.paid", &event("order.paid", order), "total");
    }

    #[test]
    fn order_data_with_a_bad_status_is_refused() {
        // Not a status at all.
        let sent = event("order.created", order("shipped"));
        refused("order.created", &sent, "/data/status");
        // A status, but not the one of this event.
        let sent = event("order.paid", paid_order("progress", "paid"));
        refused("order.paid", &sent, "/data/status");
    }

    #[test]
    fn a_deleted_event_carrying_more_than_the_id_is_refused() {
        refused(
            "order.deleted",
            &event("order.deleted", order("created")),
            "/data",
        );
        let sent = event(
            "order.deleted",
            json!({"id": ORDER_ID, "status": "created"}),
        );
        refused("order.deleted", &sent, "status");
    }

    #[test]
    fn attention_is_only_on_needs_attention_events() {
        let mut order = data("order.needs_attention");
        refused(
            "order.progress",
            &event("order.progress", order.clone()),
            "/data",
        );
        order.as_object_mut().expect("object").remove("attention");
        refused(
            "order.needs_attention",
            &event("order.needs_attention", order),
            "attention",
        );
    }

    #[test]
    fn a_cancel_reason_is_only_on_cancelled_orders() {
        let mut order = data("order.dispatched");
        order["cancel_reason"] = json!("out of milk");
        refused(
            "order.dispatched",
            &event("order.dispatched", order),
            "/data",
        );
    }

    #[test]
    fn envelope_values_are_checked() {
        let cases = [
            ("specversion", json!("0.3"), "/specversion"),
            ("id", json!("not-a-uuid"), "/id"),
            ("subject", json!(42), "/subject"),
            ("time", json!("5 December 2026"), "/time"),
            ("datacontenttype", json!("text/plain"), "/datacontenttype"),
        ];
        for (attribute, value, expected) in cases {
            let mut sent = event("order.created", data("order.created"));
            sent[attribute] = value;
            refused("order.created", &sent, expected);
        }
    }

    #[test]
    fn the_content_type_routing_key_and_body_are_checked() {
        let body = event("order.created", data("order.created")).to_string();
        for content_type in [None, Some("application/json")] {
            let problem = validate_event("order.created", content_type, body.as_bytes())
                .expect_err("wrong content type accepted");
            assert!(problem.contains("content type"), "{problem}");
        }
        let problem = validate_event("order.shipped", CONTENT_TYPE, body.as_bytes())
            .expect_err("unknown routing key accepted");
        assert!(problem.contains("no channel"), "{problem}");
        let problem = validate_event("order.created", CONTENT_TYPE, b"{\"specversion\":")
            .expect_err("truncated body accepted");
        assert!(problem.contains("not JSON"), "{problem}");
    }
}
