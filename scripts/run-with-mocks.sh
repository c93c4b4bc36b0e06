#!/usr/bin/env bash
# Runs orders-service against Prism mocks of the payments and kitchen
# services made from contracts/, so orders can be paid and cancelled on a
# laptop. Needs Node.js (npm) and the Rust toolchain.
#
#   scripts/run-with-mocks.sh            # cargo run
#   scripts/run-with-mocks.sh --release  # extra arguments go to cargo run
#
# Environment: PAYMENTS_MOCK_PORT (4010), KITCHEN_MOCK_PORT (4011), and any
# variable of the service (PORT, DB_URL, ...; LOG_FORMAT defaults to pretty,
# KITCHEN_POLL_MS to 20000, RECONCILE_INTERVAL_MS to 2000).
# The mocks' logs, including any request that does not match a contract,
# are in .tools/prism/*.log. Ctrl-C stops the service and the mocks.
set -euo pipefail

PRISM_VERSION=5.16.0
PAYMENTS_MOCK_PORT=${PAYMENTS_MOCK_PORT:-4010}
KITCHEN_MOCK_PORT=${KITCHEN_MOCK_PORT:-4011}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools=.tools/prism
prism=$tools/node_modules/.bin/prism

if [[ ! -x $prism ]] || [[ $("$prism" --version 2>/dev/null) != "$PRISM_VERSION" ]]; then
    command -v npm >/dev/null || { echo "npm is needed to install Prism (Node.js 18 or later)" >&2; exit 1; }
    echo "installing @stoplight/prism-cli@$PRISM_VERSION into $tools" >&2
    npm install --prefix "$tools" --no-audit --no-fund --loglevel=error \
        "@stoplight/prism-cli@$PRISM_VERSION" >&2
fi

pids=()
cleanup() {
    local pid
    # ${a[@]+...}: an empty array under set -u on the bash 3.2 of macOS.
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${pids[@]+"${pids[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_mock NAME PORT_VARIABLE CONTRACT: starts one mock, waits until it answers.
start_mock() {
    local name=$1 variable=$2 contract=$3 port pid
    port=${!variable}
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
        echo "port $port is already in use; set $variable to another" >&2
        exit 1
    fi
    "$prism" mock -h 127.0.0.1 -p "$port" "$contract" >"$tools/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
            echo "$name mock on http://127.0.0.1:$port ($contract; log: $tools/$name.log)" >&2
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the $name mock stopped; its log:" >&2
            cat "$tools/$name.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "the $name mock did not answer within 20 s; see $tools/$name.log" >&2
    exit 1
}

start_mock payments PAYMENTS_MOCK_PORT contracts/payments.yaml
start_mock kitchen KITCHEN_MOCK_PORT contracts/kitchen.yaml

export PAYMENTS_URL=http://127.0.0.1:$PAYMENTS_MOCK_PORT
export KITCHEN_URL=http://127.0.0.1:$KITCHEN_MOCK_PORT
export LOG_FORMAT=${LOG_FORMAT:-pretty}
# The mock kitchen says every schedule is finished: ask it every 20 s, so an
# order paid by hand stays `progress` long enough to be cancelled, then
# becomes `dispatched`.
export KITCHEN_POLL_MS=${KITCHEN_POLL_MS:-20000}
export RECONCILE_INTERVAL_MS=${RECONCILE_INTERVAL_MS:-2000}

# Not exec: the EXIT trap must outlive the service to stop the mocks.
cargo run --bin orders-service "$@"
