//! Behaviour decided before any query: routing, the middleware stack, body
//! and path parsing, and the documentation. Driven through the router
//! in-process, with a database that is never reached.

use axum::body::Body;
use serde_json::{Value, json};

use crate::helpers::{InProcess, assert_detail, assert_validation, latte_order, request};

const JSON: Option<&str> = Some("application/json");
const SOME_ORDER: &str = "/orders/6f1e2a34-0000-4000-8000-000000000000";

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = InProcess::new(&[]).await;
    assert_eq!(
        assert_detail(app.call("GET", "/nope").await, 404).await,
        "Not Found"
    );
    assert_eq!(
        assert_detail(app.call("GET", "/orders/").await, 404).await,
        "Not Found"
    );
    let patch = app.call("PATCH", "/orders").await;
    let allow = patch.header("allow").to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(assert_detail(patch, 405).await, "Method Not Allowed");
    assert_detail(app.call("POST", SOME_ORDER).await, 405).await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let app = InProcess::new(&[]).await;
    let response = app.call("GET", "/nope").await;
    let generated = response.header("x-request-id");
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let echoed = app
        .send(
            request("GET", "/nope")
                .header("x-request-id", "trace-me-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), "trace-me-42");
}

#[tokio::test]
async fn cors_preflight_is_answered_for_any_origin_by_default() {
    let app = InProcess::new(&[]).await;
    let response = app
        .send(
            request("OPTIONS", "/orders")
                .header("origin", "https://shop.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), "*");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = InProcess::new(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://shop.example, https://admin.example",
    )])
    .await;
    let preflight = |origin: &'static str| {
        app.send(
            request("OPTIONS", "/orders")
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .body(Body::empty())
                .unwrap(),
        )
    };
    let allowed = preflight("https://admin.example").await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        "https://admin.example"
    );
    let refused = preflight("https://evil.example").await;
    assert!(refused.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn create_refuses_bodies_that_are_not_json() {
    let app = InProcess::new(&[]).await;
    let order = latte_order().to_string();
    let plain = app
        .call_with("POST", "/orders", Some("text/plain"), order.clone())
        .await;
    assert!(assert_detail(plain, 415).await.contains("application/json"));
    let untyped = app.call_with("POST", "/orders", None, order.clone()).await;
    assert_detail(untyped, 415).await;
    let compressed = app
        .send(
            request("POST", "/orders")
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(Body::from(order))
                .unwrap(),
        )
        .await;
    assert_detail(compressed, 415).await;

    for broken in [
        "{\"order\": [",
        "not json",
        "{\"order\": [{\"product\": \"latte\",}]}",
    ] {
        let errors = assert_validation(app.call_with("POST", "/orders", JSON, broken).await).await;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0[0], "body");
        assert_eq!(errors[0].1, "json_invalid", "{broken}");
    }

    let empty = app.call_with("POST", "/orders", JSON, "").await;
    assert_eq!(
        assert_validation(empty).await,
        vec![(json!(["body"]), "missing".to_owned())]
    );
}

#[tokio::test]
async fn create_refuses_a_body_over_the_limit_with_413() {
    let app = InProcess::new(&[]).await;
    let huge = json!({"order": [{"product": "x".repeat(100_000), "size": "small"}]});
    let response = app
        .call_with("POST", "/orders", JSON, huge.to_string())
        .await;
    let detail = assert_detail(response, 413).await;
    assert!(detail.contains("large"), "{detail}");
}

#[tokio::test]
async fn every_order_path_answers_422_for_an_id_that_is_not_a_uuid() {
    let app = InProcess::new(&[]).await;
    let expected = vec![(json!(["path", "order_id"]), "uuid_parsing".to_owned())];
    let order = latte_order().to_string();
    for bad in ["123", "not-a-uuid", "6f1e2a34-0000-4000-8000-00000000000g"] {
        let path = format!("/orders/{bad}");
        for (method, uri) in [
            ("GET", path.clone()),
            ("DELETE", path.clone()),
            ("POST", format!("{path}/pay")),
            ("POST", format!("{path}/cancel")),
        ] {
            assert_eq!(
                assert_validation(app.call(method, &uri).await).await,
                expected,
                "{method} {uri}"
            );
        }
        let put = app.call_with("PUT", &path, JSON, order.clone()).await;
        assert_eq!(assert_validation(put).await, expected);
    }
}

#[tokio::test]
async fn the_document_and_swagger_ui_are_served() {
    let app = InProcess::new(&[]).await;
    let served: Value = app.call("GET", "/openapi/orders.json").await.json();
    let generated = serde_json::to_value(orders_service::http::docs::openapi()).unwrap();
    assert_eq!(served, generated);

    let redirect = app.call("GET", "/docs/orders").await;
    assert_eq!(redirect.status, 303);
    assert_eq!(redirect.header("location"), "/docs/orders/");
    let page = app.call("GET", "/docs/orders/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("swagger-ui"));
    let init = app
        .call("GET", "/docs/orders/swagger-initializer.js")
        .await
        .text();
    assert!(init.contains("/openapi/orders.json"), "{init}");
}
