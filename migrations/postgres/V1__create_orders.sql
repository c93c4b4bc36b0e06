-- Orders and their items.
--
-- `owner` is the caller's user id: every query filters on it.
-- `payment_id` and `schedule_id` record the steps of paying (see
-- src/lifecycle.rs): which charge went through and which kitchen schedule
-- makes the order. `claimed_until` is the lease of the one request allowed
-- to call payments or kitchen for this order right now, so two concurrent
-- pays cannot both charge; a lease left by a crashed pod simply expires.
CREATE TABLE orders (
    id                   uuid        PRIMARY KEY,
    owner                text        NOT NULL,
    status               text        NOT NULL
        CHECK (status IN ('created', 'paid', 'progress', 'cancelled', 'dispatched', 'delivered')),
    created              timestamptz NOT NULL,
    updated              timestamptz NOT NULL,
    payment_id           uuid,
    schedule_id          uuid,
    claimed_until        timestamptz
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
