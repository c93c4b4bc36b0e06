-- See migrations/postgres/V2. Times are integer microseconds (UTC).
CREATE TABLE idempotency_keys (
    owner      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    request    TEXT    NOT NULL,
    order_id   TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
