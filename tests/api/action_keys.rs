//! What a client sees of the money, and what a repeated pay or cancel is
//! answered: every read carries the order's `payment`, and an
//! `Idempotency-Key` on pay or cancel gets the same answer again, without
//! charging, refunding or scheduling twice (the fakes count by key).

use reqwest::Response;
use serde_json::Value;
use uuid::Uuid;

use crate::faults::{cancel, eventually, money_is_accounted_for, pay, payment_of, spawn, wired};
use crate::helpers::{Backend, TestApp, assert_detail, spawn_on};

async fn keyed(app: &TestApp, id: Uuid, action: &str, key: &str) -> Response {
    app.client
        .post(app.url(&format!("/orders/{id}/{action}")))
        .header("idempotency-key", key)
        .send()
        .await
        .expect("request")
}

fn replayed(response: &Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

/// A declined pay repeated under its key is told "declined" again and
/// charges nothing new; a new key makes the new charge. A pay that went
/// through, repeated, gets the same 200 and the same body.
async fn a_repeated_pay_gets_the_same_answer(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let id = app.create_latte().await;
    fake.verdicts(&["invalid"]);
    let first = keyed(&app, id, "pay", "pay-1").await;
    assert_eq!(first.status(), 402);
    assert!(!replayed(&first));
    let detail = first.text().await.unwrap();
    let again = keyed(&app, id, "pay", "pay-1").await;
    assert_eq!(again.status(), 402);
    assert!(replayed(&again));
    assert_eq!(again.text().await.unwrap(), detail);
    assert_eq!(fake.charge_keys_of(id), 1, "no new charge for the repeat");
    assert_eq!(payment_of(&app, id).await["status"], "declined");

    let paid = keyed(&app, id, "pay", "pay-2").await;
    assert_eq!(paid.status(), 200);
    let body: Value = paid.json().await.unwrap();
    assert_eq!(body["status"], "progress");
    assert_eq!(body["payment"]["status"], "paid");
    let again = keyed(&app, id, "pay", "pay-2").await;
    assert_eq!(again.status(), 200);
    assert!(replayed(&again));
    assert_eq!(again.json::<Value>().await.unwrap(), body);
    assert_eq!(fake.charge_keys_of(id), 2);
    assert_eq!(fake.charges_of(id), 1);
    assert_eq!(fake.schedule_calls(), 1);
}

/// A cancel repeated under its key is told "cancelled" again (without the
/// key, a second cancel is refused: the order is cancelled already), and
/// the charge is refunded once.
async fn a_repeated_cancel_gets_the_same_answer(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let id = app.create_latte().await;
    assert_eq!(pay(&app, id).await.status(), 200);
    let first = keyed(&app, id, "cancel", "cancel-1").await;
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["payment"]["status"], "refund_pending");
    let again = keyed(&app, id, "cancel", "cancel-1").await;
    assert_eq!(again.status(), 200);
    assert!(replayed(&again));
    assert_eq!(again.json::<Value>().await.unwrap(), body);
    assert_detail(cancel(&app, id).await, 409).await;
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("100"))).await;
    eventually("the refund", async || fake.refunds_of(id) == 1).await;
    money_is_accounted_for(&app, &fake, id).await;
    assert_eq!(fake.refund_keys_of(id), 1);
    assert_eq!(payment_of(&app, id).await["status"], "refunded");
}

/// A key belongs to one action on one order: used for another, 422, and
/// nothing is done; answers that say "retry" are not kept, so the repeat of
/// a pending pay is answered by the work done again (200 once settled).
async fn a_key_stands_for_one_request_and_keeps_only_final_answers(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let (a, b) = (app.create_latte().await, app.create_latte().await);
    fake.verdicts(&["pending"]);
    fake.pending_settles(1, "paid");
    let pending = keyed(&app, a, "pay", "k").await;
    assert_eq!(pending.status(), 202);
    assert_eq!(payment_of(&app, a).await["status"], "pending");
    for (id, action) in [(b, "pay"), (a, "cancel")] {
        let reused = keyed(&app, id, action, "k").await;
        assert_eq!(reused.status(), 422);
        let body: Value = reused.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["type"], "idempotency_key_reused",
            "{body}"
        );
        assert_eq!(body["detail"][0]["loc"][1], "idempotency-key", "{body}");
    }
    assert_eq!(fake.charge_keys_of(b), 0);
    assert_eq!(app.status_of(a).await, "created");
    let settled = keyed(&app, a, "pay", "k").await;
    assert_eq!(settled.status(), 200);
    assert!(!replayed(&settled), "202 was not kept");
    assert_eq!(app.status_of(a).await, "progress");
    assert_eq!(fake.charge_keys_of(a), 1, "the same charge, asked again");
    assert_eq!(fake.charges_of(a), 1);
    // The key is another user's to use as well.
    let other = app.create_latte().await;
    assert_eq!(pay(&app, other).await.status(), 200);
}

/// 202 tells when payments will be asked again: the reconciler's interval
/// (1.5 s here), rounded up to whole seconds, not a constant.
async fn a_pending_pay_says_when_to_look_again(backend: Backend) {
    let (app, fake) = spawn(backend, Some("1500")).await;
    let id = app.create_latte().await;
    fake.verdicts(&["pending"]);
    fake.pending_settles(100, "paid");
    let pending = pay(&app, id).await;
    assert_eq!(pending.status(), 202);
    assert_eq!(pending.headers()["retry-after"], "2");
    let order: Value = pending.json().await.unwrap();
    assert_eq!(order["payment"]["status"], "pending");
}

/// Every read shows the money: nothing before a charge, then each status
/// as the order moves, in the list as in the order itself, with the time
/// it last changed.
async fn reads_show_the_money(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let id = app.create_latte().await;
    assert_eq!(payment_of(&app, id).await, Value::Null);
    fake.verdicts(&["invalid"]);
    assert_eq!(pay(&app, id).await.status(), 402);
    let declined = payment_of(&app, id).await;
    assert_eq!(declined["status"], "declined");
    // A replace of a `created` order answers with its money too.
    let replaced: Value = app
        .put_json(&format!("/orders/{id}"), &crate::helpers::latte_order())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(replaced["payment"], declined);
    assert_eq!(pay(&app, id).await.status(), 200);
    let paid = payment_of(&app, id).await;
    assert_eq!(paid["status"], "paid");
    assert!(paid["updated"].as_str().unwrap() >= declined["updated"].as_str().unwrap());
    let list: Value = app.get("/orders").await.json().await.unwrap();
    let listed = list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id.to_string())
        .unwrap();
    assert_eq!(listed["payment"], paid);
}

/// Two orders that payments answered with one payment id each owe their
/// own refund: neither is lost in the other's.
async fn two_orders_with_one_payment_id_are_refunded_each(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let shared = Uuid::new_v4();
    fake.payment_ids(shared);
    let (a, b) = (app.create_latte().await, app.create_latte().await);
    for id in [a, b] {
        assert_eq!(pay(&app, id).await.status(), 200);
        assert_eq!(cancel(&app, id).await.status(), 200);
    }
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("100"))).await;
    for id in [a, b] {
        eventually("the refund", async || {
            payment_of(&app, id).await["status"] == "refunded"
        })
        .await;
    }
    assert_eq!(fake.refund_calls(), 2, "each order's refund sent once");
}

both_backends!(
    a_repeated_pay_gets_the_same_answer,
    a_repeated_cancel_gets_the_same_answer,
    a_key_stands_for_one_request_and_keeps_only_final_answers,
    a_pending_pay_says_when_to_look_again,
    reads_show_the_money,
    two_orders_with_one_payment_id_are_refunded_each,
);
