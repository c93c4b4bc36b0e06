-- `Idempotency-Key` of `POST /orders`: a repeat of a request with the same
-- key by the same owner returns the order the first one created.
-- `request` is the validated request in canonical JSON, to tell a true
-- repeat from a reuse of the key for a different order. No foreign key: a
-- key outlives the deletion of its order (its replay then answers 409).
CREATE TABLE idempotency_keys (
    owner      text        NOT NULL,
    key        text        NOT NULL,
    request    text        NOT NULL,
    order_id   uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);

-- The periodic purge of expired keys.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
