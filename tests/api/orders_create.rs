use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{Backend, assert_validation, spawn_app};

async fn create_returns_201_with_location_and_the_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"order": [
        {"product": "latte", "size": "small"},
        {"product": "espresso", "size": "big", "quantity": 3},
        {"product": "mocha", "size": "medium", "quantity": 1000000},
    ]});
    let response = app.post_json("/orders", &body).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();

    let keys: Vec<_> = order.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.len(),
        5,
        "exactly id, created, status, order, payment: {keys:?}"
    );
    assert_eq!(order["status"], "created");
    assert_eq!(order["payment"], Value::Null, "nothing charged yet");
    assert_eq!(
        order["order"],
        json!([
            {"product": "latte", "size": "small", "quantity": 1},
            {"product": "espresso", "size": "big", "quantity": 3},
            {"product": "mocha", "size": "medium", "quantity": 1000000},
        ])
    );
    let id = order["id"].as_str().unwrap();
    assert_eq!(location, format!("/orders/{id}"));
    let created = order["created"].as_str().unwrap();
    assert!(created.ends_with('Z'), "UTC: {created}");
    let created = OffsetDateTime::parse(created, &Rfc3339).unwrap();
    assert!((OffsetDateTime::now_utc() - created).whole_seconds().abs() < 60);

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched, order, "the stored order is what was returned");
}

async fn create_rejects_each_invalid_input_with_its_location(backend: Backend) {
    let app = spawn_app(backend).await;
    let item = |extra: Value| {
        let mut item = json!({"product": "latte", "size": "small"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() && k.starts_with('-') {
                item.as_object_mut().unwrap().remove(&k[1..]);
            } else {
                item[k] = v.clone();
            }
        }
        json!({"order": [item]})
    };
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            item(json!({"quantity": null})),
            json!(["body", "order", 0, "quantity"]),
            "int_type",
        ),
        (
            item(json!({"quantity": "2"})),
            json!(["body", "order", 0, "quantity"]),
            "int_type",
        ),
        (
            item(json!({"quantity": 2.0})),
            json!(["body", "order", 0, "quantity"]),
            "int_type",
        ),
        (
            item(json!({"quantity": 2.5})),
            json!(["body", "order", 0, "quantity"]),
            "int_type",
        ),
        (
            item(json!({"quantity": true})),
            json!(["body", "order", 0, "quantity"]),
            "int_type",
        ),
        (
            item(json!({"quantity": 0})),
            json!(["body", "order", 0, "quantity"]),
            "greater_than_equal",
        ),
        (
            item(json!({"quantity": -1})),
            json!(["body", "order", 0, "quantity"]),
            "greater_than_equal",
        ),
        (
            item(json!({"quantity": 1000001})),
            json!(["body", "order", 0, "quantity"]),
            "less_than_equal",
        ),
        (
            item(json!({"size": "large"})),
            json!(["body", "order", 0, "size"]),
            "enum",
        ),
        (
            item(json!({"size": null})),
            json!(["body", "order", 0, "size"]),
            "enum",
        ),
        (
            item(json!({"-size": null})),
            json!(["body", "order", 0, "size"]),
            "missing",
        ),
        (
            item(json!({"-product": null})),
            json!(["body", "order", 0, "product"]),
            "missing",
        ),
        (
            item(json!({"product": 7})),
            json!(["body", "order", 0, "product"]),
            "string_type",
        ),
        (
            item(json!({"product": ""})),
            json!(["body", "order", 0, "product"]),
            "string_too_short",
        ),
        (
            item(json!({"price": 3})),
            json!(["body", "order", 0, "price"]),
            "extra_forbidden",
        ),
        (json!({"order": []}), json!(["body", "order"]), "too_short"),
        (
            json!({"order": "latte"}),
            json!(["body", "order"]),
            "list_type",
        ),
        (json!({}), json!(["body", "order"]), "missing"),
        (json!([]), json!(["body"]), "model_attributes_type"),
        (
            json!({"order": [{"product": "latte", "size": "small"}], "user": "x"}),
            json!(["body", "user"]),
            "extra_forbidden",
        ),
    ];
    for (body, loc, kind) in cases {
        let errors = assert_validation(app.post_json("/orders", &body).await).await;
        assert_eq!(errors, vec![(loc, kind.to_owned())], "body {body}");
    }
    let listed: Value = app.get("/orders").await.json().await.unwrap();
    assert_eq!(listed, json!({"orders": []}), "nothing invalid was stored");
}

async fn create_accepts_the_largest_valid_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"product": format!("p{i}-{}", "é".repeat(190)), "size": "big", "quantity": i + 1}))
        .collect();
    let order = app.create_order(&json!({"order": items})).await;
    assert_eq!(order["order"].as_array().unwrap().len(), 100);
    assert_eq!(order["order"][99]["quantity"], 100);
    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"product": "latte", "size": "big"}))
        .collect();
    let errors =
        assert_validation(app.post_json("/orders", &json!({"order": too_many})).await).await;
    assert_eq!(
        errors,
        vec![(json!(["body", "order"]), "too_long".to_owned())]
    );
}

both_backends!(
    create_returns_201_with_location_and_the_order,
    create_rejects_each_invalid_input_with_its_location,
    create_accepts_the_largest_valid_order,
);
