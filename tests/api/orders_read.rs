use serde_json::{Value, json};

use crate::helpers::{Backend, assert_detail, spawn_app};

async fn get_returns_404_for_an_unknown_order(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_latte().await;
    let detail = assert_detail(
        app.get("/orders/6f1e2a34-0000-4000-8000-000000000000")
            .await,
        404,
    )
    .await;
    assert!(detail.contains("not found"), "{detail}");
}

async fn get_returns_the_items_in_the_order_they_were_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let items: Vec<Value> = ["z", "a", "m", "b"]
        .iter()
        .map(|p| json!({"product": p, "size": "medium", "quantity": 1}))
        .collect();
    let created = app.create_order(&json!({"order": items.clone()})).await;
    let fetched: Value = app
        .get(&format!("/orders/{}", created["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["order"], json!(items));
}

both_backends!(
    get_returns_404_for_an_unknown_order,
    get_returns_the_items_in_the_order_they_were_sent,
);
