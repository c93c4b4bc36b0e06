//! `POST {KITCHEN_URL}/kitchen/schedules`, `GET .../{id}/status` and
//! `POST .../{id}/cancel`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use tracing::field::display;

use super::{
    IDEMPOTENCY_KEY, Service, UpstreamError, call_span, expect_json, join, refusal, send, traced,
    unexpected,
};
use crate::domain::{OrderId, OrderItems, Size};

/// Where the kitchen says a schedule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleStatus {
    Pending,
    Progress,
    Cancelled,
    Finished,
}

/// What the kitchen made of a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// 200: the schedule is dropped.
    Cancelled,
    /// 409: too late, the kitchen can no longer cancel.
    Refused,
    /// 404: the kitchen does not know the schedule (any more): only its
    /// status tells whether an earlier cancel went through.
    Unknown,
}

#[async_trait]
pub trait Kitchen: Send + Sync {
    /// Asks the kitchen to make the items; returns the schedule's id. The
    /// order id is the idempotency key: a repeat returns the same schedule.
    /// [`UpstreamError::Refused`] is the kitchen's final refusal.
    async fn schedule(&self, order_id: OrderId, items: &OrderItems) -> Result<Uuid, UpstreamError>;
    /// Where the schedule is now.
    async fn status(&self, schedule_id: Uuid) -> Result<ScheduleStatus, UpstreamError>;
    /// Asks the kitchen to drop a schedule.
    async fn cancel(&self, schedule_id: Uuid, key: Uuid) -> Result<CancelOutcome, UpstreamError>;
}

#[derive(Serialize)]
struct ScheduleItem<'a> {
    product: &'a str,
    size: Size,
    quantity: u32,
}

#[derive(Serialize)]
struct ScheduleRequest<'a> {
    order: Vec<ScheduleItem<'a>>,
}

/// The fields of the kitchen's answer this service relies on; checked so a
/// misbehaving kitchen is reported rather than trusted.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Schedule {
    id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    scheduled: OffsetDateTime,
}

#[derive(Deserialize)]
struct StatusAnswer {
    status: ScheduleStatus,
}

/// A 4xx to a schedule request is the kitchen's final word that it will
/// not make the order, except 409 (a duplicate of a request it has: it may
/// be making it) and 429 (try later).
fn refuses_to_schedule(status: reqwest::StatusCode) -> bool {
    status.is_client_error()
        && status != reqwest::StatusCode::CONFLICT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
}

pub struct KitchenClient {
    client: reqwest::Client,
    base_url: String,
}

impl KitchenClient {
    pub fn new(client: reqwest::Client, base_url: impl Into<String>) -> Self {
        Self {
            client,
            base_url: base_url.into(),
        }
    }

    fn url(&self, schedule_id: Uuid, action: &str) -> String {
        join(
            &self.base_url,
            &format!("/kitchen/schedules/{schedule_id}/{action}"),
        )
    }
}

#[async_trait]
impl Kitchen for KitchenClient {
    async fn schedule(&self, order_id: OrderId, items: &OrderItems) -> Result<Uuid, UpstreamError> {
        let body = ScheduleRequest {
            order: items
                .as_slice()
                .iter()
                .map(|item| ScheduleItem {
                    product: item.product.as_str(),
                    size: item.size,
                    quantity: item.quantity.get(),
                })
                .collect(),
        };
        let span = call_span(Service::Kitchen, "POST", "/kitchen/schedules");
        span.record("order.id", display(order_id));
        traced(span.clone(), async {
            let response = send(
                self.client
                    .post(join(&self.base_url, "/kitchen/schedules"))
                    .header(IDEMPOTENCY_KEY, order_id.to_string())
                    .json(&body),
            )
            .await?;
            if refuses_to_schedule(response.status()) {
                return Err(refusal(response).await);
            }
            let schedule: Schedule = expect_json(response, reqwest::StatusCode::CREATED).await?;
            span.record("kitchen.schedule_id", display(schedule.id));
            Ok(schedule.id)
        })
        .await
    }

    async fn status(&self, schedule_id: Uuid) -> Result<ScheduleStatus, UpstreamError> {
        let span = call_span(
            Service::Kitchen,
            "GET",
            "/kitchen/schedules/{schedule_id}/status",
        );
        span.record("kitchen.schedule_id", display(schedule_id));
        traced(span, async {
            let response = send(self.client.get(self.url(schedule_id, "status"))).await?;
            let answer: StatusAnswer = expect_json(response, reqwest::StatusCode::OK).await?;
            Ok(answer.status)
        })
        .await
    }

    async fn cancel(&self, schedule_id: Uuid, key: Uuid) -> Result<CancelOutcome, UpstreamError> {
        let span = call_span(
            Service::Kitchen,
            "POST",
            "/kitchen/schedules/{schedule_id}/cancel",
        );
        span.record("kitchen.schedule_id", display(schedule_id));
        traced(span, async {
            let response = send(
                self.client
                    .post(self.url(schedule_id, "cancel"))
                    .header(IDEMPOTENCY_KEY, key.to_string()),
            )
            .await?;
            match response.status() {
                reqwest::StatusCode::OK => {
                    // The body is not read: any body, or none, confirms.
                    Ok(CancelOutcome::Cancelled)
                }
                reqwest::StatusCode::CONFLICT => Ok(CancelOutcome::Refused),
                reqwest::StatusCode::NOT_FOUND => Ok(CancelOutcome::Unknown),
                other => Err(unexpected(other)),
            }
        })
        .await
    }
}
