-- See migrations/postgres/V10. Times are integer microseconds (UTC).
CREATE INDEX payment_attempts_order_created_idx ON payment_attempts (order_id, created);

-- SQLite cannot drop a column's UNIQUE: the refunds table is rebuilt with
-- the same columns, keyed by (order, charge).
CREATE TABLE refunds_by_order (
    key             TEXT    PRIMARY KEY NOT NULL,
    payment_id      TEXT    NOT NULL,
    order_id        TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('owed', 'pending', 'refunded')),
    refund_id       TEXT,
    created         INTEGER NOT NULL,
    updated         INTEGER NOT NULL,
    tries           INTEGER NOT NULL DEFAULT 0,
    next_try        INTEGER NOT NULL,
    claimed_until   INTEGER,
    traceparent     TEXT,
    attention       TEXT,
    attention_since INTEGER,
    last_error      TEXT,
    UNIQUE (order_id, payment_id)
) WITHOUT ROWID;

INSERT INTO refunds_by_order (key, payment_id, order_id, state, refund_id, created, updated,
        tries, next_try, claimed_until, traceparent, attention, attention_since, last_error)
    SELECT key, payment_id, order_id, state, refund_id, created, updated,
        tries, next_try, claimed_until, traceparent, attention, attention_since, last_error
    FROM refunds;

DROP TABLE refunds;
ALTER TABLE refunds_by_order RENAME TO refunds;

CREATE INDEX refunds_due_idx ON refunds (next_try) WHERE state <> 'refunded';

CREATE TABLE action_keys (
    owner      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    action     TEXT    NOT NULL CHECK (action IN ('pay', 'cancel')),
    order_id   TEXT    NOT NULL,
    status     INTEGER,
    body       TEXT,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;

CREATE INDEX action_keys_expires_at_idx ON action_keys (expires_at);
