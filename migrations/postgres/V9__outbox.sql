-- Order events for other services (a transactional outbox): each change of
-- an order writes its event here in the transaction that makes the change,
-- and the relay of every replica publishes the rows to the broker, marking
-- a row published only once the broker confirmed it.

-- The last sequence number given to an order's events: each event takes the
-- next one. Kept apart from `orders` because events go on after an order is
-- deleted (the refund of a deleted order is still delivered and told).
CREATE TABLE event_sequences (
    order_id uuid   PRIMARY KEY,
    last     bigint NOT NULL
);

-- `position` orders the relay's work; `sequence` orders one order's events
-- (the relay takes an event only when every earlier one of its order is
-- published). `data` is the event's JSON data as it was at the change.
CREATE TABLE outbox (
    position      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            uuid        NOT NULL,
    order_id      uuid        NOT NULL,
    sequence      bigint      NOT NULL,
    kind          text        NOT NULL,
    occurred      timestamptz NOT NULL,
    data          text        NOT NULL,
    traceparent   text,
    claimed_until timestamptz,
    published     timestamptz,
    UNIQUE (order_id, sequence)
);

-- The relay's scan of what waits (oldest first; an event waits for its
-- order's earlier ones through the unique index above), and the purge of
-- what was published. Few indexes: each one is written by every change.
-- `id` (a UUIDv7 made by the service) needs no index of its own.
CREATE INDEX outbox_pending_position_idx ON outbox (position) WHERE published IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published) WHERE published IS NOT NULL;
