//! SQL text shared by both backends (numbered `$n` parameters work in both).

/// One order with its items, in their original order.
pub const GET: &str = "SELECT o.id, o.created, o.status, i.product, i.size, i.quantity \
     FROM orders o JOIN order_items i ON i.order_id = o.id \
     WHERE o.id = $1 AND o.owner = $2 \
     ORDER BY i.position";

pub const STATUS: &str = "SELECT status FROM orders WHERE id = $1 AND owner = $2";

pub const DELETE_ITEMS: &str = "DELETE FROM order_items WHERE order_id = $1";

pub const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM refinery_schema_history";

/// A page of orders with all their items in one statement: `$1` owner,
/// `$2` page size (plus one), `$3`/`$4` the cursor's (created, id).
macro_rules! list {
    ($filter:literal, $after:literal) => {
        concat!(
            "WITH page AS (SELECT id, created, status FROM orders WHERE owner = $1",
            $filter,
            $after,
            " ORDER BY created DESC, id DESC LIMIT $2) ",
            "SELECT p.id, p.created, p.status, i.product, i.size, i.quantity ",
            "FROM page p JOIN order_items i ON i.order_id = p.id ",
            "ORDER BY p.created DESC, p.id DESC, i.position"
        )
    };
}

/// `[filter][has cursor]`: static text for each shape of list query, so
/// the planner sees plain predicates it can match to the indexes.
pub const LIST: [[&str; 2]; 3] = [
    [list!("", ""), list!("", " AND (created, id) < ($3, $4)")],
    [
        list!(" AND status = 'cancelled'", ""),
        list!(" AND status = 'cancelled'", " AND (created, id) < ($3, $4)"),
    ],
    [
        list!(" AND status <> 'cancelled'", ""),
        list!(
            " AND status <> 'cancelled'",
            " AND (created, id) < ($3, $4)"
        ),
    ],
];

pub fn list(filter: super::ListFilter, has_cursor: bool) -> &'static str {
    let row = match filter {
        super::ListFilter::All => 0,
        super::ListFilter::OnlyCancelled => 1,
        super::ListFilter::ExceptCancelled => 2,
    };
    LIST[row][usize::from(has_cursor)]
}

/// `status IN ('a', 'b')` from the enum's own names (never from input).
pub fn status_in(statuses: &[crate::domain::OrderStatus]) -> String {
    let names: Vec<String> = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("status IN ({})", names.join(", "))
}

/// Creation of a `created` order; `$3` is both its creation and update time.
pub const INSERT_ORDER: &str = "INSERT INTO orders (id, owner, status, created, updated) \
     VALUES ($1, $2, 'created', $3, $3)";

/// Deletes an order whose status allows it (see `OrderStatus::can_be_deleted`;
/// a unit test keeps the two in step).
pub const DELETE_ORDER: &str = "DELETE FROM orders WHERE id = $1 AND owner = $2 \
     AND status IN ('created', 'cancelled', 'delivered')";

/// Marks a `created` order as changed, locking its row for the replace.
pub const TOUCH_CREATED: &str = "UPDATE orders SET updated = $3 \
     WHERE id = $1 AND owner = $2 AND status = 'created' RETURNING created";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderStatus;

    #[test]
    fn delete_matches_the_domain_rule() {
        let allowed: Vec<OrderStatus> = OrderStatus::deletable().collect();
        assert!(
            DELETE_ORDER.ends_with(&status_in(&allowed)),
            "{DELETE_ORDER}"
        );
    }

    #[test]
    fn every_list_shape_is_distinct_and_sorted_newest_first() {
        let all: std::collections::HashSet<_> = LIST.iter().flatten().collect();
        assert_eq!(all.len(), 6);
        for sql in LIST.iter().flatten() {
            assert!(sql.contains("ORDER BY created DESC, id DESC LIMIT $2"));
        }
    }
}
