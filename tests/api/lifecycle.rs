//! Pay and cancel across the payments and kitchen services.

use std::time::Duration;

use orders_service::domain::OrderStatus;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::helpers::{Backend, TestApp, assert_detail, latte_order, spawn_app};
use crate::upstreams::{
    payment, schedule, spawn_with_patient_upstreams, spawn_with_upstreams, too_slow,
};

const UNKNOWN: &str = "/orders/6f1e2a34-0000-4000-8000-000000000000";

#[derive(Debug, Clone, Copy)]
enum Action {
    Pay,
    Cancel,
    Replace,
    Delete,
}

async fn act(app: &TestApp, id: uuid::Uuid, action: Action) -> u16 {
    let path = format!("/orders/{id}");
    let response = match action {
        Action::Pay => app.post(&format!("{path}/pay")).await,
        Action::Cancel => app.post(&format!("{path}/cancel")).await,
        Action::Replace => app.put_json(&path, &latte_order()).await,
        Action::Delete => app.delete(&path).await,
    };
    response.status().as_u16()
}

/// Every status × action: the answer and the status it leaves.
async fn every_status_and_action_gives_the_documented_answer(backend: Backend) {
    use Action::*;
    use OrderStatus::*;
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    upstreams.all_well().await;
    // (from, action, answer, resulting status; "gone" when deleted)
    let table = [
        (Created, Pay, 200, "progress"),
        (Paid, Pay, 200, "progress"),
        (Progress, Pay, 409, "progress"),
        (Cancelled, Pay, 409, "cancelled"),
        (Dispatched, Pay, 409, "dispatched"),
        (Delivered, Pay, 409, "delivered"),
        (Created, Cancel, 200, "cancelled"),
        (Paid, Cancel, 200, "cancelled"),
        (Progress, Cancel, 200, "cancelled"),
        (Cancelled, Cancel, 409, "cancelled"),
        (Dispatched, Cancel, 409, "dispatched"),
        (Delivered, Cancel, 409, "delivered"),
        (Created, Replace, 200, "created"),
        (Paid, Replace, 409, "paid"),
        (Progress, Replace, 409, "progress"),
        (Cancelled, Replace, 409, "cancelled"),
        (Dispatched, Replace, 409, "dispatched"),
        (Delivered, Replace, 409, "delivered"),
        (Created, Delete, 204, "gone"),
        (Paid, Delete, 409, "paid"),
        (Progress, Delete, 409, "progress"),
        (Cancelled, Delete, 204, "gone"),
        (Dispatched, Delete, 409, "dispatched"),
        (Delivered, Delete, 204, "gone"),
    ];
    for (from, action, answer, after) in table {
        let id = app.create_latte().await;
        app.force_status(id, from).await;
        assert_eq!(act(&app, id, action).await, answer, "{from:?} {action:?}");
        let stored = app.get(&format!("/orders/{id}")).await;
        let stored = if stored.status() == 404 {
            "gone".to_owned()
        } else {
            stored.json::<Value>().await.unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(stored, after, "{from:?} {action:?}");
    }
    assert_eq!(
        upstreams.charges().await,
        1,
        "only the created order was charged"
    );
}

async fn pay_charges_once_then_schedules_with_the_items(backend: Backend) {
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    upstreams.all_well().await;
    let id = app.create_latte().await;
    let response = app.post(&format!("/orders/{id}/pay")).await;
    assert_eq!(response.status(), 200);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "progress");
    assert_eq!(order["id"], id.to_string());

    let charges = upstreams.payments.received_requests().await.unwrap();
    assert_eq!(charges.len(), 1);
    // The key names the attempt, not the order: a declined order must be
    // able to pay again under a new one.
    let key = charges[0].headers["idempotency-key"].to_str().unwrap();
    assert!(key.parse::<uuid::Uuid>().is_ok(), "{key}");
    assert_ne!(key, id.to_string());
    let charge: Value = charges[0].body_json().unwrap();
    assert_eq!(charge, json!({"order_id": id}));
    let schedules = upstreams.kitchen.received_requests().await.unwrap();
    let scheduled: Value = schedules[0].body_json().unwrap();
    assert_eq!(
        scheduled,
        json!({"order": [{"product": "latte", "size": "small", "quantity": 2}]})
    );
}

async fn a_scheduling_failure_keeps_the_charge_and_the_retry_does_not_charge_again(
    backend: Backend,
) {
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    upstreams.payments_answer(payment("paid")).await;
    upstreams
        .kitchen_schedules(ResponseTemplate::new(500))
        .await;
    let id = app.create_latte().await;

    let detail = assert_detail(app.post(&format!("/orders/{id}/pay")).await, 502).await;
    assert!(detail.contains("kitchen"), "{detail}");
    assert_eq!(
        app.status_of(id).await,
        "paid",
        "the charge that happened is kept"
    );

    upstreams.kitchen.reset().await;
    upstreams.kitchen_schedules(schedule()).await;
    let retry = app.post(&format!("/orders/{id}/pay")).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(app.status_of(id).await, "progress");
    assert_eq!(upstreams.charges().await, 1, "exactly one charge");
}

/// `n` pays of one new order sent at once; checks the answers agree.
async fn concurrent_pays(app: &TestApp, n: usize) {
    let id = app.create_latte().await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (app.client.clone(), app.url(&format!("/orders/{id}/pay")));
        requests.spawn(async move { client.post(url).send().await.unwrap() });
    }
    let mut ok = 0;
    for response in requests.join_all().await {
        match response.status().as_u16() {
            200 => {
                ok += 1;
                let order: Value = response.json().await.unwrap();
                assert_eq!(order["status"], "progress");
            }
            409 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1, "one pay succeeds");
    assert_eq!(app.status_of(id).await, "progress");
}

async fn concurrent_pays_charge_exactly_once(backend: Backend) {
    let (app, upstreams) = spawn_with_patient_upstreams(backend).await;
    upstreams
        .payments_answer(payment("paid").set_delay(Duration::from_millis(150)))
        .await;
    upstreams.kitchen_schedules(schedule()).await;
    concurrent_pays(&app, 2).await;
    assert_eq!(upstreams.charges().await, 1);
    concurrent_pays(&app, 10).await;
    assert_eq!(upstreams.charges().await, 2, "one charge per order");
    assert_eq!(upstreams.schedules().await, 2, "one schedule per order");
}

async fn pay_racing_cancel_ends_in_one_consistent_state(backend: Backend) {
    let (app, upstreams) = spawn_with_patient_upstreams(backend).await;
    upstreams
        .payments_answer(payment("paid").set_delay(Duration::from_millis(100)))
        .await;
    upstreams.kitchen_schedules(schedule()).await;
    upstreams.kitchen_cancels(ResponseTemplate::new(200)).await;
    for _ in 0..5 {
        let id = app.create_latte().await;
        let (pay_path, cancel_path) = (format!("/orders/{id}/pay"), format!("/orders/{id}/cancel"));
        let (pay, cancel) = tokio::join!(app.post(&pay_path), app.post(&cancel_path));
        let (pay, cancel) = (pay.status().as_u16(), cancel.status().as_u16());
        let stored = app.status_of(id).await;
        match (pay, cancel) {
            (200, 409) => assert_eq!(stored, "progress"),
            (_, 200) => assert_eq!(stored, "cancelled", "pay {pay}"),
            other => panic!("inconsistent answers {other:?}, stored {stored}"),
        }
    }
    assert!(upstreams.charges().await <= 5);
}

/// A fault of the payments service: the answer, and the order unchanged.
async fn pay_reports_each_payments_fault_and_leaves_the_order_created(backend: Backend) {
    let garbage = ResponseTemplate::new(201).set_body_string("<html>oops</html>");
    let wrong_value = ResponseTemplate::new(201)
        .set_body_json(json!({"payment_id": uuid::Uuid::new_v4(), "status": "refunded"}));
    let cases: Vec<(&str, ResponseTemplate, u16, &str)> = vec![
        ("500", ResponseTemplate::new(500), 502, "payments"),
        // After the request was sent, any 5xx leaves the outcome unknown.
        ("503", ResponseTemplate::new(503), 502, "payments"),
        (
            "200 instead of 201",
            ResponseTemplate::new(200)
                .set_body_json(json!({"payment_id": uuid::Uuid::new_v4(), "status": "paid"})),
            502,
            "payments",
        ),
        ("garbage", garbage, 502, "payments"),
        ("unknown status", wrong_value, 502, "payments"),
        ("declined", payment("invalid"), 402, "declined"),
        ("timeout", too_slow(payment("paid")), 504, "in time"),
    ];
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    upstreams.kitchen_schedules(schedule()).await;
    for (name, response, status, words) in cases {
        upstreams.payments.reset().await;
        upstreams.payments_answer(response).await;
        let id = app.create_latte().await;
        let detail = assert_detail(app.post(&format!("/orders/{id}/pay")).await, status).await;
        assert!(detail.contains(words), "{name}: {detail}");
        assert_eq!(app.status_of(id).await, "created", "{name}");
        // The lease was given back: a retry is not refused as busy.
        upstreams.payments.reset().await;
        upstreams.payments_answer(payment("paid")).await;
        assert_eq!(
            app.post(&format!("/orders/{id}/pay")).await.status(),
            200,
            "{name}"
        );
    }
    assert_eq!(upstreams.schedules().await, 7);
}

async fn pay_reports_each_kitchen_fault_and_leaves_the_order_paid(backend: Backend) {
    let cases: Vec<(&str, ResponseTemplate, u16)> = vec![
        ("500", ResponseTemplate::new(500), 502),
        ("503", ResponseTemplate::new(503), 503),
        (
            "garbage",
            ResponseTemplate::new(201).set_body_string("{"),
            502,
        ),
        (
            "no id",
            ResponseTemplate::new(201).set_body_json(json!({"scheduled": "2026-11-25T10:00:00Z"})),
            502,
        ),
        ("timeout", too_slow(schedule()), 504),
    ];
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    upstreams.payments_answer(payment("paid")).await;
    for (name, response, status) in cases {
        upstreams.kitchen.reset().await;
        upstreams.kitchen_schedules(response).await;
        let id = app.create_latte().await;
        let detail = assert_detail(app.post(&format!("/orders/{id}/pay")).await, status).await;
        assert!(detail.contains("kitchen"), "{name}: {detail}");
        assert_eq!(app.status_of(id).await, "paid", "{name}");
    }
}

async fn unreachable_or_unset_upstreams_answer_503_naming_them(backend: Backend) {
    let closed = "http://127.0.0.1:9";
    let app = crate::helpers::spawn_app_with(
        backend,
        &[("PAYMENTS_URL", closed), ("KITCHEN_URL", closed)],
    )
    .await;
    let id = app.create_latte().await;
    let detail = assert_detail(app.post(&format!("/orders/{id}/pay")).await, 503).await;
    assert!(detail.contains("payments"), "{detail}");
    assert_eq!(app.status_of(id).await, "created");
    app.force_status(id, OrderStatus::Progress).await;
    let detail = assert_detail(app.post(&format!("/orders/{id}/cancel")).await, 503).await;
    assert!(detail.contains("kitchen"), "{detail}");
    assert_eq!(app.status_of(id).await, "progress");

    let unset = crate::helpers::spawn_app_with(backend, &[("PAYMENTS_URL", closed)]).await;
    let id = unset.create_latte().await;
    let detail = assert_detail(unset.post(&format!("/orders/{id}/pay")).await, 503).await;
    assert!(
        detail.contains("KITCHEN_URL"),
        "refused before charging: {detail}"
    );
}

async fn pay_without_a_payments_service_answers_503_naming_the_setting(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_latte().await;
    let detail = assert_detail(app.post(&format!("/orders/{id}/pay")).await, 503).await;
    assert!(detail.contains("PAYMENTS_URL"), "{detail}");
    assert_eq!(app.status_of(id).await, "created", "nothing changed");
    assert_detail(app.post(&format!("{UNKNOWN}/pay")).await, 404).await;
    assert_detail(app.post(&format!("{UNKNOWN}/cancel")).await, 404).await;
}

async fn cancel_of_a_progress_order_needs_the_kitchens_confirmation(backend: Backend) {
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    let id = app.create_latte().await;
    app.force_status(id, OrderStatus::Progress).await;
    // 409: the kitchen can no longer cancel; 404 and the rest: its status
    // (unknown to this fake) decides, and the answer stays the cancel's.
    for (refusal, status) in [(404, 502), (409, 409), (500, 502), (503, 503)] {
        upstreams.kitchen.reset().await;
        upstreams
            .kitchen_cancels(ResponseTemplate::new(refusal))
            .await;
        let detail = assert_detail(app.post(&format!("/orders/{id}/cancel")).await, status).await;
        assert!(detail.contains("kitchen"), "{detail}");
        assert_eq!(app.status_of(id).await, "progress");
    }
    upstreams.kitchen.reset().await;
    upstreams
        .kitchen_cancels(too_slow(ResponseTemplate::new(200)))
        .await;
    assert_detail(app.post(&format!("/orders/{id}/cancel")).await, 504).await;
    assert_eq!(app.status_of(id).await, "progress");

    upstreams.kitchen.reset().await;
    upstreams.kitchen_cancels(ResponseTemplate::new(200)).await;
    let response = app.post(&format!("/orders/{id}/cancel")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.status_of(id).await, "cancelled");
}

async fn a_lease_blocks_others_until_it_expires(backend: Backend) {
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    upstreams.all_well().await;
    let id = app.create_latte().await;
    app.force_lease(id, 3600).await;
    let detail = assert_detail(app.post(&format!("/orders/{id}/pay")).await, 409).await;
    assert!(detail.contains("retry"), "{detail}");
    let detail = assert_detail(app.post(&format!("/orders/{id}/cancel")).await, 409).await;
    assert!(detail.contains("retry"), "{detail}");
    assert_eq!(upstreams.charges().await, 0);
    // A lease left by a request that died has expired: it blocks nothing.
    app.force_lease(id, -1).await;
    assert_eq!(app.post(&format!("/orders/{id}/pay")).await.status(), 200);
}

/// While a charge is in flight nothing may delete, change or cancel the
/// order it pays for.
async fn delete_replace_and_cancel_wait_for_a_charge_in_flight(backend: Backend) {
    let (app, upstreams) = spawn_with_patient_upstreams(backend).await;
    upstreams
        .payments_answer(payment("paid").set_delay(Duration::from_millis(600)))
        .await;
    upstreams.kitchen_schedules(schedule()).await;
    let id = app.create_latte().await;
    let (client, url) = (app.client.clone(), app.url(&format!("/orders/{id}/pay")));
    let pay = tokio::spawn(async move { client.post(url).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let path = format!("/orders/{id}");
    let other = json!({"order": [{"product": "espresso", "size": "big", "quantity": 50}]});
    for response in [
        app.delete(&path).await,
        app.put_json(&path, &other).await,
        app.post(&format!("{path}/cancel")).await,
    ] {
        let detail = assert_detail(response, 409).await;
        assert!(detail.contains("retry"), "{detail}");
    }
    assert_eq!(pay.await.unwrap(), 200);
    let order: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(order["status"], "progress");
    assert_eq!(order["order"], latte_order()["order"], "the items paid for");
    let scheduled: Value = upstreams.kitchen.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert_eq!(scheduled["order"], latte_order()["order"]);
}

/// The state machine runs to its end even when the client hangs up.
async fn a_client_hanging_up_mid_pay_does_not_lose_the_charge(backend: Backend) {
    let (app, upstreams) = spawn_with_patient_upstreams(backend).await;
    upstreams
        .payments_answer(payment("paid").set_delay(Duration::from_millis(400)))
        .await;
    upstreams.kitchen_schedules(schedule()).await;
    let id = app.create_latte().await;
    app.pay_and_hang_up(id, Duration::from_millis(100)).await;
    let mut status = String::new();
    for _ in 0..30 {
        status = app.status_of(id).await;
        if status == "progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "progress");
    assert_eq!(upstreams.charges().await, 1);
}

both_backends!(
    delete_replace_and_cancel_wait_for_a_charge_in_flight,
    a_client_hanging_up_mid_pay_does_not_lose_the_charge,
    every_status_and_action_gives_the_documented_answer,
    pay_charges_once_then_schedules_with_the_items,
    a_scheduling_failure_keeps_the_charge_and_the_retry_does_not_charge_again,
    concurrent_pays_charge_exactly_once,
    pay_racing_cancel_ends_in_one_consistent_state,
    pay_reports_each_payments_fault_and_leaves_the_order_created,
    pay_reports_each_kitchen_fault_and_leaves_the_order_paid,
    unreachable_or_unset_upstreams_answer_503_naming_them,
    pay_without_a_payments_service_answers_503_naming_the_setting,
    cancel_of_a_progress_order_needs_the_kitchens_confirmation,
    a_lease_blocks_others_until_it_expires,
);
