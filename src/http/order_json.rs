//! The JSON of orders, written straight from the domain values: byte for
//! byte what serde writes for [`OrderResponse`] (which stays the schema;
//! the tests below hold the two to one output), at a fraction of the cost.
//! serde checks every byte it writes for characters to escape and formats
//! each time into a string of its own; here only the product name, the one
//! text a client chose, goes through serde's escaping, while ids, times and
//! the names of states, which never need escaping, are copied as they are,
//! into one buffer sized up front.

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use time::format_description::well_known::Rfc3339;

use crate::domain::Order;

#[cfg(doc)]
use super::dto::OrderResponse;

/// An order as the API answers it.
pub struct OrderJson(pub Order);

/// A page of orders: `{"orders": [...]}`.
pub struct OrdersJson(pub Vec<Order>);

impl IntoResponse for OrderJson {
    fn into_response(self) -> Response {
        let mut out = Vec::with_capacity(size_hint(&self.0));
        write_order(&mut out, &self.0);
        json_response(out)
    }
}

impl IntoResponse for OrdersJson {
    fn into_response(self) -> Response {
        let mut out = Vec::with_capacity(16 + self.0.iter().map(size_hint).sum::<usize>());
        out.extend_from_slice(b"{\"orders\":[");
        for (n, order) in self.0.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_order(&mut out, order);
        }
        out.extend_from_slice(b"]}");
        json_response(out)
    }
}

fn json_response(body: Vec<u8>) -> Response {
    let mut response = Bytes::from(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Enough for an order with short product names, so one allocation is
/// the rule.
fn size_hint(order: &Order) -> usize {
    let items = order.items.as_slice();
    200 + items
        .iter()
        .map(|item| 48 + item.product.as_str().len())
        .sum::<usize>()
}

/// Appends `order` as JSON.
pub fn write_order(out: &mut Vec<u8>, order: &Order) {
    out.extend_from_slice(b"{\"id\":\"");
    let mut id = uuid::Uuid::encode_buffer();
    out.extend_from_slice(order.id.hyphenated().encode_lower(&mut id).as_bytes());
    out.extend_from_slice(b"\",\"created\":");
    write_time(out, order.created);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(order.status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"order\":[");
    for (n, item) in order.items.as_slice().iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"product\":");
        serde_json::to_writer(&mut *out, item.product.as_str())
            .expect("writing to a Vec cannot fail");
        out.extend_from_slice(b",\"size\":\"");
        out.extend_from_slice(item.size.as_str().as_bytes());
        out.extend_from_slice(b"\",\"quantity\":");
        serde_json::to_writer(&mut *out, &item.quantity.get())
            .expect("writing to a Vec cannot fail");
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"payment\":");
    match order.payment {
        None => out.extend_from_slice(b"null"),
        Some(payment) => {
            out.extend_from_slice(b"{\"status\":\"");
            out.extend_from_slice(payment.status.as_str().as_bytes());
            out.extend_from_slice(b"\",\"updated\":");
            write_time(out, payment.updated);
            out.push(b'}');
        }
    }
    out.push(b'}');
}

/// A time as `time::serde::rfc3339` writes it, in quotes. Times the API
/// answers with are the database's, in UTC and within years 0000–9999, so
/// they always format; should one not, serde's error is written.
fn write_time(out: &mut Vec<u8>, at: time::OffsetDateTime) {
    out.push(b'"');
    if at.format_into(out, &Rfc3339).is_err() {
        out.extend_from_slice(b"invalid time");
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{
        OrderItem, OrderItems, OrderStatus, Payment, PaymentStatus, Product, Quantity, Size,
    };
    use crate::http::dto::{OrderResponse, OrdersPage};

    fn order(products: &[&str], status: OrderStatus, payment: Option<Payment>) -> Order {
        let items = products
            .iter()
            .zip(Size::ALL.iter().cycle())
            .zip([1, 7, 1_000_000].iter().cycle())
            .map(|((product, size), quantity)| OrderItem {
                product: Product::parse((*product).to_owned()).unwrap(),
                size: *size,
                quantity: Quantity::parse(*quantity).unwrap(),
            })
            .collect();
        Order {
            id: Uuid::new_v4(),
            created: datetime!(2026-12-05 12:34:56.789012 UTC),
            status,
            items: OrderItems::parse(items).unwrap(),
            payment,
        }
    }

    fn orders() -> Vec<Order> {
        let payments = [
            PaymentStatus::Pending,
            PaymentStatus::Paid,
            PaymentStatus::Declined,
            PaymentStatus::RefundPending,
            PaymentStatus::Refunded,
            PaymentStatus::NeedsAttention,
        ];
        let names = [
            "latte",
            "caf\u{e9} \"au\" lait\\ \u{1f375}",
            "tab\tnew\nline\u{1} \u{7f} \u{2028}</script>",
        ];
        let mut all = Vec::new();
        for (n, status) in OrderStatus::ALL.into_iter().enumerate() {
            let payment = Payment {
                status: payments[n],
                updated: datetime!(2026-12-05 23:59:59 UTC),
            };
            all.push(order(&names[..1 + n % 3], status, Some(payment)));
            all.push(order(&names[n % 3..], status, None));
        }
        let mut whole_second = order(&["espresso"], OrderStatus::Created, None);
        whole_second.created = datetime!(2000-01-01 00:00:00 UTC);
        all.push(whole_second);
        all
    }

    async fn body(response: Response) -> String {
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn an_order_is_written_as_serde_writes_its_response() {
        for order in orders() {
            let serde = serde_json::to_string(&OrderResponse::from(order.clone())).unwrap();
            assert_eq!(body(OrderJson(order).into_response()).await, serde);
        }
    }

    #[tokio::test]
    async fn a_page_is_written_as_serde_writes_it() {
        for orders in [orders(), Vec::new()] {
            let page = OrdersPage {
                orders: orders.iter().cloned().map(OrderResponse::from).collect(),
            };
            let serde = serde_json::to_string(&page).unwrap();
            assert_eq!(body(OrdersJson(orders).into_response()).await, serde);
        }
    }
}
