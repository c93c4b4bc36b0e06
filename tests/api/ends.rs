//! Every order and every payment reaches an end: a kitchen left in doubt
//! is asked before any refund, refusals are final, and what nobody can
//! settle is raised for an operator. Each scenario asserts what became of
//! the money (charges and refunds by key) and of the goods (schedules made
//! and cancelled), on both backends, against the fakes.

use orders_service::config::DatabaseUrl;
use orders_service::repository::codec::{Id, Time};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::fakes::{Fault, REFUSAL};
use crate::faults::{cancel, eventually, money_is_accounted_for, pay, payment_of, spawn, wired};
use crate::helpers::{Backend, TestApp, assert_detail, spawn_on};

/// Kitchen failures after which the schedule may have been made, and what
/// pay answers to each.
const KITCHEN_IN_DOUBT: [(Fault, u16); 3] = [
    (Fault::UnavailableAfterWork, 503),
    (Fault::Reset, 502),
    (Fault::Garbage, 502),
];

/// A schedule answered 503 (by a proxy, after forwarding), reset, or an
/// unreadable 201 counts as possibly made: cancel is refused while the
/// kitchen cannot confirm, nothing is refunded, and once the kitchen
/// answers its schedule is cancelled before the refund.
async fn a_kitchen_in_doubt_is_asked_before_any_refund(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let mut orders = Vec::new();
    for (fault, status) in KITCHEN_IN_DOUBT {
        let id = app.create_latte().await;
        fake.fail_schedules(&[fault]);
        let detail = assert_detail(pay(&app, id).await, status).await;
        assert!(detail.contains("kitchen"), "{fault:?}: {detail}");
        assert_eq!(app.status_of(id).await, "paid", "{fault:?}");
        assert_eq!(
            fake.schedule_of(id).map(|s| s.status),
            Some("pending"),
            "{fault:?}: the kitchen is making it"
        );
        // The kitchen cannot be asked now: no refund, the order stays paid.
        fake.fail_schedules(&[Fault::Unavailable]);
        assert_detail(cancel(&app, id).await, 503).await;
        assert_eq!(app.status_of(id).await, "paid", "{fault:?}");
        assert_eq!(fake.refund_calls(), 0, "{fault:?}: no refund in doubt");
        assert_eq!(fake.schedule_of(id).unwrap().status, "pending");
        // It answers: the schedule is dropped, then the money goes back.
        assert_eq!(cancel(&app, id).await.status(), 200, "{fault:?}");
        assert_eq!(fake.schedule_of(id).unwrap().status, "cancelled");
        orders.push(id);
    }
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("200"))).await;
    for id in orders {
        eventually("the refund", async || fake.refunds_of(id) == 1).await;
        money_is_accounted_for(&app, &fake, id).await;
        assert_eq!(fake.charges_of(id), 1);
        assert_eq!(fake.refund_keys_of(id), 1);
    }
}

/// A 503 the kitchen gave before doing anything cannot be told from a
/// proxy's after forwarding: the cancel asks the kitchen (with the order's
/// key) and drops what it may have made.
async fn a_kitchen_503_is_never_taken_for_not_sent(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let id = app.create_latte().await;
    fake.fail_schedules(&[Fault::Unavailable]);
    assert_eq!(pay(&app, id).await.status(), 503);
    assert_eq!(app.status_of(id).await, "paid");
    fake.refuse_cancels();
    assert_detail(cancel(&app, id).await, 409).await;
    assert_ne!(app.status_of(id).await, "cancelled");
    assert_eq!(
        fake.refund_calls(),
        0,
        "never refunded while the kitchen may make it"
    );
    assert_eq!(fake.charges_of(id), 1);
}

/// One text column of one row, read from the test's database directly.
pub(crate) async fn text_of(app: &TestApp, sql: &'static str, id: Uuid) -> Option<String> {
    match DatabaseUrl::parse(&app.db.url).unwrap() {
        DatabaseUrl::Postgres(options) => {
            let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(Id(id))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        DatabaseUrl::Sqlite(options) => {
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::query_scalar(sql)
                .bind(Id(id))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }
}

/// The reconciler looks at the order at its next pass.
async fn due_now(app: &TestApp, id: Uuid) {
    on_test_db!(&app.db.url, "UPDATE orders SET next_check = created WHERE id = $1"; Id(id));
}

async fn cancel_reason(app: &TestApp, id: Uuid) -> Option<String> {
    text_of(app, "SELECT cancel_reason FROM orders WHERE id = $1", id).await
}

/// The kitchen's final refusal (a 4xx other than 409 and 429) of a
/// schedule, whether pay, a cancel or the reconciler sent it: the order is
/// cancelled with the kitchen's reason, nothing is made, and the charge is
/// refunded once by the reconciler.
async fn a_kitchen_refusal_cancels_the_order_and_refunds_it(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    // Pay: the kitchen refuses at once.
    let by_pay = app.create_latte().await;
    fake.fail_schedules(&[Fault::Refused]);
    let detail = assert_detail(pay(&app, by_pay).await, 409).await;
    assert!(detail.contains(REFUSAL), "{detail}");
    assert_eq!(app.status_of(by_pay).await, "cancelled");
    assert_detail(pay(&app, by_pay).await, 409).await;
    // Cancel: the schedule was in doubt; asked again, the kitchen refuses.
    let by_cancel = app.create_latte().await;
    fake.fail_schedules(&[Fault::Unavailable, Fault::Refused]);
    assert_eq!(pay(&app, by_cancel).await.status(), 503);
    assert_eq!(cancel(&app, by_cancel).await.status(), 200);
    assert_eq!(app.status_of(by_cancel).await, "cancelled");
    // The reconciler: it schedules a paid order and hears the refusal.
    let by_reconciler = app.create_latte().await;
    fake.fail_schedules(&[Fault::Unavailable]);
    assert_eq!(pay(&app, by_reconciler).await.status(), 503);
    fake.fail_schedules(&[Fault::Refused]);
    due_now(&app, by_reconciler).await;
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("200"))).await;
    crate::faults::reaches(&app, by_reconciler, "cancelled").await;
    for id in [by_pay, by_cancel, by_reconciler] {
        assert_eq!(cancel_reason(&app, id).await.as_deref(), Some(REFUSAL));
        assert!(fake.schedule_of(id).is_none(), "nothing made");
        eventually("the refund", async || fake.refunds_of(id) == 1).await;
        money_is_accounted_for(&app, &fake, id).await;
        assert_eq!(fake.refund_keys_of(id), 1);
    }
}

async fn refund_attention(app: &TestApp, id: Uuid) -> Option<String> {
    text_of(app, "SELECT attention FROM refunds WHERE order_id = $1", id).await
}

async fn order_attention(app: &TestApp, id: Uuid) -> Option<String> {
    text_of(app, "SELECT attention FROM orders WHERE id = $1", id).await
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

/// Payments refuses a refund (422): no retry will make it, so it needs an
/// operator at once, is counted, and is no longer sent.
async fn a_refund_payments_refuses_needs_attention_at_once(backend: Backend) {
    let (app, fake) = spawn(backend, Some("100")).await;
    let id = app.create_latte().await;
    assert_eq!(pay(&app, id).await.status(), 200);
    fake.fail_refunds(&[Fault::Refused]);
    assert_eq!(cancel(&app, id).await.status(), 200);
    eventually("the refund raised", async || {
        refund_attention(&app, id).await.is_some()
    })
    .await;
    let why = refund_attention(&app, id).await.unwrap();
    assert!(why.contains(REFUSAL), "{why}");
    let calls = fake.refund_calls();
    assert_eq!(calls, 1, "asked once, refused once");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(fake.refund_calls(), calls, "no longer sent");
    assert_eq!(fake.refunds_of(id), 0);
    assert_eq!(fake.charges_of(id), 1);
    assert_eq!(payment_of(&app, id).await["status"], "needs_attention");
    let text = metrics(&app).await;
    assert!(
        text.contains(
            r#"orders_reconciled_items_total{kind="refund",outcome="needs_attention"} 1"#
        ),
        "{text}"
    );
}

/// Payments forgets keys (`PAYMENT_KEY_TTL_SECS`): a charge, and a refund,
/// sent before under a key older than that is never sent again (payments
/// could take it for a new one). Neither the customer's retry nor the
/// reconciler sends it; it waits for an operator, and reads say so.
async fn a_key_payments_may_have_forgotten_is_never_sent_again(backend: Backend) {
    let (app, fake) = spawn(backend, Some("100")).await;
    let long_ago = Time(time::OffsetDateTime::now_utc() - time::Duration::days(2));
    // A charge whose answer was lost two days ago.
    let charged = app.create_latte().await;
    fake.fail_charges(&[Fault::Reset; 10_000]);
    assert_eq!(pay(&app, charged).await.status(), 502);
    on_test_db!(&app.db.url, "UPDATE payment_attempts SET created = $2 WHERE order_id = $1";
        Id(charged), long_ago);
    let calls = fake.charge_calls();
    let detail = assert_detail(pay(&app, charged).await, 409).await;
    assert!(detail.contains("waits for an operator"), "{detail}");
    assert_eq!(fake.charge_calls(), calls, "the old key is not sent");
    let why = order_attention(&app, charged).await.unwrap();
    assert!(why.contains("PAYMENT_KEY_TTL_SECS"), "{why}");
    // A refund tried once, two days ago.
    let refunded = app.create_latte().await;
    fake.heal();
    assert_eq!(pay(&app, refunded).await.status(), 200);
    let calls = fake.charge_calls();
    fake.fail_refunds(&[Fault::Unavailable; 10_000]);
    assert_eq!(cancel(&app, refunded).await.status(), 200);
    eventually("a refund tried", async || fake.refund_calls() > 0).await;
    on_test_db!(&app.db.url, "UPDATE refunds SET created = $2, next_try = created WHERE order_id = $1";
        Id(refunded), long_ago);
    eventually("the refund raised", async || {
        refund_attention(&app, refunded).await.is_some()
    })
    .await;
    let refund_calls = fake.refund_calls();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(fake.refund_calls(), refund_calls, "no longer sent");
    assert_eq!(
        fake.charge_calls(),
        calls,
        "nor the charge, by the reconciler"
    );
    for id in [charged, refunded] {
        assert_eq!(payment_of(&app, id).await["status"], "needs_attention");
    }
}

/// Each kind of item that stays unsettled past `NEEDS_ATTENTION_AFTER_MS`
/// (a charge whose answer keeps being lost, a refund, a paid order the
/// kitchen cannot be reached for, a kitchen follow-up whose questions keep
/// failing) is raised for an operator and no longer retried.
async fn every_kind_unsettled_past_the_bound_needs_attention(backend: Backend) {
    let fake = crate::fakes::Fake::start().await;
    let mut settings = wired(&fake, Some("100"));
    settings.push(("NEEDS_ATTENTION_AFTER_MS", "400"));
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
    eventually("every item raised", async || {
        refund_attention(&app, refunding).await.is_some()
            && order_attention(&app, scheduling).await.is_some()
            && order_attention(&app, charging).await.is_some()
            && order_attention(&app, following).await.is_some()
    })
    .await;
    // Reads tell whose money waits for an operator: the charge and the
    // refund's, not the kitchen's (that order's money is paid).
    for (id, money) in [
        (charging, "needs_attention"),
        (refunding, "needs_attention"),
        (scheduling, "paid"),
        (following, "paid"),
    ] {
        assert_eq!(payment_of(&app, id).await["status"], money);
    }
    let text = metrics(&app).await;
    for kind in ["charge", "refund", "schedule", "kitchen"] {
        let raised = format!(
            r#"orders_reconciled_items_total{{kind="{kind}",outcome="needs_attention"}} 1"#
        );
        assert!(text.contains(&raised), "{kind}: {text}");
    }
    // Nothing is retried any more, and nothing moved meanwhile.
    let calls = (
        fake.charge_calls(),
        fake.refund_calls(),
        fake.schedule_calls(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = (
        fake.charge_calls(),
        fake.refund_calls(),
        fake.schedule_calls(),
    );
    assert_eq!(calls, after);
    assert_eq!(app.status_of(charging).await, "created");
    assert_eq!(app.status_of(scheduling).await, "paid");
    assert_eq!(app.status_of(following).await, "progress");
    assert_eq!(fake.refunds_of(refunding), 0);
}

/// A reconciler pass with one poisoned item (a paid order whose stored row
/// does not read) and five healthy ones (three paid orders to schedule, two
/// refunds owed): the five are settled, the poisoned one is raised for an
/// operator, and every kind shows in the gauges.
async fn a_poisoned_item_does_not_stop_the_others(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let mut to_schedule = Vec::new();
    for _ in 0..4 {
        let id = app.create_latte().await;
        fake.fail_schedules(&[Fault::Unavailable]);
        assert_eq!(pay(&app, id).await.status(), 503);
        to_schedule.push(id);
    }
    let poisoned = to_schedule.remove(0);
    let mut to_refund = Vec::new();
    for _ in 0..2 {
        let id = app.create_latte().await;
        assert_eq!(pay(&app, id).await.status(), 200);
        assert_eq!(cancel(&app, id).await.status(), 200);
        to_refund.push(id);
    }
    for id in to_schedule.iter().chain([&poisoned]) {
        due_now(&app, *id).await;
    }
    match backend {
        Backend::Postgres => {
            on_test_db!(&app.db.url, "UPDATE orders SET updated = 'infinity' WHERE id = $1"; Id(poisoned))
        }
        Backend::Sqlite => {
            on_test_db!(&app.db.url, "UPDATE orders SET updated = 'garbage' WHERE id = $1"; Id(poisoned))
        }
    }
    let reconciling = spawn_on(app.db.share(), &wired(&fake, Some("200"))).await;
    for id in &to_schedule {
        crate::faults::reaches(&app, *id, "progress").await;
        assert_eq!(fake.schedule_of(*id).unwrap().status, "pending");
    }
    for id in &to_refund {
        eventually("the refund", async || fake.refunds_of(*id) == 1).await;
        money_is_accounted_for(&app, &fake, *id).await;
    }
    eventually("the poisoned item raised", async || {
        order_attention(&app, poisoned).await.is_some()
    })
    .await;
    eventually("the gauges", async || {
        metrics(&reconciling)
            .await
            .contains("orders_needs_attention_items 1")
    })
    .await;
    let text = metrics(&reconciling).await;
    assert!(
        text.contains(r#"orders_reconcile_errors_total{kind="kitchen"} 1"#),
        "{text}"
    );
    for kind in ["charge", "refund", "schedule", "kitchen", "needs_attention"] {
        assert!(
            text.contains(&format!(r#"orders_open_items{{kind="{kind}"}}"#)),
            "{kind}: {text}"
        );
        assert!(
            text.contains(&format!(
                r#"orders_oldest_open_item_age_seconds{{kind="{kind}"}}"#
            )),
            "{kind}: {text}"
        );
    }
    assert!(
        text.contains(r#"orders_open_items{kind="needs_attention"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"orders_open_items{kind="schedule"} 0"#),
        "{text}"
    );
    assert_eq!(app.status_of(poisoned).await, "paid", "left as it was");
}

/// Four clients pay order `id` until one is answered 200, while the
/// lease of a holder that died mid-call ends (in a second). A pay that
/// finds the order held and, a moment later, free again claims it again
/// rather than answer a 409 with no holder to wait for: every other answer
/// is a 409 (or a 503) that says when to come back.
async fn pay_across_the_end_of_a_lease(app: &std::sync::Arc<TestApp>, id: Uuid) {
    app.force_lease(id, 1).await;
    let mut payers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let app = app.clone();
        payers.spawn(async move {
            let started = std::time::Instant::now();
            loop {
                let answer = pay(&app, id).await;
                let status = answer.status().as_u16();
                if status == 200 {
                    return;
                }
                let retry_after = answer.headers().get("retry-after").cloned();
                let detail = assert_detail(answer, status).await;
                // 503: the database was slow to lend a connection.
                assert!([409, 503].contains(&status), "{status}: {detail}");
                assert!(
                    retry_after.is_some(),
                    "a {status} without Retry-After: {detail}"
                );
                assert!(started.elapsed().as_secs() < 10, "never paid: {detail}");
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        });
    }
    while let Some(payer) = payers.join_next().await {
        payer.unwrap();
    }
}

/// A charge whose answer was lost, its lease ending: the open attempt is
/// taken up under its key, and the money taken once.
async fn pays_at_the_end_of_a_lease_take_up_its_attempt(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let app = std::sync::Arc::new(app);
    let id = app.create_latte().await;
    fake.fail_charges(&[Fault::Reset]);
    assert_detail(pay(&app, id).await, 502).await;
    assert_eq!(fake.charges_of(id), 1, "payments took the money");
    pay_across_the_end_of_a_lease(&app, id).await;
    assert_eq!(fake.charges_of(id), 1);
    assert_eq!(fake.charge_keys_of(id), 1, "the same key, asked again");
    assert_eq!(payment_of(&app, id).await["status"], "paid");
}

/// A paid order whose schedule was never sent, its lease ending: one
/// schedule is made, and nothing is charged again.
async fn pays_at_the_end_of_a_lease_schedule_once(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let app = std::sync::Arc::new(app);
    let id = app.create_latte().await;
    fake.fail_schedules(&[Fault::Unavailable]);
    assert_detail(pay(&app, id).await, 503).await;
    assert_eq!(app.status_of(id).await, "paid");
    pay_across_the_end_of_a_lease(&app, id).await;
    assert_eq!(app.status_of(id).await, "progress");
    assert_eq!(fake.schedule_of(id).map(|s| s.status), Some("pending"));
    assert_eq!(fake.charges_of(id), 1);
}

both_backends!(
    pays_at_the_end_of_a_lease_take_up_its_attempt,
    pays_at_the_end_of_a_lease_schedule_once,
    a_retried_pay_after_the_reconciler_settled_it_answers_200,
    the_reconciler_leases_one_item_at_a_time,
    a_poisoned_item_does_not_stop_the_others,
    a_refund_payments_refuses_needs_attention_at_once,
    a_key_payments_may_have_forgotten_is_never_sent_again,
    every_kind_unsettled_past_the_bound_needs_attention,
    a_kitchen_refusal_cancels_the_order_and_refunds_it,
    a_kitchen_in_doubt_is_asked_before_any_refund,
    a_kitchen_503_is_never_taken_for_not_sent,
);

/// The database fails between a charge that went through and its record:
/// pay does not say "unchanged" (payments took the money), it says the
/// charge is recorded later; the retry records it, charging nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_record_fails_is_not_answered_unchanged() {
    let db = crate::helpers::TestDatabase::create(Backend::Postgres).await;
    db.migrate().await;
    let (proxy, through) = crate::proxy::Proxy::before_database(&db.url).await;
    let through = crate::helpers::TestDatabase::unmanaged(through);
    let fake = crate::fakes::Fake::start().await;
    let app = spawn_on(through, &wired(&fake, None)).await;
    let id = app.create_latte().await;
    fake.fail_charges(&[Fault::Held]);
    let paying = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(&format!("/orders/{id}/pay")));
        async move { client.post(url).send().await.unwrap() }
    });
    eventually("the charge sent", async || fake.charge_calls() == 1).await;
    proxy.cut();
    fake.release_held();
    let answer = paying.await.unwrap();
    let status = answer.status();
    let detail = assert_detail(answer, status.as_u16()).await;
    assert_eq!(status, 503, "{detail}");
    assert!(detail.contains("not unchanged"), "{detail}");
    assert!(detail.contains("paying again"), "{detail}");
    assert_eq!(fake.charges_of(id), 1, "payments took the money");
    proxy.restore();
    // Until the failed pay's lease runs out (it could not be given back
    // while the database was away), a retry is told when to come back: at
    // most the lease's length (7.1 s with these settings, plus a margin).
    eventually("a retried pay to go through", async || {
        let answer = pay(&app, id).await;
        let status = answer.status();
        assert!([200, 409, 503].contains(&status.as_u16()), "{status}");
        if status == 409 {
            let wait: u64 = answer.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=12).contains(&wait), "Retry-After {wait}");
        }
        status == 200
    })
    .await;
    assert_eq!(fake.charges_of(id), 1);
    assert_eq!(fake.charge_keys_of(id), 1, "the same key, asked again");
    assert_eq!(payment_of(&app, id).await["status"], "paid");
    drop(app);
    drop(db);
}

/// SQLite has one writer at a time: concurrent pays and cancels (each a
/// read then a write in one transaction) wait for each other instead of
/// failing with "database is locked". No answer is a 5xx, and every charge
/// is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pays_and_cancels_on_sqlite_never_answer_5xx() {
    let (app, fake) = spawn(Backend::Sqlite, None).await;
    let app = std::sync::Arc::new(app);
    let mut orders = Vec::new();
    for _ in 0..24 {
        orders.push(app.create_latte().await);
    }
    let mut calls = tokio::task::JoinSet::new();
    for (n, id) in orders.iter().copied().enumerate() {
        for action in ["pay", "cancel", "pay"] {
            let app = app.clone();
            calls.spawn(async move {
                if n % 2 == 0 && action == "cancel" {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                let status = app
                    .post(&format!("/orders/{id}/{action}"))
                    .await
                    .status()
                    .as_u16();
                (id, action, status)
            });
        }
    }
    let mut answers = Vec::new();
    while let Some(answer) = calls.join_next().await {
        answers.push(answer.unwrap());
    }
    let failed: Vec<_> = answers.iter().filter(|(_, _, s)| *s >= 500).collect();
    assert!(failed.is_empty(), "5xx answers: {failed:?}");
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("100"))).await;
    for id in orders {
        let status = app.status_of(id).await;
        if status == "cancelled" && fake.charges_of(id) == 1 {
            eventually("the refund", async || fake.refunds_of(id) == 1).await;
        }
        money_is_accounted_for(&app, &fake, id).await;
    }
}

/// The reconciler takes one item's lease at a time, for as long as its
/// calls: while it works through a backlog of slow schedules, a customer
/// cancelling one of the orders further down is not told "another request
/// is cancelling".
async fn the_reconciler_leases_one_item_at_a_time(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let mut orders = Vec::new();
    for _ in 0..6 {
        let id = app.create_latte().await;
        fake.fail_schedules(&[Fault::Unavailable]);
        assert_eq!(pay(&app, id).await.status(), 503);
        due_now(&app, id).await;
        orders.push(id);
    }
    fake.fail_schedules(&[Fault::Delayed; 7]);
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("100"))).await;
    eventually("the reconciler at work", async || fake.schedule_calls() > 6).await;
    let last = *orders.last().unwrap();
    let answer = cancel(&app, last).await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert_eq!(fake.schedule_of(last).unwrap().status, "cancelled");
    for id in &orders[..5] {
        crate::faults::reaches(&app, *id, "progress").await;
    }
    eventually("the refund", async || fake.refunds_of(last) == 1).await;
    money_is_accounted_for(&app, &fake, last).await;
}

/// A pay whose answer was lost, settled and scheduled since by the
/// reconciler: the customer's retry of the pay is answered 200 with the
/// order, not 409, and nothing is charged or scheduled again.
async fn a_retried_pay_after_the_reconciler_settled_it_answers_200(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let id = app.create_latte().await;
    fake.fail_charges(&[Fault::Reset]);
    assert_detail(pay(&app, id).await, 502).await;
    on_test_db!(&app.db.url, "UPDATE payment_attempts SET next_try = created WHERE order_id = $1"; Id(id));
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("100"))).await;
    crate::faults::reaches(&app, id, "progress").await;
    let retried = pay(&app, id).await;
    assert_eq!(retried.status(), 200);
    let order: serde_json::Value = retried.json().await.unwrap();
    assert_eq!(order["status"], "progress");
    assert_eq!(fake.charges_of(id), 1);
    assert_eq!(fake.charge_keys_of(id), 1);
    assert_eq!(fake.schedule_calls(), 1);
    // An order nobody paid for is still refused.
    let unpaid = app.create_latte().await;
    assert_eq!(cancel(&app, unpaid).await.status(), 200);
    assert_detail(pay(&app, unpaid).await, 409).await;
}
