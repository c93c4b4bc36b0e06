use std::sync::Arc;

use crate::lifecycle::OrderLifecycle;
use crate::readiness::Readiness;
use crate::repository::OrdersRepository;

/// Shared by every handler. One reference count for all of it: axum
/// clones the state for every extractor that takes it, and a count per
/// field was a handful of atomic increments and decrements a request, on
/// cache lines every worker thread writes.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub repo: OrdersRepository,
    pub lifecycle: Arc<OrderLifecycle>,
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `None` when `AUTH_ON` is false: every caller is `test`.
    pub authenticator: Option<Arc<crate::auth::Authenticator>>,
    /// Echoed in 413 responses.
    pub max_body_bytes: usize,
    /// How long an `Idempotency-Key` of `POST /orders` is remembered.
    pub idempotency_key_ttl: std::time::Duration,
    /// Pays and cancels run here, detached from their requests, so that a
    /// client hanging up cannot cut one off between a call and its record,
    /// and shutdown waits for them.
    pub tasks: tokio_util::task::TaskTracker,
}
