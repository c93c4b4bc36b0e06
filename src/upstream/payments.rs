//! `POST {PAYMENTS_URL}/payments`: charge an order.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{UpstreamError, expect_json, join};
use crate::domain::OrderId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// Declined.
    Invalid,
    /// The charge went through.
    Paid,
    /// Not decided yet: no money has moved.
    Pending,
}

/// The payments service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payment {
    #[serde(rename = "payment_id")]
    pub id: Uuid,
    pub status: PaymentStatus,
}

#[async_trait]
pub trait Payments: Send + Sync {
    /// Charges the customer for the order. The order id doubles as the
    /// idempotency key, so a retried charge is never charged twice by a
    /// payments service that honours it.
    async fn charge(&self, order_id: OrderId) -> Result<Payment, UpstreamError>;
}

pub struct PaymentsClient {
    client: reqwest::Client,
    base_url: String,
}

impl PaymentsClient {
    pub fn new(client: reqwest::Client, base_url: impl Into<String>) -> Self {
        Self {
            client,
            base_url: base_url.into(),
        }
    }
}

#[async_trait]
impl Payments for PaymentsClient {
    async fn charge(&self, order_id: OrderId) -> Result<Payment, UpstreamError> {
        let response = self
            .client
            .post(join(&self.base_url, "/payments"))
            .header("Idempotency-Key", order_id.to_string())
            .json(&json!({ "order_id": order_id }))
            .send()
            .await?;
        expect_json(response, reqwest::StatusCode::CREATED).await
    }
}
