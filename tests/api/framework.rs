//! Rejections produced by the framework rather than the handlers.

use crate::helpers::{Backend, assert_detail, spawn_app};

async fn unknown_routes_and_methods_answer_json(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        assert_detail(app.get("/nope").await, 404).await,
        "Not Found"
    );
    assert_eq!(
        assert_detail(app.get("/orders/").await, 404).await,
        "Not Found"
    );
    let patch = app.client.patch(app.url("/orders")).send().await.unwrap();
    let allow = patch.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(assert_detail(patch, 405).await, "Method Not Allowed");
    let id = app.create_latte().await;
    let post = app.post(&format!("/orders/{id}")).await;
    assert_detail(post, 405).await;
}

async fn every_response_carries_a_request_id_and_echoes_the_callers(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/orders").await;
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}

async fn cors_preflight_is_answered_for_any_origin_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/orders"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

both_backends!(
    unknown_routes_and_methods_answer_json,
    every_response_carries_a_request_id_and_echoes_the_callers,
    cors_preflight_is_answered_for_any_origin_by_default,
);

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = crate::helpers::spawn_app_with(
        Backend::Sqlite,
        &[(
            "CORS_ALLOWED_ORIGINS",
            "https://shop.example, https://admin.example",
        )],
    )
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let allowed = preflight("https://admin.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://admin.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
