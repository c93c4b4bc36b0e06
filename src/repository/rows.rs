//! Turning joined (order, item) rows back into orders.

use time::OffsetDateTime;
use uuid::Uuid;

use super::RepositoryError;
use crate::domain::{Order, OrderItem, OrderItems, OrderStatus, Product, Quantity, Size};

/// One row of an order joined with one of its items, as both backends read it.
pub struct ItemRow {
    pub id: Uuid,
    pub created: OffsetDateTime,
    pub status: String,
    pub product: String,
    pub size: String,
    pub quantity: i64,
}

/// Groups consecutive rows of the same order, keeping row order (the queries
/// sort by order, then item position).
pub fn assemble(rows: Vec<ItemRow>) -> Result<Vec<Order>, RepositoryError> {
    let mut orders: Vec<(Uuid, OffsetDateTime, OrderStatus, Vec<OrderItem>)> = Vec::new();
    for row in rows {
        let item = OrderItem {
            product: Product::parse(row.product).map_err(corrupt)?,
            size: row.size.parse::<Size>().map_err(corrupt)?,
            quantity: Quantity::parse(i128::from(row.quantity)).map_err(corrupt)?,
        };
        match orders.last_mut() {
            Some((id, _, _, items)) if *id == row.id => items.push(item),
            _ => {
                let status = row.status.parse::<OrderStatus>().map_err(corrupt)?;
                orders.push((row.id, row.created, status, vec![item]));
            }
        }
    }
    orders
        .into_iter()
        .map(|(id, created, status, items)| {
            Ok(Order {
                id,
                created,
                status,
                items: OrderItems::parse(items).map_err(corrupt)?,
            })
        })
        .collect()
}

fn corrupt(err: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Corrupt(err.to_string())
}

/// An order must exist after the statement that wrote it; an empty result
/// here means it was deleted concurrently.
pub fn single(rows: Vec<ItemRow>) -> Result<Order, RepositoryError> {
    assemble(rows)?
        .into_iter()
        .next()
        .ok_or(RepositoryError::NotFound)
}

/// Why a conditional change touched no row: the order is missing, a
/// payment of it is under way, or its status forbids the change.
pub fn refusal(state: Option<(String, Option<bool>)>) -> RepositoryError {
    let Some((status, leased)) = state else {
        return RepositoryError::NotFound;
    };
    match status.parse::<OrderStatus>() {
        Ok(_) if leased == Some(true) => RepositoryError::Busy,
        Ok(current) => RepositoryError::Conflict { current },
        Err(err) => corrupt(err),
    }
}
