use crate::helpers::Backend;
use crate::upstreams::spawn_with_upstreams;

async fn metrics_count_requests_by_route_template_and_upstream_calls(backend: Backend) {
    let (app, upstreams) = spawn_with_upstreams(backend).await;
    upstreams.all_well().await;
    let id = app.create_latte().await;
    app.get(&format!("/orders/{id}")).await;
    app.get("/orders/6f1e2a34-0000-4000-8000-000000000000")
        .await;
    app.post(&format!("/orders/{id}/pay")).await;
    app.get("/nope").await;
    let odd = reqwest::Method::from_bytes(b"XMETHOD").unwrap();
    app.client
        .request(odd, app.url("/orders"))
        .send()
        .await
        .unwrap();

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"orders_http_requests_total{method="GET",route="/orders/{order_id}",status="200"} 1"#,
        r#"orders_http_requests_total{method="GET",route="/orders/{order_id}",status="404"} 1"#,
        r#"orders_http_requests_total{method="POST",route="/orders",status="201"} 1"#,
        r#"orders_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"orders_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/orders/{order_id}/pay"} 1"#,
        r#"orders_upstream_calls_total{service="payments",outcome="ok"} 1"#,
        r#"orders_upstream_calls_total{service="kitchen",outcome="ok"} 1"#,
        r#"orders_db_pool_connections{state="in_use"}"#,
        r#"orders_db_pool_connections{state="idle"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains(&id.to_string()), "no raw ids in labels");
    assert!(
        text.contains(r#"method="other""#),
        "unknown methods share a series"
    );
    assert!(!text.contains("XMETHOD"));
}

both_backends!(metrics_count_requests_by_route_template_and_upstream_calls);
