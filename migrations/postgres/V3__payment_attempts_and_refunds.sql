-- Money that must never be lost: every charge is an attempt recorded (and
-- committed) before payments is called, and every refund owed is recorded
-- in the same transaction as the cancellation that causes it. The
-- reconciler (src/lifecycle/reconciler.rs) settles what a lost answer, a
-- crash or a pending verdict left open; `next_try` and `tries` are its
-- backoff per item, in database time.

-- `key` is sent as the payments `Idempotency-Key`: reused for every retry
-- while the outcome is unknown, replaced only after a definite decline.
CREATE TABLE payment_attempts (
    key        uuid        PRIMARY KEY,
    order_id   uuid        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    state      text        NOT NULL
        CHECK (state IN ('unknown', 'pending', 'paid', 'declined')),
    payment_id uuid,
    created    timestamptz NOT NULL,
    updated    timestamptz NOT NULL,
    tries      integer     NOT NULL DEFAULT 0,
    next_try   timestamptz NOT NULL
);

-- At most one attempt whose outcome is open, per order: a constraint, not
-- a convention.
CREATE UNIQUE INDEX payment_attempts_one_unsettled_idx ON payment_attempts (order_id)
    WHERE state IN ('unknown', 'pending');

-- The reconciler's scan of open attempts.
CREATE INDEX payment_attempts_due_idx ON payment_attempts (next_try)
    WHERE state IN ('unknown', 'pending');

-- A refund owed for one charge (UNIQUE: never two refunds of one charge),
-- with its own `Idempotency-Key`. No foreign key to orders: a refund owed
-- outlives the deletion of its order.
CREATE TABLE refunds (
    key           uuid        PRIMARY KEY,
    payment_id    uuid        NOT NULL UNIQUE,
    order_id      uuid        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('owed', 'pending', 'refunded')),
    refund_id     uuid,
    created       timestamptz NOT NULL,
    updated       timestamptz NOT NULL,
    tries         integer     NOT NULL DEFAULT 0,
    next_try      timestamptz NOT NULL,
    claimed_until timestamptz
);

CREATE INDEX refunds_due_idx ON refunds (next_try) WHERE state <> 'refunded';

-- `schedule_sent`: a schedule request may have reached the kitchen, so the
-- order can no longer be cancelled without asking the kitchen.
-- `next_check`: when the reconciler next looks at a `paid` order (to
-- schedule it) or a `progress` one (to ask the kitchen how it goes);
-- `checks` counts failed looks in a row, for the backoff.
ALTER TABLE orders ADD COLUMN schedule_sent boolean NOT NULL DEFAULT false;
ALTER TABLE orders ADD COLUMN next_check timestamptz;
ALTER TABLE orders ADD COLUMN checks integer NOT NULL DEFAULT 0;

CREATE INDEX orders_next_check_idx ON orders (next_check)
    WHERE status IN ('paid', 'progress');

-- Orders that were already `paid` or `progress` are followed from now on.
UPDATE orders SET next_check = now() WHERE status IN ('paid', 'progress');

-- The database's clock, read the same way on both backends, so that leases
-- and backoff never depend on a pod's own clock: `now`, and `ms`, one
-- millisecond (`now + CAST($n AS BIGINT) * ms` is $n ms from now).
CREATE VIEW clock AS SELECT now() AS now, interval '1 millisecond' AS ms;
