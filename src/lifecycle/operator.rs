//! The operator's part: the list of what is open or raised, trying an
//! order's items again now, and ending a raised item by hand. Every action
//! is logged (target `audit`); an end is also stored with its time.

use tokio_util::sync::CancellationToken;

use super::{LifecycleError, OrderLifecycle, Result};
use crate::domain::OrderId;
use crate::repository::{Resolution, StuckItem};

impl OrderLifecycle {
    /// Every item that is open or needs attention, oldest first.
    pub async fn stuck(&self) -> Result<Vec<StuckItem>> {
        Ok(self.repo.stuck(None).await?)
    }

    /// Tries the order's open items now, raised ones included (the raise
    /// lapses; one that fails again is raised again once past the bound),
    /// and returns what is still open of it.
    pub async fn retry_now(&self, id: OrderId) -> Result<Vec<StuckItem>> {
        if self.repo.stuck(Some(id)).await?.is_empty() {
            return Err(LifecycleError::NothingOpen);
        }
        self.repo.retry_now(id).await?;
        tracing::warn!(target: "audit", order_id = %id, "operator: the order's open items are tried now");
        self.reconcile_once(&CancellationToken::new()).await;
        Ok(self.repo.stuck(Some(id)).await?)
    }

    /// Ends the order's raised item that `resolution` ends, and stores the
    /// end with `note` and its time; returns the item's kind.
    pub async fn resolve(
        &self,
        id: OrderId,
        resolution: Resolution,
        note: &str,
    ) -> Result<&'static str> {
        match self.repo.resolve(id, resolution, note).await? {
            Some(kind) => {
                tracing::warn!(target: "audit", order_id = %id, kind,
                    resolution = resolution.as_str(), note, "operator: needs_attention item ended");
                Ok(kind)
            }
            None => Err(LifecycleError::NothingToResolve(resolution)),
        }
    }
}
