//! SQL text shared by both backends (numbered `$n` parameters work in both),
//! except the reads of one order and of a page, which PostgreSQL joins to
//! their items through `LATERAL` (see [`GET`]).

/// The columns of an order's money beside its own, for `rows::ItemRow`:
/// its latest charge's state (`a`), the state of the refund of its charge
/// (`r`), whether an operator was called for the open one of them, and
/// when that last changed. `$o` is the order's alias.
#[rustfmt::skip]
macro_rules! money_columns {
    ($o:literal) => {
        concat!(
            "a.state, r.state, CASE WHEN r.key IS NOT NULL THEN r.attention IS NOT NULL ",
            "ELSE ", open_charge_raised!($o), " END, ",
            "CASE WHEN r.attention IS NOT NULL THEN r.attention_since ",
            "WHEN r.key IS NOT NULL THEN r.updated ",
            "WHEN ", open_charge_raised!($o), " THEN ", $o, ".attention_since ",
            "ELSE a.updated END "
        )
    };
}

/// Whether order `$o`'s open charge (`a`) waits for an operator: the order
/// was raised in its current status (a raise lapses once the order moves
/// on) while its latest charge is open.
#[rustfmt::skip]
macro_rules! open_charge_raised {
    ($o:literal) => {
        concat!(
            "(", $o, ".attention IS NOT NULL AND ", $o, ".attention_status = ", $o, ".status ",
            "AND a.state IN ('unknown', 'pending'))"
        )
    };
}

/// How an order `$o` joins its latest charge (`a`, through the index on
/// (order_id, created)) and the refund of its charge (`r`). PostgreSQL
/// takes the latest charge through `LATERAL`; SQLite, which has none,
/// through a subquery on the key (it joins by nested loops anyway).
macro_rules! money_join {
    (postgres, $o:literal) => {
        concat!(
            "LEFT JOIN LATERAL (SELECT state, updated FROM payment_attempts ",
            "WHERE order_id = ",
            $o,
            ".id ORDER BY created DESC LIMIT 1) a ON TRUE ",
            "LEFT JOIN refunds r ON r.order_id = ",
            $o,
            ".id AND r.payment_id = ",
            $o,
            ".payment_id "
        )
    };
    (sqlite, $o:literal) => {
        concat!(
            "LEFT JOIN payment_attempts a ON a.key = (SELECT key FROM payment_attempts ",
            "WHERE order_id = ",
            $o,
            ".id ORDER BY created DESC, key DESC LIMIT 1) ",
            "LEFT JOIN refunds r ON r.order_id = ",
            $o,
            ".id AND r.payment_id = ",
            $o,
            ".payment_id "
        )
    };
}

/// How an order or a page (alias `$o`) joins its items (`i`) on each
/// backend: see [`GET`] and [`GET_SQLITE`] for why they differ.
macro_rules! items_join {
    (postgres, $o:literal) => {
        concat!(
            "CROSS JOIN LATERAL (SELECT position, product, size, quantity ",
            "FROM order_items WHERE order_id = ",
            $o,
            ".id ORDER BY position) i "
        )
    };
    (sqlite, $o:literal) => {
        concat!("JOIN order_items i ON i.order_id = ", $o, ".id ")
    };
}

/// One order (`o`) with its items, in their original order, and its money,
/// found by `$where`.
macro_rules! one_order {
    ($backend:ident, $where:literal) => {
        concat!(
            "SELECT o.id, o.created, o.status, i.product, i.size, i.quantity, ",
            money_columns!("o"),
            "FROM orders o ",
            money_join!($backend, "o"),
            items_join!($backend, "o"),
            $where,
            " ORDER BY i.position"
        )
    };
}

/// One order of an owner with its items and its money, on PostgreSQL. The
/// items come from a `LATERAL` subquery on the order's id: a join that can
/// only run as a nested loop, one index walk of `order_items` per order,
/// whatever the statistics say. A plain join lets the planner hash the
/// whole table instead, and it does when the table has not been analyzed
/// yet (its default guess is hundreds of items an order).
pub const GET: &str = one_order!(postgres, "WHERE o.id = $1 AND o.owner = $2");

/// The columns of [`get_many`]: [`GET`]'s, then which of the statement's
/// orders the row belongs to, at [`GET_MANY_INDEX`].
const GET_MANY_COLUMNS: &str = concat!(
    "SELECT o.id, o.created, o.status, i.product, i.size, i.quantity, ",
    money_columns!("o"),
    ", w.n "
);

/// What [`get_many`] reads after the list of orders it looks up.
const GET_MANY_JOINS: &str = concat!(
    "JOIN orders o ON o.id = w.id AND o.owner = w.owner ",
    money_join!(postgres, "o"),
    items_join!(postgres, "o"),
    "ORDER BY w.n, i.position"
);

/// The column of a [`get_many`] row that tells which order (from 0) of the
/// statement's it belongs to.
pub const GET_MANY_INDEX: usize = 10;

/// [`GET`] of `n` orders at once on PostgreSQL: `$1`, `$2` the first
/// order's id and owner, `$3`, `$4` the second's, and so on. Each row
/// carries the order's place in the list, so that two readers asking for
/// the same order, or for one order under two owners, each get their own
/// answer. The orders are a `VALUES` list of `n` rows, which the generic
/// plan counts right, so PostgreSQL keeps that plan instead of planning
/// every execution anew (it would for an array, guessing a hundred
/// elements).
pub fn get_many(n: usize) -> String {
    let orders: Vec<String> = (0..n)
        .map(|k| format!("(${}::uuid, ${}::text, {k})", 2 * k + 1, 2 * k + 2))
        .collect();
    format!(
        "{GET_MANY_COLUMNS}FROM (VALUES {}) AS w(id, owner, n) {GET_MANY_JOINS}",
        orders.join(", ")
    )
}

/// [`GET`] on SQLite, which has no `LATERAL` and needs none: it only joins
/// by nested loops, and without statistics it takes an index to be
/// selective, so a plain join walks `order_items`' primary key.
pub const GET_SQLITE: &str = one_order!(sqlite, "WHERE o.id = $1 AND o.owner = $2");

/// One order with its items and money, by id alone, on either backend
/// (PostgreSQL runs SQLite's form as well): what an event tells of the
/// order it changed (see `outbox`).
pub const SNAPSHOT: &str = one_order!(sqlite, "WHERE o.id = $1");

/// The money of order `$1` alone (see `money_columns!`), for a change
/// that answers with the order it wrote.
pub const MONEY: [&str; 2] = [
    concat!(
        "SELECT ",
        money_columns!("o"),
        "FROM orders o ",
        money_join!(postgres, "o"),
        "WHERE o.id = $1"
    ),
    concat!(
        "SELECT ",
        money_columns!("o"),
        "FROM orders o ",
        money_join!(sqlite, "o"),
        "WHERE o.id = $1"
    ),
];

/// Why a conditional change touched nothing: the status, whether a request
/// holds a live lease on the order, and whether a payment of it has an
/// outcome still open.
pub const STATUS: &str = "SELECT status, claimed_until > (SELECT now FROM clock) AS busy, \
     EXISTS (SELECT 1 FROM payment_attempts a \
         WHERE a.order_id = orders.id AND a.state IN ('unknown', 'pending')) AS open_attempt \
     FROM orders WHERE id = $1 AND owner = $2";

pub const DELETE_ITEMS: &str = "DELETE FROM order_items WHERE order_id = $1";

pub const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM refinery_schema_history";

/// A page of orders with all their items in one statement: `$1` owner,
/// `$2` page size (plus one), `$3`/`$4` the cursor's (created, id).
macro_rules! list {
    ($backend:ident, $filter:literal, $after:literal) => {
        concat!(
            "WITH page AS (SELECT id, created, status, payment_id, attention, attention_status, attention_since ",
            "FROM orders WHERE owner = $1",
            $filter,
            $after,
            " ORDER BY created DESC, id DESC LIMIT $2) ",
            "SELECT p.id, p.created, p.status, i.product, i.size, i.quantity, ",
            money_columns!("p"),
            "FROM page p ",
            money_join!($backend, "p"),
            items_join!($backend, "p"),
            "ORDER BY p.created DESC, p.id DESC, i.position"
        )
    };
}

/// `[filter][has cursor]`: static text for each shape of list query, so
/// the planner sees plain predicates it can match to the indexes.
macro_rules! list_shapes {
    ($backend:ident) => {
        [
            [
                list!($backend, "", ""),
                list!($backend, "", " AND (created, id) < ($3, $4)"),
            ],
            [
                list!($backend, " AND status = 'cancelled'", ""),
                list!(
                    $backend,
                    " AND status = 'cancelled'",
                    " AND (created, id) < ($3, $4)"
                ),
            ],
            [
                list!($backend, " AND status <> 'cancelled'", ""),
                list!(
                    $backend,
                    " AND status <> 'cancelled'",
                    " AND (created, id) < ($3, $4)"
                ),
            ],
        ]
    };
}

pub const LIST: [[&str; 2]; 3] = list_shapes!(postgres);
pub const LIST_SQLITE: [[&str; 2]; 3] = list_shapes!(sqlite);

/// The list statement for a page on PostgreSQL (`postgres`) or SQLite.
pub fn list(postgres: bool, filter: super::ListFilter, has_cursor: bool) -> &'static str {
    let row = match filter {
        super::ListFilter::All => 0,
        super::ListFilter::OnlyCancelled => 1,
        super::ListFilter::ExceptCancelled => 2,
    };
    let shapes = if postgres { &LIST } else { &LIST_SQLITE };
    shapes[row][usize::from(has_cursor)]
}

/// [`MONEY`] for PostgreSQL (`postgres`) or SQLite.
pub fn money(postgres: bool) -> &'static str {
    MONEY[usize::from(!postgres)]
}

/// [`GET`] or [`GET_SQLITE`].
pub fn get(postgres: bool) -> &'static str {
    if postgres { GET } else { GET_SQLITE }
}

/// Creation of a `created` order; `$3` is both its creation and update time.
pub const INSERT_ORDER: &str = "INSERT INTO orders (id, owner, status, created, updated) \
     VALUES ($1, $2, 'created', $3, $3)";

/// Deletes an order whose status allows it (see `OrderStatus::can_be_deleted`;
/// a unit test keeps the two in step), unless a request holds it or a
/// payment of it has an outcome still open: a charged order must not vanish.
pub const DELETE_ORDER: &str = "DELETE FROM orders WHERE id = $1 AND owner = $2 \
     AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
     AND NOT EXISTS (SELECT 1 FROM payment_attempts a \
         WHERE a.order_id = orders.id AND a.state IN ('unknown', 'pending')) \
     AND status IN ('created', 'cancelled', 'delivered')";

/// Marks a `created` order as changed, locking its row for the replace,
/// unless a request holds it or a payment of it is open (it would pay for
/// the items it was sent with).
pub const TOUCH_CREATED: &str = "UPDATE orders SET updated = $3 \
     WHERE id = $1 AND owner = $2 AND status = 'created' \
     AND (claimed_until IS NULL OR claimed_until < (SELECT now FROM clock)) \
     AND NOT EXISTS (SELECT 1 FROM payment_attempts a \
         WHERE a.order_id = orders.id AND a.state IN ('unknown', 'pending')) \
     RETURNING created";

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
    fn every_list_shape_is_distinct_and_sorted_newest_first() {
        let all: std::collections::HashSet<_> = LIST.iter().chain(&LIST_SQLITE).flatten().collect();
        assert_eq!(all.len(), 12);
        for sql in LIST.iter().chain(&LIST_SQLITE).flatten() {
            assert!(sql.contains("ORDER BY created DESC, id DESC LIMIT $2"));
        }
    }
}
