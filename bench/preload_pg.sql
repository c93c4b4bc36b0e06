-- Preloads orders :first .. :last (psql variables) for user 'test', the
-- caller when AUTH_ON is off. Order n has id hex(T0 + n s, 12 digits) ||
-- hex(n, 20 digits) and was created at T0 + n s (T0 = 2024-01-01Z): ids are
-- time-ordered like the service's UUIDv7 ids, and bench.py's pgbench get
-- script names any existing order by its n. Statuses: 10% cancelled, the
-- rest spread over the lifecycle; 1 to 3 items an order.
\set ON_ERROR_STOP on
SET synchronous_commit = off;
-- A bulk load of rows consistent by construction: skip the per-row foreign
-- key triggers of order_items (superuser only; this session only).
SET session_replication_role = replica;
BEGIN;
INSERT INTO orders (id, owner, status, created, updated, payment_id, schedule_id, claimed_until)
SELECT (lpad(to_hex(1704067200000 + n * 1000), 12, '0') || lpad(to_hex(n), 20, '0'))::uuid,
       'test',
       s.status,
       timestamptz 'epoch' + (1704067200000 + n * 1000) * interval '1 millisecond',
       timestamptz 'epoch' + (1704067200000 + n * 1000) * interval '1 millisecond'
           + (CASE WHEN s.status = 'created' THEN 0 ELSE 600 END) * interval '1 second',
       CASE WHEN s.status IN ('paid', 'progress', 'dispatched', 'delivered')
            THEN md5('payment' || n)::uuid END,
       CASE WHEN s.status IN ('progress', 'dispatched', 'delivered')
            THEN md5('schedule' || n)::uuid END,
       NULL
FROM generate_series(:first::bigint, :last::bigint) AS n
CROSS JOIN LATERAL (SELECT (ARRAY['cancelled', 'created', 'created', 'paid', 'progress',
                                  'dispatched', 'delivered', 'delivered', 'delivered',
                                  'delivered'])[1 + n % 10] AS status) AS s;
INSERT INTO order_items (order_id, position, product, size, quantity)
SELECT (lpad(to_hex(1704067200000 + n * 1000), 12, '0') || lpad(to_hex(n), 20, '0'))::uuid,
       p,
       (ARRAY['latte', 'cappuccino', 'espresso', 'flat white', 'mocha', 'americano',
              'macchiato'])[1 + (n + p) % 7],
       (ARRAY['small', 'medium', 'big'])[1 + (n / 10 + p) % 3],
       CASE WHEN n % 1000 = 7 THEN 1000000 ELSE 1 + (n * 7 + p) % 4 END
FROM generate_series(:first::bigint, :last::bigint) AS n,
     generate_series(0, (n % 3)::int) AS p;
COMMIT;
