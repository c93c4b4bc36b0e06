#!/usr/bin/env bash
# Benchmark of the orders service against PostgreSQL's own limit (issues 6, 14).
#
#   bench/run.sh                 PostgreSQL (127.0.0.1:5432, trust auth, user postgres)
#   bench/run.sh --sqlite        the embedded SQLite default, same HTTP load, no pgbench
#   bench/run.sh --tracing       the cost of traces: off, on, on at 10% side by side
#                                (bench/tracing.sh; takes --no-build)
#
# Options:
#   --pool N        DB_POOL_MAX of the service (default: the service's own default)
#   --rust-log F    RUST_LOG of the service (default: warn; the service logs one
#                   JSON line per request at info)
#   --no-build      use the release binaries already in target/release
#   --small N       first dataset size (default 10000)
#   --large N       second dataset size (default 1000000)
#   --no-fresh      skip the never-analyzed phase
#   --no-per-core   skip the per-core phase (taskset)
# Environment: DURATION (15 s a measurement), WARMUP (3 s), CONNECTIONS (32),
# WRK_THREADS (2), BENCH_PORT (18080), BENCH_DB (orders_bench),
# CREATE_SECONDS (8 s of POST /orders that fill the never-analyzed database),
# PG_BASE_URL (postgresql://postgres@127.0.0.1:5432), BENCH_KEEP_DB=1 (keep the
# database afterwards, for profiling), BENCH_BIN_DIR (binaries to measure,
# with --no-build: default $CARGO_TARGET_DIR/release, else target/release;
# for comparing two builds).
#
# Builds the release binaries, makes a fresh database, starts the service
# (timing start-up until /readyz answers 200), fills the freshly migrated
# database through the API and measures the reads there before and after
# ANALYZE, printing their plans (PostgreSQL), preloads SMALL orders, drives
# load with wrk on loopback, runs pgbench scripts with the service's own SQL,
# grows the data to LARGE orders, repeats, shows EXPLAIN (ANALYZE, BUFFERS) of
# the read queries, measures each endpoint again with the service pinned to
# one core and PostgreSQL and wrk to the other (taskset; PostgreSQL only),
# and prints the tables. Results stay in bench/out/<time>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
SELF="$BENCH/run.sh"
cd "$ROOT"

case " $* " in
  *" --tracing "*) exec "$BENCH/tracing.sh" "$@" ;;
esac

MODE=postgres
BUILD=1
POOL=${DB_POOL_MAX:-}
LOG_FILTER=${RUST_LOG:-warn}
SMALL=10000
LARGE=1000000
FRESH=1
PER_CORE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sqlite) MODE=sqlite ;;
    --pool) POOL=$2; shift ;;
    --rust-log) LOG_FILTER=$2; shift ;;
    --no-build) BUILD=0 ;;
    --small) SMALL=$2; shift ;;
    --large) LARGE=$2; shift ;;
    --no-fresh) FRESH=0 ;;
    --no-per-core) PER_CORE=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-2}
CREATE_SECONDS=${CREATE_SECONDS:-8}
PORT=${BENCH_PORT:-18080}
DB_NAME=${BENCH_DB:-orders_bench}
PG_BASE_URL=${PG_BASE_URL:-postgresql://postgres@127.0.0.1:5432}
PG_URL="$PG_BASE_URL/$DB_NAME"
SQLITE_FILE=/tmp/orders-bench-$$.db
# The Debian package version wrk is pinned to (bookworm).
WRK_VERSION=4.1.0-3+b2
OWNER=test          # the caller when AUTH_ON is off
SERVICE_PID=
PHASE=preloaded     # which table a measurement goes to
WRK_PREFIX=()       # taskset for wrk in the per-core phase
PINNED=             # PostgreSQL's processes are pinned to one core

OUT="$BENCH/out/$(date +%Y%m%d-%H%M%S)-$MODE"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
RAW="$OUT/raw.txt"
: > "$RESULTS"

say() { printf '\n== %s [%ss]\n' "$*" "$SECONDS"; }

# Every PostgreSQL process (the postmaster and its children) on the given
# CPUs; new backends inherit the postmaster's.
pin_postgres() {
  local pid
  for pid in $(pgrep -x postgres 2>/dev/null; pgrep -f '^postgres: ' 2>/dev/null); do
    as_root taskset -a -p -c "$1" "$pid" >/dev/null 2>&1 || true
  done
}

cleanup() {
  [ -n "$PINNED" ] && pin_postgres "0-$(($(nproc) - 1))"
  if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
    kill -TERM "$SERVICE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVICE_PID" 2>/dev/null || true
  fi
  rm -f "$SQLITE_FILE" "$SQLITE_FILE-wal" "$SQLITE_FILE-shm"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ tools
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v wrk >/dev/null; then
  say "installing wrk $WRK_VERSION (Debian)"
  as_root apt-get install -y --no-install-recommends "wrk=$WRK_VERSION" >/dev/null 2>&1 || {
    as_root apt-get update -qq
    as_root apt-get install -y --no-install-recommends "wrk=$WRK_VERSION" >/dev/null
  }
fi
WRK_INSTALLED=$(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo unknown)
[ "$WRK_INSTALLED" = "$WRK_VERSION" ] ||
  echo "bench: warning: wrk $WRK_INSTALLED is installed, the benchmark pins $WRK_VERSION" >&2
need=(python3 curl)
if [ "$MODE" = postgres ]; then need+=(psql pgbench pg_isready pgrep); else need+=(sqlite3); fi
[ "$MODE" = postgres ] && [ "$PER_CORE" = 1 ] && need+=(taskset)
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done

# ------------------------------------------------------------------ build
if [ "$BUILD" = 1 ]; then
  say "cargo build --release --locked --bins"
  build_start=$SECONDS
  cargo build --release --locked --bins
  echo "build took $((SECONDS - build_start)) s"
fi
BIN_DIR=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
SERVICE="$BIN_DIR/orders-service"
MIGRATE="$BIN_DIR/migrate"
[ -x "$SERVICE" ] && [ -x "$MIGRATE" ] || { echo "bench: build the release binaries first" >&2; exit 1; }
START=$SECONDS

# Two shared cores: a build or test suite running beside the benchmark
# skews every figure. Measure how busy the machine is before starting.
busy_before() {
  local a b
  read -r _ a1 a2 a3 a4 a5 a6 a7 _ < /proc/stat
  sleep 2
  read -r _ b1 b2 b3 b4 b5 b6 b7 _ < /proc/stat
  a=$((a1 + a2 + a3 + a4 + a5 + a6 + a7)); b=$((b1 + b2 + b3 + b4 + b5 + b6 + b7))
  echo $(( 100 - 100 * (b4 + b5 - a4 - a5) / (b - a) ))
}
BUSY=$(busy_before)
echo "machine busy before the run: $BUSY% of $(nproc) cores"
[ "$BUSY" -lt 20 ] || echo "bench: warning: other work is using the CPU; figures will be low" >&2

if curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; then
  echo "bench: port $PORT is taken; set BENCH_PORT" >&2
  exit 1
fi

# --------------------------------------------------------------- database
if [ "$MODE" = postgres ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    say "starting PostgreSQL"
    as_root pg_ctlcluster "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
  fi
  say "fresh database $DB_NAME, migrated with target/release/migrate"
  psql "$PG_BASE_URL/postgres" -XqAt -v ON_ERROR_STOP=1 \
    -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME"
  DB_URL="$PG_URL" "$MIGRATE"
  DB_URL="$PG_URL"
  python3 "$BENCH/bench.py" sql --root "$ROOT" --out "$OUT/pgbench"
else
  rm -f "$SQLITE_FILE" "$SQLITE_FILE-wal" "$SQLITE_FILE-shm"
  DB_URL="sqlite://$SQLITE_FILE"
fi

psql_db() { psql "$PG_URL" -XqAt -v ON_ERROR_STOP=1 "$@"; }
sqlite_db() { sqlite3 -cmd '.timeout 10000' "$SQLITE_FILE" "$@"; }

count_orders() {
  if [ "$MODE" = postgres ]; then psql_db -c "SELECT count(*) FROM orders"
  else sqlite_db "SELECT count(*) FROM orders"; fi
}

# Orders first..last, then statistics and a checkpoint, so that the
# measurements start from a settled database.
preload() {
  local first=$1 last=$2 t0=$SECONDS
  if [ "$MODE" = postgres ]; then
    psql_db -v first="$first" -v last="$last" -f "$BENCH/preload_pg.sql"
    psql_db -c "VACUUM (ANALYZE) orders" -c "VACUUM (ANALYZE) order_items" -c "CHECKPOINT"
  else
    sed -e "s/FIRST/$first/g" -e "s/LAST/$last/g" "$BENCH/preload_sqlite.sql" | sqlite_db
    sqlite_db "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
  fi
  echo "loaded orders $first..$last in $((SECONDS - t0)) s; $(count_orders) orders stored"
}

# Orders placed by the benchmark (created now, after every preloaded one)
# are removed after each size, so each size is measured at its own count.
remove_new_orders() {
  if [ "$MODE" = postgres ]; then
    psql_db -c "DELETE FROM orders WHERE created > timestamptz '2024-06-01Z'" \
      -c "VACUUM (ANALYZE) orders" -c "VACUUM (ANALYZE) order_items" -c "CHECKPOINT"
  else
    sqlite_db "DELETE FROM order_items WHERE order_id IN (SELECT id FROM orders WHERE created > 1717200000000000);
               DELETE FROM orders WHERE created > 1717200000000000;
               PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
  fi
}

# ---------------------------------------------------------------- service
export DB_URL PORT RUST_LOG="$LOG_FILTER"
[ -n "$POOL" ] && export DB_POOL_MAX="$POOL"
start_service() { # [COMMAND PREFIX...], e.g. taskset -c 0
  say "starting the service${1:+ under $*} (RUST_LOG=$RUST_LOG${POOL:+, DB_POOL_MAX=$POOL})"
  local start_json
  start_json=$(python3 "$BENCH/bench.py" start --port "$PORT" --log "$OUT/service.log" -- "$@" "$SERVICE")
  echo "$start_json"
  SERVICE_PID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pid"])' "$start_json")
  READY_MS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("ready_ms", "null"))' "$start_json")
  [ "$READY_MS" != null ] || { cat "$OUT/service.log" >&2; exit 1; }
}

stop_service() {
  kill -TERM "$SERVICE_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVICE_PID" 2>/dev/null || true
  SERVICE_PID=
}

start_service

python3 - "$OUT/meta.json" <<EOF
import json, os, subprocess, sys
rev = subprocess.run(["git", "-C", "$ROOT", "rev-parse", "--short", "HEAD"],
                     capture_output=True, text=True).stdout.strip()
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), "?")
json.dump({"mode": "$MODE", "ready_ms": $READY_MS, "pool": "${POOL:-default}",
           "rust_log": "$RUST_LOG", "wrk_threads": $WRK_THREADS, "duration_s": $DURATION,
           "connections": $CONNECTIONS, "git": rev or None, "cpus": os.cpu_count(),
           "cpu_model": model, "wrk": "$WRK_INSTALLED", "busy_before_pct": $BUSY}, open(sys.argv[1], "w"))
EOF

# --------------------------------------------------------------- measures
http() { # ORDERS ENDPOINT-LABEL BENCH_MODE PATH
  local orders=$1 label=$2 mode=$3 path=$4
  local wrk_cmd=("${WRK_PREFIX[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" --timeout 10s -s "$BENCH/wrk/bench.lua")
  local common=(--endpoint "$label" --orders "$orders" --results "$RESULTS" --raw "$RAW"
                --mode "$MODE" --pool "${POOL:-default}" --rust-log "$RUST_LOG" --phase "$PHASE")
  BENCH_MODE=$mode BENCH_IDS="$OUT/ids.txt" python3 "$BENCH/bench.py" http "${common[@]}" --warmup \
    -- "${wrk_cmd[@]}" -d"${WARMUP}s" "http://127.0.0.1:$PORT$path"
  BENCH_MODE=$mode BENCH_IDS="$OUT/ids.txt" python3 "$BENCH/bench.py" http "${common[@]}" \
    --pid "$SERVICE_PID" -- "${wrk_cmd[@]}" -d"${DURATION}s" "http://127.0.0.1:$PORT$path"
}

pgb() { # ORDERS SCRIPT PROTOCOL
  # -M simple (pgbench's default) substitutes variables into the text, so
  # strings and arrays go in as quoted literals; -M prepared binds them.
  local q=""
  [ "$3" = simple ] && q="'"
  python3 "$BENCH/bench.py" pgbench --script "$2" --protocol "$3" --orders "$1" \
    --results "$RESULTS" --raw "$RAW" -- \
    pgbench -n -c "$CONNECTIONS" -j 2 -T "$DURATION" -M "$3" \
      -D owner="$q$OWNER$q" -D orders="$1" -D limit=11 \
      -D positions="$q{0}$q" -D products="$q{latte}$q" -D sizes="$q{small}$q" \
      -D quantities="$q{1}$q" \
      -f "$OUT/pgbench/$2.sql" "$PG_URL"
}

measure_size() { # ORDERS
  local orders=$1
  say "measuring at $orders orders"
  sample_ids
  # A sampled id must answer 200 before the load starts.
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/orders/$(head -n1 "$OUT/ids.txt")" ||
    { echo "bench: GET of a preloaded order failed" >&2; exit 1; }
  # Each endpoint right before its pgbench script, so that both figures of
  # a share are measured under the same conditions. The reads first: the
  # orders placed by POST are removed afterwards.
  # create and get against pgbench in both protocols (see docs/performance.md).
  http "$orders" "GET /orders/{id}" get /
  if [ "$MODE" = postgres ]; then pgb "$orders" get simple; pgb "$orders" get prepared; fi
  http "$orders" "GET /orders?limit=10" url "/orders?limit=10"
  [ "$MODE" = postgres ] && pgb "$orders" list prepared
  http "$orders" "GET /orders?limit=10&cancelled=false" url "/orders?limit=10&cancelled=false"
  [ "$MODE" = postgres ] && pgb "$orders" list_nc prepared
  http "$orders" "POST /orders" create /orders
  if [ "$MODE" = postgres ]; then pgb "$orders" create simple; pgb "$orders" create prepared; fi
  # The HTTP stack alone, no database: the floor of a request's cost.
  [ "$orders" = "$SMALL" ] && http "$orders" "GET /healthz" url /healthz
  remove_new_orders
}

explain() { # [FILE]
  local file=${1:-explain.txt}
  say "query plans at $(count_orders) orders"
  if [ "$MODE" = postgres ]; then
    psql "$PG_URL" -Xq -v ON_ERROR_STOP=1 -v get_id="$(head -n1 "$OUT/ids.txt")" \
      -f "$OUT/pgbench/explain.sql" | tee "$OUT/$file"
  else
    {
      echo "--- GET /orders/{id}"
      sqlite_db "EXPLAIN QUERY PLAN SELECT o.id, o.created, o.status, i.product, i.size, i.quantity FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = '$(head -n1 "$OUT/ids.txt")' AND o.owner = 'test' ORDER BY i.position"
      for filter in "" " AND status <> 'cancelled'"; do
        echo "--- GET /orders?limit=10${filter:+&cancelled=false}"
        sqlite_db "EXPLAIN QUERY PLAN WITH page AS (SELECT id, created, status FROM orders WHERE owner = 'test'$filter ORDER BY created DESC, id DESC LIMIT 11) SELECT p.id, p.created, p.status, i.product, i.size, i.quantity FROM page p JOIN order_items i ON i.order_id = p.id ORDER BY p.created DESC, p.id DESC, i.position"
      done
    } | tee "$OUT/$file"
  fi
}

sample_ids() {
  if [ "$MODE" = postgres ]; then
    psql_db -c "SELECT id FROM orders ORDER BY random() LIMIT 20000" > "$OUT/ids.txt"
  else
    sqlite_db "SELECT id FROM orders ORDER BY random() LIMIT 20000" > "$OUT/ids.txt"
  fi
}

# The freshly migrated database (migrate analyzed its empty tables) filled
# through the API, as it is before autovacuum first analyzes it: the reads
# on it, their plans, then the same reads after ANALYZE. Autovacuum is off
# for the two tables meanwhile, so that it cannot analyze them mid-phase.
fresh_phase() {
  PHASE=fresh
  say "never analyzed: POST /orders for ${CREATE_SECONDS} s into the freshly migrated database"
  psql_db -c "ALTER TABLE orders SET (autovacuum_enabled = false)" \
    -c "ALTER TABLE order_items SET (autovacuum_enabled = false)"
  BENCH_MODE=create python3 "$BENCH/bench.py" http --endpoint "fill" --orders 0 --warmup -- \
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" --timeout 10s -s "$BENCH/wrk/bench.lua" \
      -d"${CREATE_SECONDS}s" "http://127.0.0.1:$PORT/orders"
  local orders
  orders=$(count_orders)
  echo "$orders orders placed through the API"
  sample_ids
  psql "$PG_URL" -Xq -c "SELECT c.relname, c.reltuples, s.n_live_tup, s.last_analyze,
      s.last_autoanalyze, (SELECT count(*) FROM pg_stats p WHERE p.tablename = c.relname) AS column_stats
    FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE c.relname IN ('orders', 'order_items') ORDER BY 1" | tee "$OUT/fresh-stats.txt"
  explain explain-never-analyzed.txt
  http "$orders" "GET /orders/{id}" get /
  http "$orders" "GET /orders?limit=10" url "/orders?limit=10"
  http "$orders" "GET /orders?limit=10&cancelled=false" url "/orders?limit=10&cancelled=false"
  PHASE=fresh-analyzed
  say "the same $orders orders after ANALYZE"
  psql_db -c "ANALYZE orders" -c "ANALYZE order_items"
  explain explain-analyzed.txt >/dev/null
  http "$orders" "GET /orders/{id}" get /
  http "$orders" "GET /orders?limit=10" url "/orders?limit=10"
  http "$orders" "GET /orders?limit=10&cancelled=false" url "/orders?limit=10&cancelled=false"
  psql_db -c "TRUNCATE orders CASCADE" -c "TRUNCATE idempotency_keys" \
    -c "ALTER TABLE orders RESET (autovacuum_enabled)" \
    -c "ALTER TABLE order_items RESET (autovacuum_enabled)"
  PHASE=preloaded
}

# What one service core serves: the service pinned to CPU 0 (its runtime
# then starts one worker thread, as in a pod of one vCPU or less), PostgreSQL
# and wrk to CPU 1, so that the service's core does nothing else.
per_core_phase() {
  local orders
  orders=$(count_orders)
  stop_service
  PINNED=1
  pin_postgres 1
  WRK_PREFIX=(taskset -c 1)
  start_service taskset -c 0
  PHASE=per-core
  say "per core at $orders orders: the service on CPU 0, PostgreSQL and wrk on CPU 1"
  sample_ids
  http "$orders" "GET /orders/{id}" get /
  http "$orders" "GET /orders?limit=10" url "/orders?limit=10"
  http "$orders" "GET /orders?limit=10&cancelled=false" url "/orders?limit=10&cancelled=false"
  http "$orders" "POST /orders" create /orders
  PHASE=preloaded
  WRK_PREFIX=()
  pin_postgres "0-$(($(nproc) - 1))"
  PINNED=
}

[ "$MODE" = postgres ] && [ "$FRESH" = 1 ] && fresh_phase

say "preloading $SMALL orders"
preload 1 "$SMALL"
measure_size "$SMALL"

say "preloading up to $LARGE orders"
preload $((SMALL + 1)) "$LARGE"
explain
measure_size "$LARGE"
[ "$MODE" = postgres ] && [ "$PER_CORE" = 1 ] && per_core_phase

python3 "$BENCH/bench.py" report --results "$RESULTS" --meta "$OUT/meta.json" | tee "$OUT/table.txt"
echo
echo "$MODE run took $((SECONDS - START)) s after the build; files in ${OUT#$ROOT/}/"
if [ "$MODE" = postgres ] && [ -z "${BENCH_KEEP_DB:-}" ]; then
  psql "$PG_BASE_URL/postgres" -XqAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" || true
fi
