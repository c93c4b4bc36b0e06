-- The W3C traceparent of the request that opened each piece of work the
-- reconciler may finish (a charge whose answer was lost, a refund owed), so
-- the reconciler's span links back to that request's trace. NULL for work
-- opened before this column, or while tracing was off.
ALTER TABLE payment_attempts ADD COLUMN traceparent TEXT;
ALTER TABLE refunds ADD COLUMN traceparent TEXT;
