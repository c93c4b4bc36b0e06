-- Work that is no longer retried and waits for an operator: payments
-- refused a refund, or an item stayed unsettled past
-- NEEDS_ATTENTION_AFTER_MS. `attention` says why (NULL: not raised);
-- `attention_since` is when it was raised. On orders it concerns the
-- order's open step (its open charge, its schedule, its kitchen follow-up);
-- on refunds, the refund. The reconciler's claims skip raised items.
ALTER TABLE orders ADD COLUMN attention TEXT;
ALTER TABLE orders ADD COLUMN attention_since INTEGER;
ALTER TABLE refunds ADD COLUMN attention TEXT;
ALTER TABLE refunds ADD COLUMN attention_since INTEGER;

-- When the looks at a `paid` or `progress` order started failing in a
-- row (NULL while they succeed): how long its kitchen step has been
-- unsettled, apart from how long the kitchen has been making it.
ALTER TABLE orders ADD COLUMN failing_since INTEGER;
