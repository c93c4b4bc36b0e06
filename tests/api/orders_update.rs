use orders_service::domain::OrderStatus;
use serde_json::{Value, json};

use crate::helpers::{Backend, assert_detail, assert_validation, spawn_app};

const UNKNOWN: &str = "/orders/6f1e2a34-0000-4000-8000-000000000000";

async fn replace_swaps_the_items_and_keeps_id_and_creation_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let created = app.create_order(&crate::helpers::latte_order()).await;
    let path = format!("/orders/{}", created["id"].as_str().unwrap());
    let new_items = json!({"order": [
        {"product": "flat white", "size": "big"},
        {"product": "cortado", "size": "small", "quantity": 4},
    ]});
    let response = app.put_json(&path, &new_items).await;
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(replaced["id"], created["id"]);
    assert_eq!(replaced["created"], created["created"]);
    assert_eq!(replaced["status"], "created");
    assert_eq!(
        replaced["order"],
        json!([
            {"product": "flat white", "size": "big", "quantity": 1},
            {"product": "cortado", "size": "small", "quantity": 4},
        ])
    );
    let fetched: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(fetched, replaced);
}

async fn replace_answers_404_409_and_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let order = crate::helpers::latte_order();
    assert_detail(app.put_json(UNKNOWN, &order).await, 404).await;

    let id = app.create_latte().await;
    let path = format!("/orders/{id}");
    let errors = assert_validation(app.put_json(&path, &json!({"order": []})).await).await;
    assert_eq!(
        errors,
        vec![(json!(["body", "order"]), "too_short".to_owned())]
    );

    for status in [
        OrderStatus::Paid,
        OrderStatus::Progress,
        OrderStatus::Cancelled,
        OrderStatus::Dispatched,
        OrderStatus::Delivered,
    ] {
        app.force_status(id, status).await;
        let detail = assert_detail(app.put_json(&path, &order).await, 409).await;
        assert!(detail.contains(status.as_str()), "{detail}");
    }
    let fetched: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(
        fetched["order"], order["order"],
        "a refused replace changes nothing"
    );
}

async fn delete_answers_204_then_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_latte().await;
    let path = format!("/orders/{id}");
    let response = app.delete(&path).await;
    assert_eq!(response.status(), 204);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "204 has no body"
    );
    assert_detail(app.get(&path).await, 404).await;
    assert_detail(app.delete(&path).await, 404).await;
    assert_detail(app.delete(UNKNOWN).await, 404).await;
}

async fn delete_is_refused_while_the_order_is_paid_made_or_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    for (status, allowed) in [
        (OrderStatus::Created, true),
        (OrderStatus::Paid, false),
        (OrderStatus::Progress, false),
        (OrderStatus::Dispatched, false),
        (OrderStatus::Delivered, true),
        (OrderStatus::Cancelled, true),
    ] {
        let id = app.create_latte().await;
        app.force_status(id, status).await;
        let path = format!("/orders/{id}");
        if allowed {
            assert_eq!(app.delete(&path).await.status(), 204, "{status:?}");
            assert_eq!(app.get(&path).await.status(), 404);
        } else {
            let detail = assert_detail(app.delete(&path).await, 409).await;
            assert!(detail.contains(status.as_str()), "{detail}");
            assert_eq!(app.get(&path).await.status(), 200, "still there");
        }
    }
}

both_backends!(
    replace_swaps_the_items_and_keeps_id_and_creation_time,
    replace_answers_404_409_and_422,
    delete_answers_204_then_404,
    delete_is_refused_while_the_order_is_paid_made_or_sent,
);
