//! The shapes of the rows the queries return, decoded on either backend
//! (by column name, or by position straight into domain values for the
//! rows of orders and their items, the most read).

use time::OffsetDateTime;
use uuid::Uuid;

use super::RepositoryError;
use super::codec::{Id, Time};
use crate::domain::{
    Order, OrderItem, OrderItems, OrderStatus, Payment, PaymentStatus, Product, Quantity, Size,
};

/// A struct whose fields are read from the columns of the same names, with
/// a `FromRow` for the rows of any backend that decodes those field types.
macro_rules! row {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        pub struct $name {
            $(pub $field: $ty),*
        }

        impl<'r, R: ::sqlx::Row> ::sqlx::FromRow<'r, R> for $name
        where
            &'r str: ::sqlx::ColumnIndex<R>,
            $($ty: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,)*
        {
            fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
                Ok(Self {
                    $($field: row.try_get(stringify!($field))?),*
                })
            }
        }
    };
}

/// One row of an order joined with one of its items and its money, read by
/// position straight into domain values: `sql::GET`, `sql::GET_SQLITE` and
/// the lists select exactly these columns in this order. A lookup by name
/// compares every column's name, a checked read compares the column's type
/// with the field's on every value, and text read as a `String` is
/// allocated only to be parsed; the tests on both backends hold the
/// columns to the fields instead.
pub struct ItemRow {
    pub id: Uuid,
    pub created: OffsetDateTime,
    pub status: OrderStatus,
    pub item: OrderItem,
    pub payment: Option<Payment>,
}

/// An order's money as `sql::money_columns!` selects it: what a read of the
/// order says of it.
pub struct MoneyRow {
    pub payment: Option<Payment>,
}

/// A stored value the domain refuses, carried through sqlx's decoding and
/// told as [`RepositoryError::Corrupt`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CorruptValue(pub String);

fn corrupt_value(err: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(CorruptValue(err.to_string())))
}

impl MoneyRow {
    /// The money columns of `row`, from column `first` on.
    fn read<'r, R: ::sqlx::Row>(row: &'r R, first: usize) -> Result<Self, sqlx::Error>
    where
        usize: ::sqlx::ColumnIndex<R>,
        Time: ::sqlx::Decode<'r, R::Database>,
        &'r str: ::sqlx::Decode<'r, R::Database>,
        bool: ::sqlx::Decode<'r, R::Database>,
    {
        let attempt: Option<&str> = row.try_get_unchecked(first)?;
        let refund: Option<&str> = row.try_get_unchecked(first + 1)?;
        let raised: Option<bool> = row.try_get_unchecked(first + 2)?;
        let status = PaymentStatus::from_states(attempt, refund, raised == Some(true));
        let payment = match status {
            Some(status) => {
                let updated: Option<Time> = row.try_get_unchecked(first + 3)?;
                updated.map(|Time(updated)| Payment { status, updated })
            }
            None => None,
        };
        Ok(Self { payment })
    }
}

impl<'r, R: ::sqlx::Row> ::sqlx::FromRow<'r, R> for MoneyRow
where
    usize: ::sqlx::ColumnIndex<R>,
    Time: ::sqlx::Decode<'r, R::Database>,
    &'r str: ::sqlx::Decode<'r, R::Database>,
    bool: ::sqlx::Decode<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Self::read(row, 0)
    }
}

impl<'r, R: ::sqlx::Row> ::sqlx::FromRow<'r, R> for ItemRow
where
    usize: ::sqlx::ColumnIndex<R>,
    Id: ::sqlx::Decode<'r, R::Database>,
    Time: ::sqlx::Decode<'r, R::Database>,
    &'r str: ::sqlx::Decode<'r, R::Database>,
    String: ::sqlx::Decode<'r, R::Database>,
    i32: ::sqlx::Decode<'r, R::Database>,
    bool: ::sqlx::Decode<'r, R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let Id(id) = row.try_get_unchecked(0)?;
        let Time(created) = row.try_get_unchecked(1)?;
        let status: &str = row.try_get_unchecked(2)?;
        let product: String = row.try_get_unchecked(3)?;
        let size: &str = row.try_get_unchecked(4)?;
        let quantity: i32 = row.try_get_unchecked(5)?;
        Ok(Self {
            id,
            created,
            status: status.parse().map_err(corrupt_value)?,
            item: OrderItem {
                product: Product::parse(product).map_err(corrupt_value)?,
                size: size.parse::<Size>().map_err(corrupt_value)?,
                quantity: Quantity::parse(i128::from(quantity)).map_err(corrupt_value)?,
            },
            payment: MoneyRow::read(row, 6)?.payment,
        })
    }
}

pub(super) use row;

row!(
    /// Why a conditional change touched nothing (`sql::STATUS`).
    StatusRow { status: String, busy: Option<bool>, open_attempt: bool }
);

row!(
    /// What an idempotency key stands for: the canonical request and its order.
    KeyRow { request: String, order_id: Id }
);

/// Groups consecutive rows of the same order, keeping row order (the queries
/// sort by order, then item position).
pub fn assemble(rows: Vec<ItemRow>) -> Result<Vec<Order>, RepositoryError> {
    type Assembled = (
        Uuid,
        OffsetDateTime,
        OrderStatus,
        Option<Payment>,
        Vec<OrderItem>,
    );
    let mut orders: Vec<Assembled> = Vec::new();
    for row in rows {
        match orders.last_mut() {
            Some((id, _, _, _, items)) if *id == row.id => items.push(row.item),
            _ => orders.push((row.id, row.created, row.status, row.payment, vec![row.item])),
        }
    }
    orders
        .into_iter()
        .map(|(id, created, status, payment, items)| {
            Ok(Order {
                id,
                created,
                status,
                items: OrderItems::parse(items).map_err(corrupt)?,
                payment,
            })
        })
        .collect()
}

pub fn status(stored: &str) -> Result<OrderStatus, RepositoryError> {
    stored.parse().map_err(corrupt)
}

fn corrupt(err: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Corrupt(err.to_string())
}

/// Why a conditional change touched no row: the order is missing, another
/// request holds it, a payment of it has an outcome still open, or its
/// status forbids the change.
pub fn refusal(state: Option<StatusRow>) -> RepositoryError {
    let Some(state) = state else {
        return RepositoryError::NotFound;
    };
    match status(&state.status) {
        Ok(_) if state.busy == Some(true) => RepositoryError::Busy,
        Ok(_) if state.open_attempt => RepositoryError::PaymentUnsettled,
        Ok(current) => RepositoryError::Conflict { current },
        Err(err) => err,
    }
}
