//! Fake payments and kitchen services: real HTTP servers (wiremock).

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Backend, TestApp, spawn_app_with};

pub struct Upstreams {
    pub payments: MockServer,
    pub kitchen: MockServer,
}

/// A service wired to fresh fake upstreams (which answer 404 until mounted).
pub async fn spawn_with_upstreams(backend: Backend) -> (TestApp, Upstreams) {
    spawn_with_upstreams_and(backend, &[]).await
}

/// For tests that hold an upstream's answer on purpose to keep a call in
/// flight: the delay stays far from the timeout, so a busy machine cannot
/// turn "slow" into "timed out" (3 × 5 s plus the database waits still fit
/// the default request timeout).
pub async fn spawn_with_patient_upstreams(backend: Backend) -> (TestApp, Upstreams) {
    spawn_with_upstreams_and(backend, &[("UPSTREAM_TIMEOUT_MS", "5000")]).await
}

pub async fn spawn_with_upstreams_and(
    backend: Backend,
    extra: &[(&str, &str)],
) -> (TestApp, Upstreams) {
    let payments = MockServer::start().await;
    let kitchen = MockServer::start().await;
    let (payments_url, kitchen_url) = (payments.uri(), kitchen.uri());
    let mut settings = vec![
        ("PAYMENTS_URL", payments_url.as_str()),
        ("KITCHEN_URL", kitchen_url.as_str()),
        ("UPSTREAM_TIMEOUT_MS", "700"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(backend, &settings).await;
    (app, Upstreams { payments, kitchen })
}

pub fn payment(status: &str) -> ResponseTemplate {
    ResponseTemplate::new(201)
        .set_body_json(json!({"payment_id": Uuid::new_v4(), "status": status}))
}

pub fn schedule() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "id": Uuid::new_v4(),
        "scheduled": "2026-11-25T10:00:00Z",
        "status": "pending",
        "order": [{"product": "latte", "size": "small", "quantity": 2}],
    }))
}

impl Upstreams {
    pub async fn payments_answer(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/payments"))
            .respond_with(response)
            .mount(&self.payments)
            .await;
    }

    pub async fn kitchen_schedules(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/kitchen/schedules"))
            .respond_with(response)
            .mount(&self.kitchen)
            .await;
    }

    pub async fn kitchen_cancels(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path_regex(r"^/kitchen/schedules/[0-9a-f-]{36}/cancel$"))
            .respond_with(response)
            .mount(&self.kitchen)
            .await;
    }

    /// Both services answer as they should.
    pub async fn all_well(&self) {
        self.payments_answer(payment("paid")).await;
        self.kitchen_schedules(schedule()).await;
        self.kitchen_cancels(ResponseTemplate::new(200).set_body_json(json!({})))
            .await;
    }

    pub async fn charges(&self) -> usize {
        count(&self.payments, "/payments").await
    }

    pub async fn schedules(&self) -> usize {
        count(&self.kitchen, "/kitchen/schedules").await
    }
}

async fn count(server: &MockServer, wanted: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == wanted)
        .count()
}

/// A response slow enough to trip `UPSTREAM_TIMEOUT_MS` (700 ms in tests).
pub fn too_slow(response: ResponseTemplate) -> ResponseTemplate {
    response.set_delay(Duration::from_millis(1_500))
}
