#!/usr/bin/env bash
# What order events cost, side by side in one run, on PostgreSQL:
#
#   bench/events.sh [--no-build] [--rounds N]
#
# For each round, in turn, under the same POST /orders load from wrk: the
# service without events; with events whose broker is out of reach (what the
# outbox itself costs a create: the event written in its transaction, the
# relay waiting); and with events to the RabbitMQ broker of this machine (a
# durable queue bound to the exchange, as a real consumer would have). The
# broker runs on the same two cores as the service, PostgreSQL and wrk, so
# the last column also pays for the broker's own work. Prints creates per
# second for each and how fast the relay publishes: events confirmed per
# second while the load runs, and the rate at which it empties the backlog
# once the load stops.
#
# Environment: DURATION (10 s a measurement), CONNECTIONS (32), BENCH_PORT
# (18090), PG_BASE_URL (postgresql://postgres@127.0.0.1:5432), EVENTS_BENCH_URL
# (amqp://guest:guest@127.0.0.1:5672/%2f), BENCH_BIN_DIR (the binaries, default
# $CARGO_TARGET_DIR/release, else target/release).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=1
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --rounds) ROUNDS=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${BENCH_PORT:-18090}
PG_BASE_URL=${PG_BASE_URL:-postgresql://postgres@127.0.0.1:5432}
DB_NAME=orders_bench_events
DB_URL="$PG_BASE_URL/$DB_NAME"
BROKER=${EVENTS_BENCH_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
EXCHANGE=orders-bench-events
BIN_DIR=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
SERVICE_PID=
CONSUMER_PID=

for tool in wrk psql curl python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (bench/run.sh installs wrk)" >&2; exit 1; }
done

stop() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() { stop "$SERVICE_PID"; stop "$CONSUMER_PID"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
  cargo build --release --locked --bins --example order_ledger
fi
LEDGER=$BIN_DIR/examples/order_ledger
[ -x "$LEDGER" ] || cargo build --release --locked --example order_ledger

metric() { # metric NAME: its value in /metrics (summed over labels), 0 if absent
  curl -s "http://127.0.0.1:$PORT/metrics" | awk -v name="$1" \
    '$1 == name || index($1, name "{") == 1 { sum += $2 } END { printf "%d\n", sum }'
}

start() { # start [EVENTS_URL]
  env -i PATH="$PATH" DB_URL="$DB_URL" PORT="$PORT" OPS_ADDR=127.0.0.1:0 RUST_LOG=warn \
    ${1:+EVENTS_URL="$1" EVENTS_EXCHANGE="$EXCHANGE"} \
    "$BIN_DIR/orders-service" >/dev/null 2>&1 &
  SERVICE_PID=$!
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "bench: the service did not become ready" >&2
  exit 1
}

load() { # creates per second under DURATION s of POST /orders
  BENCH_MODE=create wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
    -s bench/wrk/bench.lua "http://127.0.0.1:$PORT/orders" |
    awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }'
}

psql "$PG_BASE_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME" -c "CREATE DATABASE $DB_NAME"
DB_URL="$DB_URL" "$BIN_DIR/migrate" >/dev/null
# A consumer with a durable queue, so the broker stores every event before
# it confirms it, as it does for real consumers.
EVENTS_URL="$BROKER" EVENTS_EXCHANGE="$EXCHANGE" LEDGER_QUEUE=orders-bench-ledger \
  LEDGER_SUMMARY=1 "$LEDGER" >/dev/null 2>&1 &
CONSUMER_PID=$!
sleep 1

# published/s: confirmed while the load ran; backlog/s: the rate at which the
# relay alone emptied what was left once the load stopped.
# A round not reported: the first load on a fresh database and a cold
# cache is markedly slower whatever is measured.
start ""
load >/dev/null
stop "$SERVICE_PID"

printf '%-6s %10s %16s %16s %12s %8s %10s\n' round "off /s" "outbox only /s" "with broker /s" "published/s" "drain s" "backlog/s"
for round in $(seq 1 "$ROUNDS"); do
  start ""
  off=$(load)
  stop "$SERVICE_PID"

  # A port nothing listens on: the relay cannot connect and backs off.
  start "amqp://guest:guest@127.0.0.1:1/%2f"
  away=$(load)
  stop "$SERVICE_PID"
  psql "$DB_URL" -qc "DELETE FROM outbox"

  start "$BROKER"
  before=$(metric orders_events_published_total)
  on=$(load)
  during=$(( $(metric orders_events_published_total) - before ))
  drained=$(python3 - "$PORT" <<'PY'
import sys, time, urllib.request
port = sys.argv[1]
started = time.monotonic()
while time.monotonic() - started < 300:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    pending = [l for l in text.splitlines() if l.startswith("orders_outbox_pending ")]
    if pending and float(pending[0].split()[1]) == 0:
        break
    time.sleep(0.05)
print(f"{time.monotonic() - started:.1f}")
PY
)
  total=$(( $(metric orders_events_published_total) - before ))
  stop "$SERVICE_PID"
  pct() { python3 -c "print(f'{$1} ({($1 - $off) / $off * 100:+.1f}%)')"; }
  rate=$(python3 -c "d = $drained; print(f'{($total - $during) / d:.0f}' if d > 0.5 else '-')")
  printf '%-6s %10s %16s %16s %12s %8s %10s\n' "$round" "$off" "$(pct "$away")" "$(pct "$on")" "$((during / DURATION))" "$drained" "$rate"
done
psql "$PG_BASE_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME"
