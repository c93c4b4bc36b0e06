use orders_service::domain::OrderStatus;
use serde_json::Value;

use crate::helpers::{Backend, assert_detail, spawn_app};

const UNKNOWN: &str = "/orders/6f1e2a34-0000-4000-8000-000000000000";

async fn cancel_of_a_created_order_cancels_it_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_latte().await;
    let response = app.post(&format!("/orders/{id}/cancel")).await;
    assert_eq!(response.status(), 200);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["order"][0]["product"], "latte");
    let again = app.post(&format!("/orders/{id}/cancel")).await;
    assert!(assert_detail(again, 409).await.contains("cancelled"));
    assert_detail(app.post(&format!("{UNKNOWN}/cancel")).await, 404).await;
}

async fn cancel_of_a_paid_order_is_direct_and_finished_orders_refuse(backend: Backend) {
    let app = spawn_app(backend).await;
    let paid = app.create_latte().await;
    app.force_status(paid, OrderStatus::Paid).await;
    let response = app.post(&format!("/orders/{paid}/cancel")).await;
    assert_eq!(response.status(), 200);
    for status in [OrderStatus::Dispatched, OrderStatus::Delivered] {
        let id = app.create_latte().await;
        app.force_status(id, status).await;
        let detail = assert_detail(app.post(&format!("/orders/{id}/cancel")).await, 409).await;
        assert!(detail.contains(status.as_str()), "{detail}");
    }
}

async fn pay_without_a_payments_service_answers_503_naming_the_setting(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_latte().await;
    let detail = assert_detail(app.post(&format!("/orders/{id}/pay")).await, 503).await;
    assert!(detail.contains("PAYMENTS_URL"), "{detail}");
    let order: Value = app
        .get(&format!("/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "created", "nothing changed");
    assert_detail(app.post(&format!("{UNKNOWN}/pay")).await, 404).await;
    app.force_status(id, OrderStatus::Cancelled).await;
    assert_detail(app.post(&format!("/orders/{id}/pay")).await, 409).await;
}

both_backends!(
    cancel_of_a_created_order_cancels_it_once,
    cancel_of_a_paid_order_is_direct_and_finished_orders_refuse,
    pay_without_a_payments_service_answers_503_naming_the_setting,
);
