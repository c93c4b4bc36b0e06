//! `POST {PAYMENTS_URL}/payments` (charge an order) and
//! `POST {PAYMENTS_URL}/payments/{payment_id}/refunds`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use tracing::field::display;

use super::{
    IDEMPOTENCY_KEY, Service, UpstreamError, call_span, expect_json, join, refusal, send, traced,
};
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

/// The payments service's answer to a charge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payment {
    #[serde(rename = "payment_id")]
    pub id: Uuid,
    pub status: PaymentStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundStatus {
    /// The money went back.
    Refunded,
    /// Not done yet: ask again later with the same key.
    Pending,
}

/// The payments service's answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refund {
    #[serde(rename = "refund_id")]
    pub id: Uuid,
    pub status: RefundStatus,
}

#[async_trait]
pub trait Payments: Send + Sync {
    /// Charges the customer for the order. `key` identifies this attempt:
    /// payments answers the same way to every call with the same key, so a
    /// call whose answer was lost can be repeated without charging twice.
    async fn charge(&self, order_id: OrderId, key: Uuid) -> Result<Payment, UpstreamError>;

    /// Gives a charge back; `key` identifies this refund the same way.
    /// [`UpstreamError::Refused`] is payments' final refusal (400, 404 or
    /// 422): sending it again will not make the refund.
    async fn refund(&self, payment_id: Uuid, key: Uuid) -> Result<Refund, UpstreamError>;
}

/// Payments will not make this refund, whatever it is retried with.
fn refuses_to_refund(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 404 | 422)
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
    async fn charge(&self, order_id: OrderId, key: Uuid) -> Result<Payment, UpstreamError> {
        let span = call_span(Service::Payments, "POST", "/payments");
        span.record("order.id", display(order_id));
        span.record("payment.attempt_key", display(key));
        traced(span.clone(), async {
            let response = send(
                self.client
                    .post(join(&self.base_url, "/payments"))
                    .header(IDEMPOTENCY_KEY, key.to_string())
                    .json(&json!({ "order_id": order_id })),
            )
            .await?;
            let payment: Payment = expect_json(response, reqwest::StatusCode::CREATED).await?;
            span.record("payment.id", display(payment.id));
            Ok(payment)
        })
        .await
    }

    async fn refund(&self, payment_id: Uuid, key: Uuid) -> Result<Refund, UpstreamError> {
        let span = call_span(Service::Payments, "POST", "/payments/{payment_id}/refunds");
        span.record("payment.id", display(payment_id));
        traced(span, async {
            let response = send(
                self.client
                    .post(join(
                        &self.base_url,
                        &format!("/payments/{payment_id}/refunds"),
                    ))
                    .header(IDEMPOTENCY_KEY, key.to_string()),
            )
            .await?;
            if refuses_to_refund(response.status()) {
                return Err(refusal(response).await);
            }
            expect_json(response, reqwest::StatusCode::CREATED).await
        })
        .await
    }
}
