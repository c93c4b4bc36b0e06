//! Paying for and cancelling orders (DESIGN §2).
//!
//! The upstream services sit behind traits so tests and other transports
//! can stand in for the HTTP clients.

use std::sync::Arc;

use crate::domain::status::{Cancellation, PaymentStep};
use crate::domain::{Order, OrderId, OrderStatus};
use crate::http::error::{ApiError, Upstream};
use crate::repository::{OrdersRepository, RepositoryError};

/// Moves orders through their lifecycle.
pub struct OrderLifecycle {
    repo: OrdersRepository,
}

impl OrderLifecycle {
    pub fn new(repo: OrdersRepository) -> Self {
        Self { repo }
    }

    pub async fn pay(&self, owner: &str, id: OrderId) -> Result<Order, ApiError> {
        let order = self.repo.get(owner, id).await?;
        match order.status.payment_step() {
            PaymentStep::Refused => Err(ApiError::refused("pay", order.status)),
            PaymentStep::Charge => Err(ApiError::UpstreamNotConfigured(Upstream::Payments)),
            PaymentStep::Schedule => Err(ApiError::UpstreamNotConfigured(Upstream::Kitchen)),
        }
    }

    pub async fn cancel(&self, owner: &str, id: OrderId) -> Result<Order, ApiError> {
        let order = self.repo.get(owner, id).await?;
        match order.status.cancellation() {
            Cancellation::Refused => Err(ApiError::refused("cancel", order.status)),
            Cancellation::ThroughKitchen => Err(ApiError::UpstreamNotConfigured(Upstream::Kitchen)),
            Cancellation::Direct => {
                let from: Vec<OrderStatus> = OrderStatus::directly_cancellable().collect();
                self.repo
                    .transition(owner, id, &from, OrderStatus::Cancelled)
                    .await
                    .map_err(|err| match err {
                        RepositoryError::Conflict { current } => {
                            ApiError::refused("cancel", current)
                        }
                        other => other.into(),
                    })
            }
        }
    }
}

/// Shared so the state can hand one lifecycle to every request.
pub type SharedLifecycle = Arc<OrderLifecycle>;
