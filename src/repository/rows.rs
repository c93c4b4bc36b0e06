//! The shapes of the rows the queries return, decoded on either backend
//! (by column name, or by position for the rows of orders and their items,
//! the most read), and turning them into domain values.

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
/// position: `sql::GET`, `sql::GET_SQLITE` and the lists select exactly
/// these columns in this order (a lookup by name compares every column's
/// name).
pub struct ItemRow {
    pub id: Id,
    pub created: Time,
    pub status: String,
    pub product: String,
    pub size: String,
    pub quantity: i32,
    pub money: MoneyRow,
}

/// An order's money as `sql::money_columns!` selects it.
pub struct MoneyRow {
    pub attempt_state: Option<String>,
    pub refund_state: Option<String>,
    pub raised: Option<bool>,
    pub updated: Option<Time>,
}

impl MoneyRow {
    /// The money columns of `row`, from column `first` on.
    fn read<'r, R: ::sqlx::Row>(row: &'r R, first: usize) -> Result<Self, sqlx::Error>
    where
        usize: ::sqlx::ColumnIndex<R>,
        Time: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
        String: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
        bool: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
    {
        Ok(Self {
            attempt_state: row.try_get(first)?,
            refund_state: row.try_get(first + 1)?,
            raised: row.try_get(first + 2)?,
            updated: row.try_get(first + 3)?,
        })
    }

    /// What a read of the order says of its money.
    pub fn payment(&self) -> Option<Payment> {
        let status = PaymentStatus::from_states(
            self.attempt_state.as_deref(),
            self.refund_state.as_deref(),
            self.raised == Some(true),
        )?;
        Some(Payment {
            status,
            updated: self.updated?.0,
        })
    }
}

impl<'r, R: ::sqlx::Row> ::sqlx::FromRow<'r, R> for MoneyRow
where
    usize: ::sqlx::ColumnIndex<R>,
    Time: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
    String: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
    bool: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Self::read(row, 0)
    }
}

impl<'r, R: ::sqlx::Row> ::sqlx::FromRow<'r, R> for ItemRow
where
    usize: ::sqlx::ColumnIndex<R>,
    Id: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
    Time: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
    String: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
    i32: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
    bool: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            created: row.try_get(1)?,
            status: row.try_get(2)?,
            product: row.try_get(3)?,
            size: row.try_get(4)?,
            quantity: row.try_get(5)?,
            money: MoneyRow::read(row, 6)?,
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
        let item = OrderItem {
            product: Product::parse(row.product).map_err(corrupt)?,
            size: row.size.parse::<Size>().map_err(corrupt)?,
            quantity: Quantity::parse(i128::from(row.quantity)).map_err(corrupt)?,
        };
        match orders.last_mut() {
            Some((id, _, _, _, items)) if *id == row.id.0 => items.push(item),
            _ => orders.push((
                row.id.0,
                row.created.0,
                status(&row.status)?,
                row.money.payment(),
                vec![item],
            )),
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
