-- The last failure of each open item, for the operator's list of stuck
-- work (GET /ops/stuck on the operator's listener).
ALTER TABLE orders ADD COLUMN last_error TEXT;
ALTER TABLE refunds ADD COLUMN last_error TEXT;

-- The audit trail of the operator's ends of needs_attention items: what
-- was ended, how, why (the operator's note) and when. Kept after the
-- order's deletion (no foreign key).
CREATE TABLE resolutions (
    id         TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    resolution TEXT NOT NULL,
    note       TEXT NOT NULL,
    at         INTEGER NOT NULL
);

CREATE INDEX resolutions_order_id_idx ON resolutions (order_id);
