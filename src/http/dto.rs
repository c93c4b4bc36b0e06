//! The JSON shapes of the public contract. Response bodies keep exactly
//! these fields (existing clients were written against them); request bodies are parsed by `validation`, and the
//! request types here exist to document them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Order, OrderStatus, PaymentStatus, Size};

/// One item as a client sends it.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*$",
        example = "cappuccino"
    )]
    pub product: String,
    pub size: Size,
    #[schema(schema_with = quantity_schema, required = false)]
    pub quantity: Option<u32>,
}

/// A strict integer that may be left out but not sent as `null` (utoipa
/// would document an `Option` as nullable and add an int32 format).
fn quantity_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(1_000_000))
        .default(Some(serde_json::json!(1)))
        .examples([serde_json::json!(1)])
        .description(Some("How many; defaults to 1."))
        .build()
}

/// A new order, or the new items of an existing one.
#[allow(dead_code)]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    #[schema(min_items = 1, max_items = 100)]
    pub order: Vec<OrderItem>,
}

/// One item as stored: `quantity` is always present.
#[derive(Serialize, ToSchema)]
pub struct OrderItemResponse {
    pub product: String,
    pub size: Size,
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: u32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Order)]
pub struct OrderResponse {
    pub id: Uuid,
    /// When the order was placed (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub status: OrderStatus,
    pub order: Vec<OrderItemResponse>,
    /// The order's money: `null` until its first charge is sent. Read-only.
    #[schema(required = true)]
    pub payment: Option<PaymentResponse>,
}

/// Where an order's money stands.
#[derive(Serialize, ToSchema)]
#[schema(as = Payment)]
pub struct PaymentResponse {
    /// `pending`: a charge was sent and its outcome is not known yet;
    /// `declined`: paying again makes a new charge; `refund_pending`: the
    /// order was cancelled and the refund is on its way; `needs_attention`:
    /// the charge or its refund waits for an operator.
    pub status: PaymentStatus,
    /// When the status last changed (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
}

/// A page of orders, newest first. More pages are announced by a
/// `Link: <...>; rel="next"` header.
#[derive(Serialize, ToSchema)]
pub struct OrdersPage {
    pub orders: Vec<OrderResponse>,
}

impl From<Order> for OrderResponse {
    fn from(order: Order) -> Self {
        OrderResponse {
            id: order.id,
            created: order.created,
            status: order.status,
            order: order
                .items
                .into_vec()
                .into_iter()
                .map(|item| OrderItemResponse {
                    product: item.product.into_inner(),
                    size: item.size,
                    quantity: item.quantity.get(),
                })
                .collect(),
            payment: order.payment.map(|payment| PaymentResponse {
                status: payment.status,
                updated: payment.updated,
            }),
        }
    }
}
