-- The same orders as preload_pg.sql, for the SQLite schema (ids as
-- hyphenated text, times as integer microseconds). Run by run.sh with
-- FIRST and LAST replaced by the range to load.
PRAGMA foreign_keys = OFF;
PRAGMA synchronous = OFF;
BEGIN;
INSERT INTO orders (id, owner, status, created, updated, payment_id, schedule_id, claimed_until)
SELECT printf('%08x-%04x-0000-0000-%012x', (1704067200000 + value * 1000) >> 16,
              (1704067200000 + value * 1000) & 65535, value),
       'test',
       status,
       (1704067200000 + value * 1000) * 1000,
       (1704067200000 + value * 1000) * 1000 + (CASE WHEN status = 'created' THEN 0 ELSE 600000000 END),
       CASE WHEN status IN ('paid', 'progress', 'dispatched', 'delivered')
            THEN printf('00000000-0000-4000-8000-%012x', value) END,
       CASE WHEN status IN ('progress', 'dispatched', 'delivered')
            THEN printf('00000000-0000-4000-9000-%012x', value) END,
       NULL
FROM (SELECT value,
             CASE value % 10 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'created' WHEN 2 THEN 'created'
                  WHEN 3 THEN 'paid' WHEN 4 THEN 'progress' WHEN 5 THEN 'dispatched'
                  ELSE 'delivered' END AS status
      FROM generate_series(FIRST, LAST));
INSERT INTO order_items (order_id, position, product, size, quantity)
SELECT printf('%08x-%04x-0000-0000-%012x', (1704067200000 + n.value * 1000) >> 16,
              (1704067200000 + n.value * 1000) & 65535, n.value),
       p.value,
       CASE (n.value + p.value) % 7 WHEN 0 THEN 'latte' WHEN 1 THEN 'cappuccino'
            WHEN 2 THEN 'espresso' WHEN 3 THEN 'flat white' WHEN 4 THEN 'mocha'
            WHEN 5 THEN 'americano' ELSE 'macchiato' END,
       CASE (n.value / 10 + p.value) % 3 WHEN 0 THEN 'small' WHEN 1 THEN 'medium' ELSE 'big' END,
       CASE WHEN n.value % 1000 = 7 THEN 1000000 ELSE 1 + (n.value * 7 + p.value) % 4 END
FROM generate_series(FIRST, LAST) AS n
JOIN generate_series(0, 2) AS p ON p.value <= n.value % 3;
COMMIT;
ANALYZE;
