-- See migrations/postgres/V3. Times are integer microseconds (UTC).
CREATE TABLE payment_attempts (
    key        TEXT    PRIMARY KEY NOT NULL,
    order_id   TEXT    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    state      TEXT    NOT NULL
        CHECK (state IN ('unknown', 'pending', 'paid', 'declined')),
    payment_id TEXT,
    created    INTEGER NOT NULL,
    updated    INTEGER NOT NULL,
    tries      INTEGER NOT NULL DEFAULT 0,
    next_try   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE UNIQUE INDEX payment_attempts_one_unsettled_idx ON payment_attempts (order_id)
    WHERE state IN ('unknown', 'pending');

CREATE INDEX payment_attempts_due_idx ON payment_attempts (next_try)
    WHERE state IN ('unknown', 'pending');

CREATE TABLE refunds (
    key           TEXT    PRIMARY KEY NOT NULL,
    payment_id    TEXT    NOT NULL UNIQUE,
    order_id      TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('owed', 'pending', 'refunded')),
    refund_id     TEXT,
    created       INTEGER NOT NULL,
    updated       INTEGER NOT NULL,
    tries         INTEGER NOT NULL DEFAULT 0,
    next_try      INTEGER NOT NULL,
    claimed_until INTEGER
) WITHOUT ROWID;

CREATE INDEX refunds_due_idx ON refunds (next_try) WHERE state <> 'refunded';

ALTER TABLE orders ADD COLUMN schedule_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN next_check INTEGER;
ALTER TABLE orders ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;

CREATE INDEX orders_next_check_idx ON orders (next_check)
    WHERE status IN ('paid', 'progress');

UPDATE orders SET next_check = CAST(unixepoch('subsec') * 1000000 AS INTEGER)
    WHERE status IN ('paid', 'progress');

-- See migrations/postgres/V3: the same columns, in microseconds.
CREATE VIEW clock AS
    SELECT CAST(unixepoch('subsec') * 1000000 AS INTEGER) AS now, 1000 AS ms;
