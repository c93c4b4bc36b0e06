//! The operator's listener (`OPS_ADDR`): the list of stuck work, trying an
//! order again now, and ending each kind of `needs_attention` item by hand,
//! with what became of the money and the goods.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::fakes::Fault;
use crate::faults::{cancel, eventually, pay, reaches, spawn, wired};
use crate::helpers::{Backend, TestApp, assert_detail};

async fn ops_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.ops_address))
        .send()
        .await
        .unwrap()
}

async fn ops_post(app: &TestApp, path: &str, body: Option<Value>) -> reqwest::Response {
    let request = app.client.post(format!("{}{path}", app.ops_address));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap()
}

async fn resolve(app: &TestApp, id: Uuid, resolution: &str) -> reqwest::Response {
    let body = json!({"resolution": resolution, "note": format!("ticket 7: {resolution}")});
    ops_post(app, &format!("/ops/orders/{id}/resolve"), Some(body)).await
}

async fn stuck(app: &TestApp) -> Vec<Value> {
    let response = ops_get(app, "/ops/stuck").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

fn of(items: &[Value], id: Uuid) -> Option<Value> {
    items
        .iter()
        .find(|item| item["order_id"] == id.to_string())
        .cloned()
}

/// Four items raised, one of each kind (an open charge, a refund, a paid
/// order the kitchen never answered about, an order being made whose
/// follow-up fails): `/ops/stuck` lists them, a resolution that does not
/// fit is refused, and each is ended by the resolution that fits, with the
/// end stored and the money and goods as the operator said.
async fn an_operator_ends_each_kind_of_needs_attention_item(backend: Backend) {
    let fake = crate::fakes::Fake::start().await;
    let mut settings = wired(&fake, Some("100"));
    settings.push(("NEEDS_ATTENTION_AFTER_MS", "300"));
    let app = crate::helpers::spawn_app_with(backend, &settings).await;
    let following = app.create_latte().await;
    let refunding = app.create_latte().await;
    for id in [following, refunding] {
        assert_eq!(pay(&app, id).await.status(), 200);
    }
    fake.fail_refunds(&[Fault::Unavailable; 10_000]);
    assert_eq!(cancel(&app, refunding).await.status(), 200);
    let scheduling = app.create_latte().await;
    fake.fail_schedules(&[Fault::Unavailable; 10_000]);
    assert_eq!(pay(&app, scheduling).await.status(), 503);
    let charging = app.create_latte().await;
    fake.fail_charges(&[Fault::Reset; 10_000]);
    assert_eq!(pay(&app, charging).await.status(), 502);
    fake.fail_status(&[Fault::Unavailable; 10_000]);
    let all = [
        (charging, "charge"),
        (refunding, "refund"),
        (scheduling, "schedule"),
        (following, "kitchen"),
    ];
    eventually("every item raised", async || {
        let items = stuck(&app).await;
        all.iter()
            .all(|(id, _)| of(&items, *id).is_some_and(|item| item["state"] == "needs_attention"))
    })
    .await;
    let items = stuck(&app).await;
    for (id, kind) in all {
        let item = of(&items, id).unwrap();
        assert_eq!(item["kind"], kind, "{item}");
        assert!(item["last_error"].as_str().is_some(), "{item}");
        assert!(item["next_try"].is_null(), "{item}");
        assert!(item["attempts"].as_u64().unwrap() >= 1, "{item}");
        assert!(item["age_seconds"].as_f64().is_some(), "{item}");
    }
    fake.heal();
    // A resolution that ends nothing of this order is refused.
    assert_detail(resolve(&app, refunding, "made_anyway").await, 409).await;
    assert_detail(resolve(&app, following, "refunded_by_hand").await, 409).await;
    for (id, resolution) in [
        (charging, "charge_voided"),
        (refunding, "refunded_by_hand"),
        (scheduling, "kitchen_confirmed_cancelled"),
        (following, "made_anyway"),
    ] {
        let response = resolve(&app, id, resolution).await;
        assert_eq!(response.status(), 200, "{resolution}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["resolution"], resolution);
        // Ended once: a second time finds nothing to end.
        assert_detail(resolve(&app, id, resolution).await, 409).await;
        let stored = "SELECT resolution || ': ' || note FROM resolutions WHERE order_id = $1";
        assert_eq!(
            crate::ends::text_of(&app, stored, id).await,
            Some(format!("{resolution}: ticket 7: {resolution}")),
            "the end is stored"
        );
    }
    // The money and the goods as the operator said.
    assert_eq!(app.status_of(charging).await, "created");
    assert_eq!(app.status_of(following).await, "dispatched");
    assert_eq!(fake.refunds_of(following), 0);
    assert_eq!(fake.refunds_of(refunding), 0, "refunded by hand, not here");
    reaches(&app, scheduling, "cancelled").await;
    eventually("the refund of the order the kitchen dropped", async || {
        fake.refunds_of(scheduling) == 1
    })
    .await;
    eventually("nothing left", async || {
        let items = stuck(&app).await;
        all.iter().all(|(id, _)| of(&items, *id).is_none())
    })
    .await;
    eventually("the gauge at 0", async || {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.contains("orders_needs_attention_items 0")
    })
    .await;
}

/// `retry` tries an order's items now, a raised one included.
async fn retry_tries_a_raised_refund_now(backend: Backend) {
    let (app, fake) = spawn(backend, Some("100")).await;
    let id = app.create_latte().await;
    assert_eq!(pay(&app, id).await.status(), 200);
    fake.fail_refunds(&[Fault::Refused]);
    assert_eq!(cancel(&app, id).await.status(), 200);
    eventually("the refund raised", async || {
        of(&stuck(&app).await, id).is_some_and(|item| item["state"] == "needs_attention")
    })
    .await;
    assert_eq!(fake.refunds_of(id), 0);
    let response = ops_post(&app, &format!("/ops/orders/{id}/retry"), None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["still_open"], json!([]), "{body}");
    assert_eq!(fake.refunds_of(id), 1);
    assert_eq!(fake.refund_keys_of(id), 1, "the same key as before");
    let detail = assert_detail(
        ops_post(&app, &format!("/ops/orders/{id}/retry"), None).await,
        404,
    )
    .await;
    assert!(detail.contains("nothing is open"), "{detail}");
}

/// Every bad input to the operator's listener answers `{"detail": ...}`
/// with its status; the public listener does not route `/ops`.
async fn the_operators_listener_answers_json_errors_and_is_apart(backend: Backend) {
    let (app, _fake) = spawn(backend, None).await;
    let id = Uuid::new_v4();
    let path = format!("/ops/orders/{id}/resolve");
    for (body, status) in [
        (json!({"resolution": "bogus", "note": "x"}), 422),
        (json!({"resolution": "made_anyway", "note": "  "}), 422),
        (json!({"resolution": "made_anyway"}), 422),
        (
            json!({"resolution": "made_anyway", "note": "x", "extra": 1}),
            422,
        ),
        (json!([1]), 422),
        (json!({"resolution": "made_anyway", "note": "x"}), 409),
    ] {
        assert_detail(ops_post(&app, &path, Some(body.clone())).await, status).await;
    }
    let garbage = app
        .client
        .post(format!("{}{path}", app.ops_address))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_detail(garbage, 422).await;
    assert_detail(ops_post(&app, "/ops/orders/xyz/retry", None).await, 422).await;
    assert_detail(
        ops_post(&app, &format!("/ops/orders/{id}/retry"), None).await,
        404,
    )
    .await;
    assert_detail(ops_get(&app, "/ops/nothing").await, 404).await;
    assert_detail(ops_get(&app, &format!("/ops/orders/{id}/retry")).await, 405).await;
    assert_detail(app.get("/ops/stuck").await, 404).await;
    assert_eq!(stuck(&app).await, Vec::<Value>::new());
}

both_backends!(
    an_operator_ends_each_kind_of_needs_attention_item,
    retry_tries_a_raised_refund_now,
    the_operators_listener_answers_json_errors_and_is_apart,
);
