-- The status an order was in when its open step was raised for an
-- operator: the raise concerns that step only, and lapses by itself once
-- the order moves on (a raised charge that settles, a schedule made).
ALTER TABLE orders ADD COLUMN attention_status TEXT;
