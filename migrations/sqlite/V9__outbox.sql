-- See migrations/postgres/V9. Times are integer microseconds (UTC).
CREATE TABLE event_sequences (
    order_id TEXT    PRIMARY KEY NOT NULL,
    last     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE outbox (
    position      INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    sequence      INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    occurred      INTEGER NOT NULL,
    data          TEXT    NOT NULL,
    traceparent   TEXT,
    claimed_until INTEGER,
    published     INTEGER,
    UNIQUE (order_id, sequence)
);

CREATE INDEX outbox_pending_position_idx ON outbox (position) WHERE published IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published) WHERE published IS NOT NULL;
