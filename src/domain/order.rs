use time::OffsetDateTime;
use uuid::Uuid;

use super::{OrderStatus, Payment, Product, Quantity, Size};

pub type OrderId = Uuid;

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub product: Product,
    pub size: Size,
    pub quantity: Quantity,
}

/// The items of an order: at least one, at most [`OrderItems::MAX`], in the
/// order the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItems(Vec<OrderItem>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderItemsError {
    #[error("List should have at least 1 item after validation, not 0")]
    Empty,
    #[error("List should have at most {max} items after validation, not {0}", max = OrderItems::MAX)]
    TooMany(usize),
}

impl OrderItems {
    /// Bounds the work one request can cause; far above any real coffee order.
    pub const MAX: usize = 100;

    pub fn parse(items: Vec<OrderItem>) -> Result<Self, OrderItemsError> {
        match items.len() {
            0 => Err(OrderItemsError::Empty),
            n if n > Self::MAX => Err(OrderItemsError::TooMany(n)),
            _ => Ok(Self(items)),
        }
    }

    pub fn as_slice(&self) -> &[OrderItem] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn into_vec(self) -> Vec<OrderItem> {
        self.0
    }
}

/// A validated request to create an order (or replace its items).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub items: OrderItems,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    /// UTC, microsecond precision (what both databases store exactly).
    pub created: OffsetDateTime,
    pub status: OrderStatus,
    pub items: OrderItems,
    /// `None` until the order's first charge is sent.
    pub payment: Option<Payment>,
}

/// The current time truncated to microseconds, so a value written to either
/// database reads back equal (and keyset cursors compare exactly).
pub fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let micros = now.microsecond();
    now.replace_microsecond(micros)
        .expect("microsecond from a valid time")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> OrderItem {
        OrderItem {
            product: Product::parse("latte".into()).unwrap(),
            size: Size::Small,
            quantity: Quantity::default(),
        }
    }

    #[test]
    fn items_must_be_between_one_and_max() {
        assert_eq!(OrderItems::parse(vec![]), Err(OrderItemsError::Empty));
        assert_eq!(OrderItems::parse(vec![item()]).unwrap().len(), 1);
        assert_eq!(
            OrderItems::parse(vec![item(); OrderItems::MAX + 1]),
            Err(OrderItemsError::TooMany(OrderItems::MAX + 1))
        );
    }

    #[test]
    fn now_has_no_sub_microsecond_part() {
        assert_eq!(now_micros().nanosecond() % 1_000, 0);
    }
}
