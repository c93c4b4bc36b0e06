//! Domain types: values that are valid by construction, so the rest of the
//! service never re-checks them.

pub mod event;
pub mod order;
pub mod payment;
pub mod product;
pub mod quantity;
pub mod size;
pub mod status;

pub use event::EventKind;
pub use order::{NewOrder, Order, OrderId, OrderItem, OrderItems};
pub use payment::{Payment, PaymentStatus};
pub use product::Product;
pub use quantity::Quantity;
pub use size::Size;
pub use status::OrderStatus;
