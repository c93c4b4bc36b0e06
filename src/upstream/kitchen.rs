//! `POST {KITCHEN_URL}/kitchen/schedules` and `.../{id}/cancel`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{UpstreamError, expect_json, join};
use crate::domain::{OrderId, OrderItems, Size};

#[async_trait]
pub trait Kitchen: Send + Sync {
    /// Asks the kitchen to make the items; returns the schedule's id.
    async fn schedule(&self, order_id: OrderId, items: &OrderItems) -> Result<Uuid, UpstreamError>;
    /// Asks the kitchen to drop a schedule; `Ok` only once it confirmed.
    async fn cancel(&self, schedule_id: Uuid) -> Result<(), UpstreamError>;
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
        let response = self
            .client
            .post(join(&self.base_url, "/kitchen/schedules"))
            .header("Idempotency-Key", order_id.to_string())
            .json(&body)
            .send()
            .await?;
        let schedule: Schedule = expect_json(response, reqwest::StatusCode::CREATED).await?;
        Ok(schedule.id)
    }

    async fn cancel(&self, schedule_id: Uuid) -> Result<(), UpstreamError> {
        let response = self
            .client
            .post(join(
                &self.base_url,
                &format!("/kitchen/schedules/{schedule_id}/cancel"),
            ))
            .send()
            .await?;
        match response.status() {
            reqwest::StatusCode::OK => Ok(()),
            reqwest::StatusCode::SERVICE_UNAVAILABLE => Err(UpstreamError::Unavailable),
            other => Err(UpstreamError::BadResponse(format!(
                "refused to cancel the schedule: answered {other}"
            ))),
        }
    }
}
