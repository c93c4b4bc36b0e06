//! What moving an order can end in, named by meaning. The HTTP layer alone
//! decides which status code and which sentence each one becomes.

use uuid::Uuid;

use crate::domain::OrderStatus;
use crate::repository::{RepositoryError, Resolution};
use crate::upstream::{Service, UpstreamError};

/// What a client asked to do with an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pay,
    Cancel,
    Replace,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pay => "pay",
            Action::Cancel => "cancel",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
}

/// What another request holding the order is doing, when it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Paying,
    Cancelling,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such order for this owner (another owner's order is not found either).
    #[error("order not found")]
    NotFound,
    /// The order's status does not allow the action.
    #[error("cannot {} an order that is {}", action.as_str(), status.as_str())]
    Refused { action: Action, status: OrderStatus },
    /// Another request holds the order; worth retrying shortly. `None` when
    /// only the lease, not its purpose, was seen.
    #[error("another request holds the order")]
    /// (With how long the holder's lease lasts at most, when known.)
    Busy(Option<Activity>, Option<std::time::Duration>),
    /// The service the action needs has no URL configured; checked before
    /// anything is sent, so nothing happened.
    #[error("{} is not configured", .0.name())]
    NotConfigured(Service),
    /// A call to another service failed; what the order became is recorded
    /// before this is returned.
    #[error("the call to {} failed", service.name())]
    Upstream {
        service: Service,
        #[source]
        error: UpstreamError,
    },
    /// A charge was sent and no answer came (or one outside the contract):
    /// the attempt stays open and is sent again with the same key, by the
    /// next pay or by the reconciler.
    #[error("the outcome of the charge is unknown")]
    ChargeUnknown {
        #[source]
        error: UpstreamError,
    },
    /// The charge went through but could not be recorded: the order is
    /// not unchanged, and the charge is recorded by the next pay or the
    /// reconciler (same key, never charged twice).
    #[error("the charge went through but could not be recorded")]
    ChargeUnrecorded(#[source] RepositoryError),
    /// Payments answered that the charge was refused.
    #[error("payment {payment_id} was declined")]
    Declined { payment_id: Uuid },
    /// A payment of the order has an outcome still open (`pending` says
    /// payments has not decided; otherwise its answer was lost): the order
    /// cannot change until it is settled.
    #[error("a payment of the order is not settled")]
    PaymentUnsettled { pending: bool },
    /// The order's open charge was sent under a key payments may have
    /// forgotten (`PAYMENT_KEY_TTL_SECS`): it is not sent again, and waits
    /// for an operator.
    #[error("the key of the order's open charge is past what payments remembers")]
    KeyExpired,
    /// The kitchen can no longer drop the order's schedule.
    #[error("the kitchen refused to cancel")]
    KitchenRefused,
    /// The kitchen refused, for good, to make the order: it is cancelled
    /// (with `reason` kept) and its charge is owed back.
    #[error("the kitchen refused the order")]
    KitchenRejected { reason: String },
    /// The operator asked about an order that has nothing open.
    #[error("nothing is open for the order")]
    NothingOpen,
    /// The operator's resolution ends no raised item of the order.
    #[error("no needs_attention item of the order is ended by {}", .0.as_str())]
    NothingToResolve(Resolution),
    /// The database failed, or holds something the domain refuses.
    #[error("storage failed")]
    Storage(#[source] RepositoryError),
}

impl From<RepositoryError> for LifecycleError {
    fn from(err: RepositoryError) -> Self {
        match err {
            RepositoryError::NotFound => LifecycleError::NotFound,
            RepositoryError::Busy | RepositoryError::LeaseLost => LifecycleError::Busy(None, None),
            RepositoryError::PaymentUnsettled => {
                LifecycleError::PaymentUnsettled { pending: false }
            }
            other => LifecycleError::Storage(other),
        }
    }
}

impl LifecycleError {
    /// A conditional change that touched nothing, worded for `action`.
    pub fn refusal(action: Action, err: RepositoryError) -> Self {
        match err {
            RepositoryError::Conflict { current } => LifecycleError::Refused {
                action,
                status: current,
            },
            other => other.into(),
        }
    }
}
