-- Orders and their items; see migrations/postgres/V1 for the reasons.
-- Times are INTEGER microseconds since the Unix epoch (UTC), so that they
-- sort and compare exactly; ids are hyphenated UUID text.
CREATE TABLE orders (
    id                   TEXT    PRIMARY KEY NOT NULL,
    owner                TEXT    NOT NULL,
    status               TEXT    NOT NULL
        CHECK (status IN ('created', 'paid', 'progress', 'cancelled', 'dispatched', 'delivered')),
    created              INTEGER NOT NULL,
    updated              INTEGER NOT NULL,
    payment_id           TEXT,
    schedule_id          TEXT,
    claimed_until        INTEGER
);

CREATE INDEX orders_owner_created_id_idx ON orders (owner, created, id);

CREATE INDEX orders_owner_cancelled_created_id_idx ON orders (owner, created, id)
    WHERE status = 'cancelled';

CREATE TABLE order_items (
    order_id TEXT    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    product  TEXT    NOT NULL CHECK (length(product) BETWEEN 1 AND 200),
    size     TEXT    NOT NULL CHECK (size IN ('small', 'medium', 'big')),
    quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000000),
    PRIMARY KEY (order_id, position)
) WITHOUT ROWID;
