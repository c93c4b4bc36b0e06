use orders_service::domain::OrderStatus;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, assert_validation, spawn_app};

async fn ids(app: &TestApp, path: &str) -> Vec<Uuid> {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "only `orders`: {body}");
    body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// The path of the `rel="next"` link, if any.
fn next_link(response: &reqwest::Response) -> Option<String> {
    let link = response.headers().get("link")?.to_str().unwrap();
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    Some(link[1..link.find('>').unwrap()].to_owned())
}

async fn list_is_empty_then_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let empty: Value = app.get("/orders").await.json().await.unwrap();
    assert_eq!(empty, json!({"orders": []}));
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.create_latte().await);
    }
    created.reverse();
    assert_eq!(ids(&app, "/orders").await, created);
    let first: Value = app.get("/orders").await.json().await.unwrap();
    assert_eq!(
        first["orders"][0]["order"][0]["quantity"], 2,
        "items are included"
    );
}

async fn list_filters_on_cancelled(backend: Backend) {
    let app = spawn_app(backend).await;
    let kept = app.create_latte().await;
    let cancelled = app.create_latte().await;
    let paid = app.create_latte().await;
    app.force_status(cancelled, OrderStatus::Cancelled).await;
    app.force_status(paid, OrderStatus::Paid).await;

    assert_eq!(ids(&app, "/orders?cancelled=true").await, vec![cancelled]);
    assert_eq!(ids(&app, "/orders?cancelled=false").await, vec![paid, kept]);
    assert_eq!(ids(&app, "/orders").await, vec![paid, cancelled, kept]);
    assert_eq!(
        ids(&app, "/orders?cancelled=1&limit=5").await,
        vec![cancelled]
    );
}

async fn list_limit_pages_and_the_cursor_walks_every_order_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut all = Vec::new();
    for _ in 0..7 {
        all.push(app.create_latte().await);
    }
    all.reverse();
    assert_eq!(ids(&app, "/orders?limit=3").await, all[..3]);

    let mut walked = Vec::new();
    let mut path = Some("/orders?limit=3".to_owned());
    let mut pages = 0;
    while let Some(current) = path {
        let response = app.get(&current).await;
        assert_eq!(response.status(), 200);
        path = next_link(&response);
        let body: Value = response.json().await.unwrap();
        walked.extend(
            body["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        pages += 1;
        if pages == 2 {
            // An order placed while walking does not disturb the walk.
            app.create_latte().await;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(walked, all);

    // A full last page with nothing after it has no next link.
    let response = app.get("/orders?limit=8").await;
    assert_eq!(next_link(&response), None);
}

async fn list_cursor_keeps_the_filter(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut cancelled = Vec::new();
    for i in 0..5 {
        let id = app.create_latte().await;
        if i % 2 == 0 {
            app.force_status(id, OrderStatus::Cancelled).await;
            cancelled.push(id);
        }
    }
    cancelled.reverse();
    let first = app.get("/orders?cancelled=true&limit=2").await;
    let next = next_link(&first).expect("a second page");
    assert!(next.contains("cancelled=true"), "{next}");
    let mut walked = ids(&app, "/orders?cancelled=true&limit=2").await;
    walked.extend(ids(&app, &next).await);
    assert_eq!(walked, cancelled);
}

async fn list_rejects_bad_query_values_and_caps_the_limit(backend: Backend) {
    let app = spawn_app(backend).await;
    for (query, name, kind) in [
        ("limit=0", "limit", "greater_than_equal"),
        ("limit=-5", "limit", "greater_than_equal"),
        ("limit=ten", "limit", "int_parsing"),
        ("limit=1.5", "limit", "int_parsing"),
        ("limit=9223372036854775808", "limit", "int_parsing"),
        ("limit=", "limit", "int_parsing"),
        ("cancelled=maybe", "cancelled", "bool_parsing"),
        ("cancelled=", "cancelled", "bool_parsing"),
        ("cursor=abc", "cursor", "value_error"),
    ] {
        let errors = assert_validation(app.get(&format!("/orders?{query}")).await).await;
        assert_eq!(
            errors,
            vec![(json!(["query", name]), kind.to_owned())],
            "{query}"
        );
    }
    for _ in 0..3 {
        app.create_latte().await;
    }
    assert_eq!(ids(&app, "/orders?limit=1000").await.len(), 3);
    assert_eq!(
        ids(&app, "/orders?limit=9223372036854775807").await.len(),
        3
    );
    assert_eq!(ids(&app, "/orders?unknown=1").await.len(), 3);
    // Any well-formed cursor is a position, even one no page produced.
    assert_eq!(
        ids(&app, &format!("/orders?cursor={}", "f".repeat(48)))
            .await
            .len(),
        3
    );
    assert_eq!(
        ids(&app, &format!("/orders?cursor={}", "0".repeat(48)))
            .await
            .len(),
        0
    );
}

both_backends!(
    list_is_empty_then_newest_first,
    list_filters_on_cancelled,
    list_limit_pages_and_the_cursor_walks_every_order_once,
    list_cursor_keeps_the_filter,
    list_rejects_bad_query_values_and_caps_the_limit,
);
