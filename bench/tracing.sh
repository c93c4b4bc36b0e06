#!/usr/bin/env bash
# The cost of traces: the same release binary run three ways side
# by side on one PostgreSQL database, measured in interleaved rounds so that
# a change in the machine's load falls on all three alike:
#
#   off   OTEL_EXPORTER_OTLP_ENDPOINT unset: spans are made (logs and calls
#         carry trace ids) but never exported
#   on    every trace exported over OTLP/HTTP (protobuf) to a fake collector
#   10%   the same with OTEL_TRACES_SAMPLER=parentbased_traceidratio, 0.1
#
#   bench/run.sh --tracing [--no-build]
#
# BENCH_BASELINE_BIN=path/to/orders-service adds a fourth, "none": a build
# without traces at all (one from before traces were added), which prices the spans'
# bookkeeping that "off" still does.
#
# The fake collector (bench/fake_collector.py) answers 200 to every batch and
# counts the bytes; it runs on the same two cores, so "on" pays for it too.
# Environment: DURATION (10 s a measurement), ROUNDS (3), CONNECTIONS (32),
# WRK_THREADS (2), BENCH_PORT (18080; the three use it and the next two, the
# collector the third after), PG_BASE_URL (postgresql://postgres@127.0.0.1:5432),
# BENCH_BIN_DIR (default target/release). Results stay in bench/out/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
cd "$ROOT"

BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --tracing) ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-2}
PORT=${BENCH_PORT:-18080}
COLLECTOR_PORT=$((PORT + 3))
DB_NAME=orders_bench_tracing
PG_BASE_URL=${PG_BASE_URL:-postgresql://postgres@127.0.0.1:5432}
PG_URL="$PG_BASE_URL/$DB_NAME"
OUT="$BENCH/out/$(date +%Y%m%d-%H%M%S)-tracing"
mkdir -p "$OUT"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
  cargo build --release --locked --bins
fi
BIN_DIR=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
[ -x "$BIN_DIR/orders-service" ] || { echo "bench: build the release binaries first" >&2; exit 1; }

psql -q "$PG_BASE_URL/postgres" -c "DROP DATABASE IF EXISTS $DB_NAME" -c "CREATE DATABASE $DB_NAME"
DB_URL="$PG_URL" "$BIN_DIR/migrate" >/dev/null

python3 "$BENCH/fake_collector.py" "$COLLECTOR_PORT" >"$OUT/collector.txt" 2>&1 &
PIDS+=($!)

declare -A VARIANT_PORT=([off]=$PORT [on]=$((PORT + 1)) ["10%"]=$((PORT + 2)) [none]=$((PORT + 4)))
VARIANTS=(off on 10%)
start() {
  local name=$1; shift
  local binary="$BIN_DIR/orders-service"
  [ "$name" = none ] && binary=$BENCH_BASELINE_BIN
  env DB_URL="$PG_URL" PORT="${VARIANT_PORT[$name]}" RUST_LOG=warn AUTH_ON=false "$@" \
    "$binary" >"$OUT/service-${name/\%/pct}.log" 2>&1 &
  PIDS+=($!)
  VARIANT_PID[$name]=$!
}
declare -A VARIANT_PID=()
if [ -n "${BENCH_BASELINE_BIN:-}" ]; then
  VARIANTS+=(none)
  start none
fi
ENDPOINT="http://127.0.0.1:$COLLECTOR_PORT"
start off
start on OTEL_EXPORTER_OTLP_ENDPOINT="$ENDPOINT"
start 10% OTEL_EXPORTER_OTLP_ENDPOINT="$ENDPOINT" \
  OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
for name in "${VARIANTS[@]}"; do
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:${VARIANT_PORT[$name]}/readyz" && break
    sleep 0.1
  done
done

# Ids for the get: some orders placed through the service.
IDS="$OUT/ids.txt"
: >"$IDS"
for _ in $(seq 1 200); do
  curl -sf -X POST -H 'Content-Type: application/json' \
    -d '{"order":[{"product":"latte","size":"small","quantity":1}]}' \
    "http://127.0.0.1:$PORT/orders" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' >>"$IDS"
done

# CPU seconds the service has used (user + system), from /proc.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

measure() { # variant endpoint -> "req/s cpu-us-per-request"
  local port=${VARIANT_PORT[$1]} pid=${VARIANT_PID[$1]} before after out
  before=$(cpu_ticks "$pid")
  out=$(BENCH_MODE=$2 BENCH_IDS="$IDS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" \
    --timeout 10s -s "$BENCH/wrk/bench.lua" "http://127.0.0.1:$port/orders")
  after=$(cpu_ticks "$pid")
  echo "$out" >>"$OUT/wrk.txt"
  # Throughput swings with whatever else the shared machine runs; the
  # service's own CPU time per request hardly does.
  echo "$out" | awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /requests in/ { n = $1 }
    /Requests\/sec/ { rate = $2 }
    END { printf "%s %.0f", rate, ticks / hz * 1e6 / n }'
}

RESULTS="$OUT/results.txt"
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  for endpoint in get create; do
    # A different order each round: no variant always goes first.
    shift_by=$(( (round - 1) % ${#VARIANTS[@]} ))
    order=("${VARIANTS[@]:shift_by}" "${VARIANTS[@]:0:shift_by}")
    for variant in "${order[@]}"; do
      rate=$(measure "$variant" "$endpoint")
      echo "$round $endpoint $variant $rate" | tee -a "$RESULTS"
    done
  done
done

counts() { # variant -> exported dropped
  curl -s "http://127.0.0.1:${VARIANT_PORT[$1]}/metrics" | awk '
    /^orders_trace_spans_exported_total / { e = $2 }
    /^orders_trace_spans_dropped_total/ { d += $2 }
    END { printf "%d %d", e, d }'
}

echo
echo "median req/s of $ROUNDS rounds of ${DURATION}s, $CONNECTIONS connections (PostgreSQL):"
python3 - "$RESULTS" "$(counts on)" "$(counts 10%)" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
rates, cpu = {}, {}
for _, endpoint, variant, rate, us in rows:
    rates.setdefault((endpoint, variant), []).append(float(rate))
    cpu.setdefault((endpoint, variant), []).append(float(us))
baseline = [v for (e, v) in rates if v == "none"][:1]
print("| endpoint | off | on (all traces exported) | on, 10% sampled |" + (" no traces (baseline) |" if baseline else ""))
print("|---|---|---|---|" + ("---|" if baseline else ""))
for endpoint in ["get", "create"]:
    off = statistics.median(rates[(endpoint, "off")])
    cells = [f"{off:,.0f}"]
    for variant in ["on", "10%"] + baseline:
        value = statistics.median(rates[(endpoint, variant)])
        cells.append(f"{value:,.0f} ({(value / off - 1) * 100:+.1f}%)")
    print(f"| {endpoint} req/s | " + " | ".join(cells) + " |")
    off = statistics.median(cpu[(endpoint, "off")])
    cells = [f"{off:,.0f}"]
    for variant in ["on", "10%"] + baseline:
        value = statistics.median(cpu[(endpoint, variant)])
        cells.append(f"{value:,.0f} ({(value / off - 1) * 100:+.1f}%)")
    print(f"| {endpoint} service CPU µs/request | " + " | ".join(cells) + " |")
for name, counts in [("on", sys.argv[2]), ("10%", sys.argv[3])]:
    exported, dropped = counts.split()
    print(f"{name}: spans exported {int(exported):,}, dropped {int(dropped):,}")
PY
echo "(all figures: $OUT)"
