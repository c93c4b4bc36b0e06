#!/usr/bin/env bash
# Instructions per request, counted by callgrind: deterministic, unlike
# wall-clock figures on a shared machine, so the figures to move.
#
#   bench/instructions.sh                 counts, breakdown by crate, wall clock
#   bench/instructions.sh --no-build      use the binaries already built
#   bench/instructions.sh --no-breakdown  skip the build with symbols and the breakdown
#   bench/instructions.sh --no-wall       skip the wall-clock comparison with pgbench
#
# Builds the release binaries as users build them (`cargo build --release
# --locked`, stripped) and, for the breakdown, the same with symbols and line
# tables in target/symbols/; installs valgrind (Debian) when missing; creates
# and migrates a fresh PostgreSQL database and preloads 10,000 orders; starts
# the service (RUST_LOG=warn, no OTLP exporter) under
# `valgrind --tool=callgrind --separate-threads=no` (every thread counted)
# with instrumentation off, then for each of GET /healthz, GET /orders/{id},
# POST /orders and GET /orders?limit=10 sends 200 warm-up and then 2,000
# sequential keep-alive requests (bench/instructions.py, loopback), counting
# only those 2,000 (callgrind_control turns instrumentation on and dumps);
# the instructions of an idle window (the reconciler, timers), per second,
# are subtracted. Then the breakdown by crate of GET /orders/{id} and
# POST /orders from the build with symbols, and GET /orders/{id} natively
# with wrk against pgbench's prepared SELECT of the same rows, alternated
# for some rounds, each with the CPU that the service, PostgreSQL and the
# client spent on a request or a transaction, and pgbench once more held to
# the service's rate of the round (PostgreSQL's cost a query at that pace),
# then the median share and the service's peak RSS.
# Environment: PG_BASE_URL (postgresql://postgres@127.0.0.1:5432),
# BENCH_DB (orders_instructions), BENCH_PORT (18090), COUNT (2000), WARMUP
# (200), WALL_SECONDS (5), ROUNDS (6), CONNECTIONS (16), BENCH_BIN_DIR (the release
# binaries to measure with --no-build, for comparing builds; default
# $CARGO_TARGET_DIR/release, else target/release). Results in
# bench/out/<time>-instructions/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
cd "$ROOT"

BUILD=1
BREAKDOWN=1
WALL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --no-breakdown) BREAKDOWN=0 ;;
    --no-wall) WALL=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "instructions: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

PG_BASE_URL=${PG_BASE_URL:-postgresql://postgres@127.0.0.1:5432}
DB_NAME=${BENCH_DB:-orders_instructions}
PG_URL="$PG_BASE_URL/$DB_NAME"
PORT=${BENCH_PORT:-18090}
COUNT=${COUNT:-2000}
WARMUP=${WARMUP:-200}
WALL_SECONDS=${WALL_SECONDS:-5}
ROUNDS=${ROUNDS:-6}
CONNECTIONS=${CONNECTIONS:-16}
ORDERS=10000
WRK_VERSION=4.1.0-3+b2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT="$BENCH/out/$(date +%Y%m%d-%H%M%S)-instructions"
mkdir -p "$OUT"
SERVICE_PID=

say() { printf '\n== %s [%ss]\n' "$*" "$SECONDS"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    as_root apt-get update -qq
    as_root apt-get install -y --no-install-recommends "$@" >/dev/null
  }
}

stop_service() {
  [ -n "$SERVICE_PID" ] || return 0
  kill -TERM "$SERVICE_PID" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVICE_PID" 2>/dev/null || true
  SERVICE_PID=
}
cleanup() {
  stop_service
  psql "$PG_BASE_URL/postgres" -XqAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v valgrind >/dev/null || { say "installing valgrind (Debian)"; apt_install valgrind; }
for tool in python3 psql pgbench callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "instructions: $tool is required" >&2; exit 1; }
done

# The binaries measured are copies, taken right after their build: a target
# directory shared with other checkouts may get theirs next.
BIN="$OUT/bin"
SYMBOLS_BIN="$OUT/bin-symbols"
mkdir -p "$BIN" "$SYMBOLS_BIN"
if [ "$BUILD" = 1 ]; then
  say "cargo build --release --locked"
  cargo build --release --locked
fi
cp "${BENCH_BIN_DIR:-$TARGET/release}/orders-service" "${BENCH_BIN_DIR:-$TARGET/release}/migrate" "$BIN/"
if [ "$BREAKDOWN" = 1 ]; then
  if [ "$BUILD" = 1 ]; then
    say "the same with symbols and line tables, in $TARGET/symbols"
    CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
      cargo build --release --locked --target-dir "$TARGET/symbols"
  fi
  cp "$TARGET/symbols/release/orders-service" "$SYMBOLS_BIN/"
fi

say "fresh database $DB_NAME: migrated, $ORDERS orders preloaded"
psql "$PG_BASE_URL/postgres" -XqAt -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
  -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME"
DB_URL="$PG_URL" "$BIN/migrate" >/dev/null
psql "$PG_URL" -XqAt -v ON_ERROR_STOP=1 -v first=1 -v last="$ORDERS" -f "$BENCH/preload_pg.sql"
psql "$PG_URL" -XqAt -c "VACUUM (ANALYZE) orders" -c "VACUUM (ANALYZE) order_items"

export DB_URL="$PG_URL" PORT RUST_LOG=warn
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

start_service() { # TIMEOUT COMMAND...
  local timeout=$1
  shift
  "$@" >>"$OUT/service.log" 2>&1 &
  SERVICE_PID=$!
  for _ in $(seq 1 $((timeout * 10))); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && return 0
    kill -0 "$SERVICE_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$OUT/service.log" >&2
  echo "instructions: the service did not become ready" >&2
  exit 1
}

under_callgrind() { # BINARY OUT-DIR REQUESTS...
  local binary=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  start_service 120 valgrind --tool=callgrind --separate-threads=no --instr-atstart=no \
    --callgrind-out-file="$dir/callgrind.%p" "$binary"
  python3 "$BENCH/instructions.py" load --pid "$SERVICE_PID" --port "$PORT" --out "$dir" \
    --warmup "$WARMUP" --count "$COUNT" "$@"
  stop_service
}

say "instructions per request (stripped release build, $COUNT requests each after $WARMUP warm-up)"
under_callgrind "$BIN/orders-service" "$OUT/counts"

if [ "$BREAKDOWN" = 1 ]; then
  say "breakdown by crate (build with symbols)"
  under_callgrind "$SYMBOLS_BIN/orders-service" "$OUT/breakdown" "GET /orders/{id}" "POST /orders"
  for name in "GET /orders/{id}" "POST /orders"; do
    dump=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["dump"])' \
      "$OUT/breakdown/load.json" "$name")
    python3 "$BENCH/instructions.py" crates --dump "$dump" --label "$name" --requests "$COUNT" |
      tee "$OUT/breakdown-$(echo "$name" | tr -c 'A-Za-z0-9\n' _).txt"
  done
fi

if [ "$WALL" = 1 ]; then
  if ! command -v wrk >/dev/null; then say "installing wrk $WRK_VERSION (Debian)"; apt_install "wrk=$WRK_VERSION"; fi
  say "wall clock: GET /orders/{id} (wrk, $CONNECTIONS connections) against pgbench -M prepared, ${WALL_SECONDS} s each, $ROUNDS rounds alternated"
  mkdir -p "$OUT/wall"
  python3 "$BENCH/bench.py" sql --root "$ROOT" --out "$OUT/pgbench" >/dev/null
  python3 -c "
import sys; sys.path.insert(0, '$BENCH'); import instructions
for n in range(1, $ORDERS + 1): print(instructions.preload_id(n))" >"$OUT/ids.txt"
  start_service 30 "$BIN/orders-service"
  BENCH_MODE=get BENCH_IDS="$OUT/ids.txt" wrk -t2 -c"$CONNECTIONS" -d2s -s "$BENCH/wrk/bench.lua" \
    "http://127.0.0.1:$PORT/" >/dev/null
  for round in $(seq 1 "$ROUNDS"); do
    BENCH_MODE=get BENCH_IDS="$OUT/ids.txt" python3 "$BENCH/instructions.py" cpu --service-pid "$SERVICE_PID" -- \
      wrk -t2 -c"$CONNECTIONS" -d"${WALL_SECONDS}s" -s "$BENCH/wrk/bench.lua" "http://127.0.0.1:$PORT/" \
      >"$OUT/wall/round-$round-service.txt"
    python3 "$BENCH/instructions.py" cpu --service-pid "$SERVICE_PID" -- \
      pgbench -n -c "$CONNECTIONS" -j 2 -T "$WALL_SECONDS" -M prepared -D owner=test \
      -D orders="$ORDERS" -f "$OUT/pgbench/get.sql" "$PG_URL" >"$OUT/wall/round-$round-pgbench.txt"
    # The same transactions held to the service's rate of this round: what
    # PostgreSQL spends on a query depends on how busy the machine is, so
    # this tells its cost at the service's pace apart from anything the
    # service adds.
    rate=$(python3 "$BENCH/instructions.py" rate --file "$OUT/wall/round-$round-service.txt")
    python3 "$BENCH/instructions.py" cpu --service-pid "$SERVICE_PID" -- \
      pgbench -n -c "$CONNECTIONS" -j 2 -T "$WALL_SECONDS" -R "$rate" -M prepared -D owner=test \
      -D orders="$ORDERS" -f "$OUT/pgbench/get.sql" "$PG_URL" >"$OUT/wall/round-$round-paced.txt"
  done
  python3 "$BENCH/instructions.py" share --out "$OUT/wall" --rounds "$ROUNDS" | tee "$OUT/wall/share.txt"
  rss=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVICE_PID/status")
  echo "  service peak RSS $rss MiB"
  stop_service
fi

echo
echo "$(git -C "$ROOT" rev-parse --short HEAD) $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs" \
  "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); files in ${OUT#$ROOT/}/"
