//! What other services are told about an order: one event for each change,
//! named by the routing key it is published under.

use super::OrderStatus;

/// The change an event announces. Each has its own routing key, so a
/// consumer binds only to the changes it cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Created,
    /// The items of a `created` order were replaced.
    Updated,
    Deleted,
    /// The order entered this status (`paid`, `progress`, `dispatched`,
    /// `delivered`, `cancelled`).
    Status(OrderStatus),
    /// The refund a cancellation owed was delivered.
    Refunded,
    /// An open step of the order stopped being retried and waits for an
    /// operator.
    NeedsAttention,
}

impl EventKind {
    /// Every routing key, in the order the documentation lists them.
    pub const ALL: [EventKind; 10] = [
        EventKind::Created,
        EventKind::Updated,
        EventKind::Deleted,
        EventKind::Status(OrderStatus::Paid),
        EventKind::Status(OrderStatus::Progress),
        EventKind::Status(OrderStatus::Dispatched),
        EventKind::Status(OrderStatus::Delivered),
        EventKind::Status(OrderStatus::Cancelled),
        EventKind::Refunded,
        EventKind::NeedsAttention,
    ];

    pub fn routing_key(self) -> &'static str {
        match self {
            EventKind::Created | EventKind::Status(OrderStatus::Created) => "order.created",
            EventKind::Updated => "order.updated",
            EventKind::Deleted => "order.deleted",
            EventKind::Status(OrderStatus::Paid) => "order.paid",
            EventKind::Status(OrderStatus::Progress) => "order.progress",
            EventKind::Status(OrderStatus::Dispatched) => "order.dispatched",
            EventKind::Status(OrderStatus::Delivered) => "order.delivered",
            EventKind::Status(OrderStatus::Cancelled) => "order.cancelled",
            EventKind::Refunded => "order.refunded",
            EventKind::NeedsAttention => "order.needs_attention",
        }
    }

    /// The kind stored under `routing_key`, if it is one.
    pub fn from_routing_key(routing_key: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.routing_key() == routing_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_routing_key_and_reads_back() {
        let keys: std::collections::HashSet<_> = EventKind::ALL
            .iter()
            .map(|kind| kind.routing_key())
            .collect();
        assert_eq!(keys.len(), EventKind::ALL.len());
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_routing_key(kind.routing_key()), Some(kind));
        }
        assert_eq!(EventKind::from_routing_key("order.lost"), None);
    }
}
