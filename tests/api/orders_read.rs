use serde_json::{Value, json};

use crate::helpers::{Backend, assert_detail, assert_validation, spawn_app};

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

async fn every_order_path_answers_422_for_an_id_that_is_not_a_uuid(backend: Backend) {
    let app = spawn_app(backend).await;
    let loc = json!(["path", "order_id"]);
    let expected = vec![(loc, "uuid_parsing".to_owned())];
    for bad in ["123", "not-a-uuid", "6f1e2a34-0000-4000-8000-00000000000g"] {
        let path = format!("/orders/{bad}");
        assert_eq!(assert_validation(app.get(&path).await).await, expected);
        assert_eq!(assert_validation(app.delete(&path).await).await, expected);
        let put = app.put_json(&path, &crate::helpers::latte_order()).await;
        assert_eq!(assert_validation(put).await, expected);
        let pay = app.post(&format!("{path}/pay")).await;
        assert_eq!(assert_validation(pay).await, expected);
        let cancel = app.post(&format!("{path}/cancel")).await;
        assert_eq!(assert_validation(cancel).await, expected);
    }
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
    every_order_path_answers_422_for_an_id_that_is_not_a_uuid,
    get_returns_the_items_in_the_order_they_were_sent,
);
