-- Why an order was cancelled when it was not its owner who cancelled it:
-- the kitchen's own words when it refused to make the order (a final
-- refusal; the order is cancelled and its charge refunded). NULL for a
-- cancellation its owner asked for.
ALTER TABLE orders ADD COLUMN cancel_reason TEXT;
