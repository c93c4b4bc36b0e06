-- Orders and their items.
--
-- `owner` is the caller's user id: every query filters on it.
-- `payment_id`, `schedule_id` and `charge_claimed_until` record the steps of
-- paying (see src/lifecycle): which charge went through, which kitchen
-- schedule makes the order, and which request currently holds the right to
-- charge (so two concurrent pays cannot both charge).
CREATE TABLE orders (
    id                   uuid        PRIMARY KEY,
    owner                text        NOT NULL,
    status               text        NOT NULL
        CHECK (status IN ('created', 'paid', 'progress', 'cancelled', 'dispatched', 'delivered')),
    created              timestamptz NOT NULL,
    updated              timestamptz NOT NULL,
    payment_id           uuid,
    schedule_id          uuid,
    charge_claimed_until timestamptz
);

-- The list query: one owner's orders, newest first, walked with a keyset
-- cursor on (created, id).
CREATE INDEX orders_owner_created_id_idx ON orders (owner, created, id);

-- `?cancelled=true` pages through the (few) cancelled orders without
-- scanning all the others.
CREATE INDEX orders_owner_cancelled_created_id_idx ON orders (owner, created, id)
    WHERE status = 'cancelled';

-- The primary key (order_id, position) is also the index that fetches an
-- order's items in their original order.
CREATE TABLE order_items (
    order_id uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position integer NOT NULL CHECK (position >= 0),
    product  text    NOT NULL CHECK (char_length(product) BETWEEN 1 AND 200),
    size     text    NOT NULL CHECK (size IN ('small', 'medium', 'big')),
    quantity integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000000),
    PRIMARY KEY (order_id, position)
);
