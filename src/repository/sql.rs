//! SQL text shared by both backends (numbered `$n` parameters work in both).

/// One order with its items, in their original order.
pub const GET: &str = "SELECT o.id, o.created, o.status, i.product, i.size, i.quantity \
     FROM orders o JOIN order_items i ON i.order_id = o.id \
     WHERE o.id = $1 AND o.owner = $2 \
     ORDER BY i.position";

/// The status, and whether a request holds a live lease on the order (`$3` now).
pub const STATUS: &str =
    "SELECT status, claimed_until > $3 FROM orders WHERE id = $1 AND owner = $2";

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

/// Creation of a `created` order; `$3` is both its creation and update time.
pub const INSERT_ORDER: &str = "INSERT INTO orders (id, owner, status, created, updated) \
     VALUES ($1, $2, 'created', $3, $3)";

/// Deletes an order whose status allows it (see `OrderStatus::can_be_deleted`;
/// a unit test keeps the two in step), unless a payment of it is under way
/// (`$3` is now): a charged order must not vanish.
pub const DELETE_ORDER: &str = "DELETE FROM orders WHERE id = $1 AND owner = $2 \
     AND (claimed_until IS NULL OR claimed_until < $3) \
     AND status IN ('created', 'cancelled', 'delivered')";

/// Marks a `created` order as changed, locking its row for the replace,
/// unless a payment of it is under way (it pays for the current items).
pub const TOUCH_CREATED: &str = "UPDATE orders SET updated = $3 \
     WHERE id = $1 AND owner = $2 AND status = 'created' \
     AND (claimed_until IS NULL OR claimed_until < $3) RETURNING created";

/// What the lifecycle needs to decide its next step.
pub const LIFECYCLE_STATE: &str =
    "SELECT status, claimed_until, schedule_id FROM orders WHERE id = $1 AND owner = $2";

/// Takes the lease to call upstream for an order in status `$3`, unless a
/// live lease (one ending after `$5`, now) is held by another request.
pub const CLAIM: &str = "UPDATE orders SET claimed_until = $4 \
     WHERE id = $1 AND owner = $2 AND status = $3 \
     AND (claimed_until IS NULL OR claimed_until < $5)";

/// Gives a lease back after a failed call (only our own: `$2` is its end).
pub const RELEASE: &str =
    "UPDATE orders SET claimed_until = NULL WHERE id = $1 AND claimed_until = $2";

/// Records what the upstream call achieved, only if this request still holds
/// the lease and the status is still the one it started from; `$8` is the
/// lease's new end (NULL drops it, a time keeps it for the next step).
pub const COMPLETE: &str = "UPDATE orders SET status = $3, updated = $4, claimed_until = $8, \
     payment_id = COALESCE($5, payment_id), schedule_id = COALESCE($6, schedule_id) \
     WHERE id = $1 AND status = $2 AND claimed_until = $7";

/// Cancels a `created` or `paid` order (see `OrderStatus::cancellation`),
/// unless a payment of it is under way.
pub const CANCEL_UNCLAIMED: &str = "UPDATE orders SET status = 'cancelled', updated = $3 \
     WHERE id = $1 AND owner = $2 AND status IN ('created', 'paid') \
     AND (claimed_until IS NULL OR claimed_until < $3)";

/// Records an idempotency key for a new order, unless a live one exists
/// (an expired one is replaced). Returns a row only when this request owns it.
pub const UPSERT_KEY: &str = "INSERT INTO idempotency_keys (owner, key, request, order_id, expires_at) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (owner, key) DO UPDATE SET request = excluded.request, \
         order_id = excluded.order_id, expires_at = excluded.expires_at \
     WHERE idempotency_keys.expires_at < $6 \
     RETURNING order_id";

pub const LOOKUP_KEY: &str =
    "SELECT request, order_id FROM idempotency_keys WHERE owner = $1 AND key = $2";

pub const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE expires_at < $1";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderStatus;

    /// `status IN ('a', 'b')` from the enum's own names.
    fn status_in(statuses: &[OrderStatus]) -> String {
        let names: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("status IN ({})", names.join(", "))
    }

    #[test]
    fn delete_matches_the_domain_rule() {
        let allowed: Vec<OrderStatus> = OrderStatus::deletable().collect();
        assert!(
            DELETE_ORDER.ends_with(&status_in(&allowed)),
            "{DELETE_ORDER}"
        );
    }

    #[test]
    fn direct_cancel_matches_the_domain_rule() {
        let allowed: Vec<OrderStatus> = OrderStatus::directly_cancellable().collect();
        assert!(
            CANCEL_UNCLAIMED.contains(&status_in(&allowed)),
            "{CANCEL_UNCLAIMED}"
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
