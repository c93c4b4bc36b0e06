-- An order's payment as reads show it (`payment` on every order) comes
-- from its latest attempt: this index finds it, and also serves the
-- cascade that deletes an order's attempts with the order.
CREATE INDEX payment_attempts_order_created_idx ON payment_attempts (order_id, created);

-- A refund owed belongs to one order's charge. Keyed by the charge alone,
-- two orders that payments answered with the same payment id would share
-- one refund row and one of them would never be refunded.
ALTER TABLE refunds DROP CONSTRAINT refunds_payment_id_key;
ALTER TABLE refunds ADD CONSTRAINT refunds_order_payment_key UNIQUE (order_id, payment_id);

-- The Idempotency-Key of `POST /orders/{id}/pay` and `/cancel`: which
-- action on which order the key was first used for, and the answer it got
-- (`status`, `body`) once that answer was final. A key whose answer is not
-- final yet (the outcome was not known) holds no answer: its retry does
-- the work again, which attempts and leases make safe.
CREATE TABLE action_keys (
    owner      text        NOT NULL,
    key        text        NOT NULL,
    action     text        NOT NULL CHECK (action IN ('pay', 'cancel')),
    order_id   uuid        NOT NULL,
    status     smallint,
    body       text,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);

CREATE INDEX action_keys_expires_at_idx ON action_keys (expires_at);
