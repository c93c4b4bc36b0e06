//! Every order and every payment reaches an end: a kitchen left in doubt
//! is asked before any refund, refusals are final, and what nobody can
//! settle is raised for an operator. Each scenario asserts what became of
//! the money (charges and refunds by key) and of the goods (schedules made
//! and cancelled), on both backends, against the fakes.

use crate::fakes::Fault;
use crate::faults::{cancel, eventually, money_is_accounted_for, pay, spawn, wired};
use crate::helpers::{Backend, assert_detail, spawn_on};

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

both_backends!(
    a_kitchen_in_doubt_is_asked_before_any_refund,
    a_kitchen_503_is_never_taken_for_not_sent,
);
