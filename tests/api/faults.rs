//! Money under faults: every way an answer of payments or kitchen can be
//! lost after the work was done, what the client sees, and what the order
//! and the money end as, through client retries and through the reconciler
//! alone. The fakes honour idempotency keys and count charges and refunds
//! by key, so "charged once" is told from "charged twice".

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

use crate::fakes::{Fake, Fault};
use crate::helpers::{Backend, TestApp, assert_detail, latte_order, spawn_app_with, spawn_on};

/// The faults that strike after payments charged, and what pay answers.
const LOST_AFTER_THE_CHARGE: [(Fault, u16); 4] = [
    (Fault::Slow, 504),
    (Fault::Reset, 502),
    (Fault::ServerError, 502),
    (Fault::Garbage, 502),
];

/// Settings wiring a service to `fake` for both upstreams; `reconcile_ms`
/// sets how often its reconciler runs (the tests' default: once an hour).
pub(crate) fn wired<'a>(fake: &'a Fake, reconcile_ms: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut settings = vec![
        ("PAYMENTS_URL", fake.url.as_str()),
        ("KITCHEN_URL", fake.url.as_str()),
        ("UPSTREAM_TIMEOUT_MS", "700"),
        ("DB_ACQUIRE_TIMEOUT_MS", "500"),
    ];
    if let Some(every) = reconcile_ms {
        settings.extend([
            ("RECONCILE_INTERVAL_MS", every),
            ("RECONCILE_BACKOFF_MAX_MS", every),
            ("KITCHEN_POLL_MS", every),
        ]);
    }
    settings
}

pub(crate) async fn spawn(backend: Backend, reconcile_ms: Option<&str>) -> (TestApp, Fake) {
    let fake = Fake::start().await;
    let app = spawn_app_with(backend, &wired(&fake, reconcile_ms)).await;
    (app, fake)
}

pub(crate) async fn pay(app: &TestApp, id: Uuid) -> reqwest::Response {
    app.post(&format!("/orders/{id}/pay")).await
}

pub(crate) async fn cancel(app: &TestApp, id: Uuid) -> reqwest::Response {
    app.post(&format!("/orders/{id}/cancel")).await
}

/// Waits (at most 15 s) until `done` holds, re-checking every 50 ms.
pub async fn eventually<F: AsyncFn() -> bool>(what: &str, done: F) {
    eventually_within(Duration::from_secs(15), what, done).await;
}

/// Waits (at most `patience`) until `done` holds, re-checking every 50 ms.
pub async fn eventually_within<F: AsyncFn() -> bool>(patience: Duration, what: &str, done: F) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < patience, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn reaches(app: &TestApp, id: Uuid, status: &str) {
    eventually(&format!("order {id} to become {status}"), async || {
        app.status_of(id).await == status
    })
    .await;
}

/// The order's `payment` as a read shows it.
pub(crate) async fn payment_of(app: &TestApp, id: Uuid) -> Value {
    let order: Value = app
        .get(&format!("/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    order["payment"].clone()
}

/// The money rule: a charge is accounted for by an order that is paid for
/// (`paid`, `progress`, `dispatched`) or by exactly one refund.
pub(crate) async fn money_is_accounted_for(app: &TestApp, fake: &Fake, id: Uuid) {
    let charges = fake.charges_of(id);
    assert!(charges <= 1, "order {id} charged {charges} times");
    let status = app.status_of(id).await;
    let refunds = fake.refunds_of(id);
    match (charges, status.as_str()) {
        (0, _) => assert_eq!(refunds, 0, "refunded without a charge"),
        (1, "paid" | "progress" | "dispatched") => assert_eq!(refunds, 0, "{status} and refunded"),
        (1, _) => assert_eq!(refunds, 1, "charged, {status}, {refunds} refunds"),
        _ => unreachable!(),
    }
}

async fn a_decline_then_a_new_pay_charges_once_under_a_new_key(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    fake.verdicts(&["invalid"]);
    let id = app.create_latte().await;
    let detail = assert_detail(pay(&app, id).await, 402).await;
    assert!(detail.contains("declined"), "{detail}");
    assert_eq!(app.status_of(id).await, "created");
    let paid = pay(&app, id).await;
    assert_eq!(paid.status(), 200);
    assert_eq!(app.status_of(id).await, "progress");
    assert_eq!(fake.charge_keys_of(id), 2, "a new key after the decline");
    assert_eq!(fake.charges_of(id), 1);
}

async fn a_lost_charge_answer_is_settled_by_a_retry_of_the_client(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    for (fault, status) in LOST_AFTER_THE_CHARGE {
        let id = app.create_latte().await;
        fake.fail_charges(&[fault]);
        let detail = assert_detail(pay(&app, id).await, status).await;
        assert!(
            detail.contains("paying again is safe"),
            "{fault:?}: {detail}"
        );
        assert_eq!(app.status_of(id).await, "created", "{fault:?}");
        assert_eq!(fake.charges_of(id), 1, "{fault:?}: payments did charge");
        let retried = pay(&app, id).await;
        assert_eq!(retried.status(), 200, "{fault:?}");
        assert_eq!(app.status_of(id).await, "progress", "{fault:?}");
        assert_eq!(fake.charges_of(id), 1, "{fault:?}: charged once");
        assert_eq!(fake.charge_keys_of(id), 1, "{fault:?}: one key");
    }
}

async fn a_lost_charge_answer_is_settled_by_the_reconciler_alone(backend: Backend) {
    let (app, fake) = spawn(backend, Some("200")).await;
    let mut orders = Vec::new();
    for (fault, status) in LOST_AFTER_THE_CHARGE {
        let id = app.create_latte().await;
        fake.fail_charges(&[fault]);
        assert_eq!(pay(&app, id).await.status(), status, "{fault:?}");
        orders.push(id);
    }
    for id in orders {
        reaches(&app, id, "progress").await;
        assert_eq!(fake.charges_of(id), 1);
        assert_eq!(fake.charge_keys_of(id), 1);
    }
}

/// Straight after a lost answer, the customer cancels, deletes or changes
/// the order: the open attempt is settled first, so the money is never
/// taken without an order or a refund that accounts for it, and an order
/// the customer asked to delete or change is never made.
async fn a_lost_charge_answer_then_cancel_delete_or_replace_keeps_the_money_accounted_for(
    backend: Backend,
) {
    let (app, fake) = spawn(backend, Some("200")).await;
    for (fault, _) in LOST_AFTER_THE_CHARGE {
        for action in ["cancel", "delete", "replace"] {
            let id = app.create_latte().await;
            fake.fail_charges(&[fault]);
            let _ = pay(&app, id).await;
            let answer = match action {
                "cancel" => cancel(&app, id).await,
                "delete" => app.delete(&format!("/orders/{id}")).await,
                _ => app.put_json(&format!("/orders/{id}"), &latte_order()).await,
            };
            let status = answer.status().as_u16();
            let case = format!("{fault:?} then {action}: {status}");
            match action {
                // The charge went through: cancelled, and refunded.
                "cancel" => {
                    assert_eq!(status, 200, "{case}");
                    assert_eq!(app.status_of(id).await, "cancelled", "{case}");
                    eventually(&case, async || fake.refunds_of(id) == 1).await;
                }
                // The charge went through while the customer asked to delete
                // the order: it is refunded, never made, and deleted.
                "delete" => {
                    assert_eq!(status, 204, "{case}");
                    eventually(&case, async || fake.refunds_of(id) == 1).await;
                    assert!(fake.schedule_of(id).is_none(), "{case}: never made");
                    assert_eq!(fake.charges_of(id), 1, "{case}");
                    continue;
                }
                // ... or to change it: the charge (for the old items) is
                // refunded, never made; the order is cancelled, and says so.
                _ => {
                    assert_eq!(status, 409, "{case}");
                    assert_eq!(app.status_of(id).await, "cancelled", "{case}");
                    eventually(&case, async || fake.refunds_of(id) == 1).await;
                    assert!(fake.schedule_of(id).is_none(), "{case}: never made");
                }
            }
            money_is_accounted_for(&app, &fake, id).await;
            assert_eq!(fake.refund_keys_of(id), fake.refunds_of(id), "{case}");
        }
    }
}

async fn a_pending_payment_answers_202_and_is_settled_and_scheduled_in_the_background(
    backend: Backend,
) {
    let (app, fake) = spawn(backend, Some("200")).await;
    fake.verdicts(&["pending"]);
    fake.pending_settles(2, "paid");
    let id = app.create_latte().await;
    let response = pay(&app, id).await;
    assert_eq!(response.status(), 202);
    assert!(response.headers().contains_key("retry-after"));
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "created");
    assert_eq!(order["id"], id.to_string());
    reaches(&app, id, "progress").await;
    assert_eq!(fake.charges_of(id), 1);
    assert_eq!(fake.charge_keys_of(id), 1, "asked again with the same key");
    assert!(fake.charge_calls() >= 3, "asked until it settled");
}

/// A charge whose answer was lost, then a delete: the delete settles the
/// open attempt first, and the charge that went through is owed back with
/// the cancellation (never scheduled); the refund outlives the order and is
/// delivered once, under one key, although its first two calls fail after
/// the money moved.
async fn a_paid_order_is_refunded_exactly_once_even_when_refunds_fail_first(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let id = app.create_latte().await;
    fake.fail_charges(&[Fault::Reset]);
    assert_eq!(pay(&app, id).await.status(), 502);
    assert_eq!(app.delete(&format!("/orders/{id}")).await.status(), 204);
    assert!(
        fake.schedule_of(id).is_none(),
        "the kitchen never heard of it"
    );
    fake.fail_refunds(&[Fault::ServerError, Fault::Reset]);
    let _reconciling = spawn_on(app.db.share(), &wired(&fake, Some("200"))).await;
    eventually("three refund calls", async || fake.refund_calls() >= 3).await;
    assert_eq!(fake.refunds_of(id), 1, "refunded once");
    assert_eq!(fake.refund_keys_of(id), 1, "one key for one refund");
    assert_eq!(fake.charges_of(id), 1);
}

async fn cancel_of_progress_and_the_kitchen_cancelling_by_itself_refund_once(backend: Backend) {
    let (app, fake) = spawn(backend, Some("200")).await;
    let by_customer = app.create_latte().await;
    let by_kitchen = app.create_latte().await;
    for id in [by_customer, by_kitchen] {
        assert_eq!(pay(&app, id).await.status(), 200);
    }
    fake.fail_refunds(&[Fault::ServerError, Fault::Unavailable]);
    assert_eq!(cancel(&app, by_customer).await.status(), 200);
    assert_eq!(fake.schedule_of(by_customer).unwrap().status, "cancelled");
    fake.kitchen_sets(by_kitchen, "cancelled");
    reaches(&app, by_kitchen, "cancelled").await;
    for id in [by_customer, by_kitchen] {
        eventually("the refund", async || fake.refunds_of(id) == 1).await;
        money_is_accounted_for(&app, &fake, id).await;
        assert_eq!(fake.refund_keys_of(id), 1);
    }
}

async fn a_lost_schedule_answer_then_cancel_drops_the_schedule_and_refunds(backend: Backend) {
    let (app, fake) = spawn(backend, Some("200")).await;
    let id = app.create_latte().await;
    fake.fail_schedules(&[Fault::Reset]);
    let detail = assert_detail(pay(&app, id).await, 502).await;
    assert!(detail.contains("kitchen"), "{detail}");
    assert_eq!(app.status_of(id).await, "paid");
    assert_eq!(
        fake.schedule_of(id).unwrap().status,
        "pending",
        "the kitchen has it"
    );
    let cancelled = cancel(&app, id).await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        fake.schedule_of(id).unwrap().status,
        "cancelled",
        "the kitchen was told"
    );
    eventually("the refund", async || fake.refunds_of(id) == 1).await;
    money_is_accounted_for(&app, &fake, id).await;
}

async fn a_lost_kitchen_cancel_answer_is_settled_by_a_retry(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let id = app.create_latte().await;
    assert_eq!(pay(&app, id).await.status(), 200);
    fake.fail_cancels(&[Fault::Reset]);
    fake.fail_status(&[Fault::Unavailable]);
    assert_detail(cancel(&app, id).await, 502).await;
    assert_eq!(app.status_of(id).await, "progress");
    // The kitchen cancelled it and now answers 404 to a second cancel; its
    // status says what happened.
    assert_eq!(cancel(&app, id).await.status(), 200);
    assert_eq!(app.status_of(id).await, "cancelled");
}

async fn the_kitchen_refusing_a_cancel_answers_409_and_finished_orders_are_dispatched(
    backend: Backend,
) {
    let (app, fake) = spawn(backend, Some("200")).await;
    let id = app.create_latte().await;
    assert_eq!(pay(&app, id).await.status(), 200);
    fake.refuse_cancels();
    let detail = assert_detail(cancel(&app, id).await, 409).await;
    assert!(detail.contains("kitchen"), "{detail}");
    assert_eq!(app.status_of(id).await, "progress");
    fake.kitchen_sets(id, "finished");
    reaches(&app, id, "dispatched").await;
    assert_eq!(fake.refunds_of(id), 0);
    money_is_accounted_for(&app, &fake, id).await;
}

async fn sigterm_waits_for_a_pay_whose_client_hung_up(backend: Backend) {
    let fake = Fake::start().await;
    let mut settings = wired(&fake, None);
    // Long enough that the held answer arrives well within the call.
    settings.push(("UPSTREAM_TIMEOUT_MS", "3000"));
    let mut app = spawn_app_with(backend, &settings).await;
    let id = app.create_latte().await;
    fake.fail_charges(&[Fault::Held]);
    app.pay_and_hang_up(id, Duration::from_millis(300)).await;
    assert_eq!(fake.charges_of(id), 1, "the charge is in flight");
    app.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.release_held();
    app.shut_down().await.unwrap();
    let after = spawn_on(app.db.share(), &[]).await;
    assert_eq!(
        after.status_of(id).await,
        "progress",
        "the charge was recorded (and the order scheduled) before exit"
    );
    assert_eq!(fake.charges_of(id), 1);
}

/// The service as a process of its own, so it can be killed outright.
pub(crate) struct Process {
    pub(crate) child: tokio::process::Child,
    pub(crate) address: String,
}

impl Process {
    async fn start(db_url: &str, fake: &Fake, reconcile_ms: &str) -> Self {
        Self::start_with(db_url, fake, reconcile_ms, &[]).await
    }

    pub(crate) async fn start_with(
        db_url: &str,
        fake: &Fake,
        reconcile_ms: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        use tokio::io::AsyncBufReadExt;
        // The test's own HTTP client needs it, as the service's does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_orders-service"))
            .envs(wired(fake, Some(reconcile_ms)))
            .env("DB_URL", db_url)
            .env("PORT", "0")
            .env("OPS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(extra.iter().copied())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the service starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
                .await
                .expect("the service logs its address")
                .unwrap()
                .expect("the service is running");
            let entry: Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["message"] == "listening" {
                let address = entry["address"].as_str().unwrap();
                let port = address.rsplit(':').next().unwrap();
                break format!("http://127.0.0.1:{port}");
            }
        };
        // Keep reading, so the service never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, address }
    }

    async fn status_of(&self, id: Uuid) -> String {
        let order: Value = reqwest::get(format!("{}/orders/{id}", self.address))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        order["status"].as_str().unwrap().to_owned()
    }
}

/// SIGKILL between the charge and its record: the attempt was committed
/// before the call, so the service started again settles it with the same
/// key, once the dead process's lease has run out.
async fn a_service_killed_during_a_charge_settles_it_once_when_started_again(backend: Backend) {
    let db = crate::helpers::TestDatabase::create(backend).await;
    db.migrate().await;
    let fake = Fake::start().await;
    let first = Process::start(&db.url, &fake, "3600000").await;
    let created: Value = reqwest::Client::new()
        .post(format!("{}/orders", first.address))
        .json(&latte_order())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    fake.fail_charges(&[Fault::Held]);
    let url = format!("{}/orders/{id}/pay", first.address);
    let paying = tokio::spawn(async move { reqwest::Client::new().post(url).send().await });
    eventually("the charge to reach payments", async || {
        fake.charges_of(id) == 1
    })
    .await;
    let mut first = first;
    first.child.kill().await.unwrap();
    assert!(
        paying.await.unwrap().is_err(),
        "the pay died with the process"
    );
    fake.release_held();

    let second = Process::start(&db.url, &fake, "200").await;
    assert_eq!(
        second.status_of(id).await,
        "created",
        "nothing was recorded"
    );
    eventually("the order to be settled and scheduled", async || {
        second.status_of(id).await == "progress"
    })
    .await;
    assert_eq!(fake.charges_of(id), 1);
    assert_eq!(fake.charge_keys_of(id), 1, "the same key was sent again");
}

/// Two replicas on one database with 50 charges whose answers were lost:
/// each is asked about once, each order scheduled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_make_each_upstream_call_once() {
    let (app, fake) = spawn(Backend::Postgres, None).await;
    let mut orders = Vec::new();
    for _ in 0..50 {
        let id = app.create_latte().await;
        fake.fail_charges(&[Fault::Reset]);
        assert_eq!(pay(&app, id).await.status(), 502);
        orders.push(id);
    }
    let calls_before = fake.charge_calls();
    assert_eq!(calls_before, 50);
    // Due now, rather than after the first service's hour-long backoff.
    let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("UPDATE payment_attempts SET next_try = next_try - interval '2 hours'")
        .execute(&mut conn)
        .await
        .unwrap();
    let settings = wired(&fake, Some("50"));
    let replicas = [
        spawn_on(app.db.share(), &settings).await,
        spawn_on(app.db.share(), &settings).await,
    ];
    for id in &orders {
        reaches(&replicas[0], *id, "progress").await;
    }
    assert_eq!(
        fake.charge_calls() - calls_before,
        50,
        "each open charge asked about once"
    );
    assert_eq!(fake.schedule_calls(), 50, "each order scheduled once");
    for id in orders {
        assert_eq!(fake.charges_of(id), 1);
    }
}

/// What cannot be settled stays, and `/metrics` shows it with its age.
async fn a_refund_that_keeps_failing_stays_owed_and_shows_in_metrics(backend: Backend) {
    let (app, fake) = spawn(backend, Some("100")).await;
    let id = app.create_latte().await;
    assert_eq!(pay(&app, id).await.status(), 200);
    fake.fail_refunds(&[Fault::Unavailable; 10_000]);
    assert_eq!(cancel(&app, id).await.status(), 200);
    let gauge = r#"orders_open_items{kind="refund"} 1"#;
    eventually("the refund owed in /metrics", async || {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.contains(gauge) && fake.refund_calls() >= 2
    })
    .await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"orders_reconciled_items_total{kind="refund",outcome="retry"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"orders_open_items{kind="charge"} 0"#),
        "{text}"
    );
    assert_eq!(fake.refunds_of(id), 0);
    // Nothing was dropped: once payments answers, the refund goes through.
    fake.heal();
    eventually("the refund", async || fake.refunds_of(id) == 1).await;
}

/// A batch's items wait behind each other's slow calls: each lease is
/// renewed just before its call, so no item is called on after another
/// replica could have claimed it, and no key is ever in flight twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_call_one_key_at_once_even_when_payments_is_slow() {
    let fake = Fake::start().await;
    let mut settings = wired(&fake, None);
    // Slow answers within the timeout; a batch outlasts one lease (3.6 s).
    settings.push(("UPSTREAM_TIMEOUT_MS", "1500"));
    let app = spawn_app_with(Backend::Postgres, &settings).await;
    let mut orders = Vec::new();
    for _ in 0..12 {
        let id = app.create_latte().await;
        fake.fail_charges(&[Fault::Reset]);
        assert_eq!(pay(&app, id).await.status(), 502);
        orders.push(id);
    }
    let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("UPDATE payment_attempts SET next_try = next_try - interval '2 hours'")
        .execute(&mut conn)
        .await
        .unwrap();
    fake.fail_charges(&[Fault::Delayed; 100]);
    let since = Instant::now();
    let mut replica = wired(&fake, Some("300"));
    replica.push(("UPSTREAM_TIMEOUT_MS", "1500"));
    let replicas = [
        spawn_on(app.db.share(), &replica).await,
        spawn_on(app.db.share(), &replica).await,
    ];
    for id in &orders {
        reaches(&replicas[0], *id, "progress").await;
        assert_eq!(fake.charges_of(*id), 1);
        assert_eq!(fake.charge_keys_of(*id), 1);
    }
    assert_eq!(
        fake.overlapping_charge_calls(since, crate::fakes::DELAYED),
        0
    );
    assert_eq!(
        fake.charge_calls(),
        12 + 12,
        "each open charge asked about once"
    );
}

/// A schedule request that never left (no connection to the kitchen could
/// be made) leaves the `paid` order cancellable directly. (A 503 does not:
/// see `ends.rs`.)
async fn a_paid_order_the_kitchen_never_heard_of_is_cancelled_directly(backend: Backend) {
    let (app, fake) = spawn(backend, None).await;
    let unreachable = {
        let settings = [
            ("PAYMENTS_URL", fake.url.as_str()),
            ("KITCHEN_URL", "http://127.0.0.1:9"),
            ("UPSTREAM_TIMEOUT_MS", "700"),
        ];
        spawn_on(app.db.share(), &settings).await
    };
    let refused = unreachable.create_latte().await;
    assert_eq!(pay(&unreachable, refused).await.status(), 503);
    fake.refuse_cancels();
    assert_eq!(unreachable.status_of(refused).await, "paid");
    assert_eq!(cancel(&unreachable, refused).await.status(), 200);
    assert_eq!(unreachable.status_of(refused).await, "cancelled");
    assert!(
        fake.schedule_of(refused).is_none(),
        "the kitchen never heard of it"
    );
}

/// The drain runs out (a client that never finishes its request): the
/// service still stops in order, without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_runs_out_still_stops_in_order() {
    use tokio::io::AsyncWriteExt;
    let mut app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("UPSTREAM_TIMEOUT_MS", "100"),
            ("DB_ACQUIRE_TIMEOUT_MS", "100"),
            ("REQUEST_TIMEOUT_MS", "1500"),
            ("SHUTDOWN_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(address).await.unwrap();
    stuck
        .write_all(b"GET /orders HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::spawn(async move { app.shut_down().await }).await;
    assert!(stopped.is_ok(), "shutdown panicked: {stopped:?}");
    drop(stuck);
}

both_backends!(
    a_decline_then_a_new_pay_charges_once_under_a_new_key,
    a_lost_charge_answer_is_settled_by_a_retry_of_the_client,
    a_lost_charge_answer_is_settled_by_the_reconciler_alone,
    a_lost_charge_answer_then_cancel_delete_or_replace_keeps_the_money_accounted_for,
    a_pending_payment_answers_202_and_is_settled_and_scheduled_in_the_background,
    a_paid_order_is_refunded_exactly_once_even_when_refunds_fail_first,
    cancel_of_progress_and_the_kitchen_cancelling_by_itself_refund_once,
    a_lost_schedule_answer_then_cancel_drops_the_schedule_and_refunds,
    a_lost_kitchen_cancel_answer_is_settled_by_a_retry,
    the_kitchen_refusing_a_cancel_answers_409_and_finished_orders_are_dispatched,
    sigterm_waits_for_a_pay_whose_client_hung_up,
    a_service_killed_during_a_charge_settles_it_once_when_started_again,
    a_refund_that_keeps_failing_stays_owed_and_shows_in_metrics,
    a_paid_order_the_kitchen_never_heard_of_is_cancelled_directly,
);
