use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Where an order is in its life:
///
/// ```text
/// created --pay--> paid --(kitchen schedules)--> progress --> dispatched --> delivered
///    |              |                               |
///    +---cancel-----+-----------cancel--------------+--> cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Created,
    Paid,
    Progress,
    Cancelled,
    Dispatched,
    Delivered,
}

/// What a cancel request has to do, given the order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancellation {
    /// Nothing is being made yet: the order can be cancelled in the database.
    Direct,
    /// The kitchen holds a schedule: it must confirm the cancellation first.
    ThroughKitchen,
    /// Too late (or already done).
    Refused,
}

/// What a pay request has to do, given the order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStep {
    /// Charge the customer, then schedule.
    Charge,
    /// The charge already went through: only scheduling is left.
    Schedule,
    /// Nothing to pay for.
    Refused,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Created,
        OrderStatus::Paid,
        OrderStatus::Progress,
        OrderStatus::Cancelled,
        OrderStatus::Dispatched,
        OrderStatus::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Paid => "paid",
            OrderStatus::Progress => "progress",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Dispatched => "dispatched",
            OrderStatus::Delivered => "delivered",
        }
    }

    /// Items may change only before anyone has been charged for them.
    pub fn can_be_replaced(self) -> bool {
        self == OrderStatus::Created
    }

    /// An order that was paid for and not yet finished is a record of money
    /// and work in flight: it must not disappear.
    pub fn can_be_deleted(self) -> bool {
        !matches!(
            self,
            OrderStatus::Paid | OrderStatus::Progress | OrderStatus::Dispatched
        )
    }

    pub fn cancellation(self) -> Cancellation {
        match self {
            OrderStatus::Created | OrderStatus::Paid => Cancellation::Direct,
            OrderStatus::Progress => Cancellation::ThroughKitchen,
            OrderStatus::Cancelled | OrderStatus::Dispatched | OrderStatus::Delivered => {
                Cancellation::Refused
            }
        }
    }

    pub fn payment_step(self) -> PaymentStep {
        match self {
            OrderStatus::Created => PaymentStep::Charge,
            OrderStatus::Paid => PaymentStep::Schedule,
            _ => PaymentStep::Refused,
        }
    }

    /// The statuses from which a direct cancel is allowed, for conditional updates.
    pub fn directly_cancellable() -> impl Iterator<Item = OrderStatus> {
        Self::ALL
            .into_iter()
            .filter(|s| s.cancellation() == Cancellation::Direct)
    }

    /// The statuses in which an order may be deleted, for conditional deletes.
    pub fn deletable() -> impl Iterator<Item = OrderStatus> {
        Self::ALL.into_iter().filter(|s| s.can_be_deleted())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn names_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }

    #[test]
    fn only_created_orders_can_be_replaced() {
        for status in OrderStatus::ALL {
            assert_eq!(status.can_be_replaced(), status == Created, "{status:?}");
        }
    }

    #[test]
    fn orders_in_flight_cannot_be_deleted() {
        let deletable: Vec<_> = OrderStatus::deletable().collect();
        assert_eq!(deletable, vec![Created, Cancelled, Delivered]);
    }

    #[test]
    fn cancellation_follows_the_lifecycle() {
        assert_eq!(Created.cancellation(), Cancellation::Direct);
        assert_eq!(Paid.cancellation(), Cancellation::Direct);
        assert_eq!(Progress.cancellation(), Cancellation::ThroughKitchen);
        for status in [Cancelled, Dispatched, Delivered] {
            assert_eq!(status.cancellation(), Cancellation::Refused);
        }
    }

    #[test]
    fn payment_charges_once_then_only_schedules() {
        assert_eq!(Created.payment_step(), PaymentStep::Charge);
        assert_eq!(Paid.payment_step(), PaymentStep::Schedule);
        for status in [Progress, Cancelled, Dispatched, Delivered] {
            assert_eq!(status.payment_step(), PaymentStep::Refused);
        }
    }
}
