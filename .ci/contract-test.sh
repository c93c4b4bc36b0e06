#!/usr/bin/env bash
# Contract fuzzing: schemathesis generates requests from the committed
# oas.yaml and checks every answer against it (all checks), against the
# service built by the tests, on PostgreSQL, with authentication on (a key
# and token made here) and fake upstreams so that pay and cancel can
# succeed. Fails under 1,000 generated cases.
#   bash .ci/contract-test.sh [--prepare]   # --prepare: only install the tools
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=.ci/.venv-schemathesis
SEED="${SCHEMATHESIS_SEED:-20261125}"
MIN_CASES=1000
ADMIN_URL="${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
BASE_URL="${ADMIN_URL%/*}"
DB="orders_contract_$$"
PORT=18700
UPSTREAM_PORT=18701

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
[ "${1:-}" = --prepare ] && exit 0

cargo build --quiet --locked --bins

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "${KEYS:-/nonexistent}"
}
trap cleanup EXIT

# A throwaway RSA key and an RS256 token signed with it.
KEYS="$(mktemp -d)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEYS/private.pem" 2>/dev/null
openssl pkey -in "$KEYS/private.pem" -pubout -out "$KEYS/public.pem"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now="$(date +%s)"
jwt_header="$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)"
jwt_claims="$(printf '{"sub":"contract-run","aud":"orders-api","iat":%d,"exp":%d}' "$now" "$((now + 3600))" | b64url)"
jwt_signature="$(printf '%s.%s' "$jwt_header" "$jwt_claims" | openssl dgst -sha256 -sign "$KEYS/private.pem" -binary | b64url)"
TOKEN="$jwt_header.$jwt_claims.$jwt_signature"

psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
DB_URL="$BASE_URL/$DB" "${CARGO_TARGET_DIR:-target}/debug/migrate"

python3 .ci/fake_upstreams.py "$UPSTREAM_PORT" &
pids+=($!)
# OPS_ADDR: any free port, as other checks may run a server beside this one.
DB_URL="$BASE_URL/$DB" PORT="$PORT" OPS_ADDR=127.0.0.1:0 RUST_LOG=warn \
    AUTH_ON=true JWT_PUBLIC_KEY_FILE="$KEYS/public.pem" JWT_AUDIENCE=orders-api \
    PAYMENTS_URL="http://127.0.0.1:$UPSTREAM_PORT" KITCHEN_URL="http://127.0.0.1:$UPSTREAM_PORT" \
    "${CARGO_TARGET_DIR:-target}/debug/orders-service" > target/contract-server.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat target/contract-server.log; exit 1; }

# One worker: schemathesis' coverage phase is not thread-safe in this version.
status=0
CONTRACT_TOKEN="$TOKEN" SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=.ci \
    "$VENV/bin/st" --config-file .ci/schemathesis.toml run oas.yaml --url "http://127.0.0.1:$PORT" \
    --checks all --max-examples 150 --workers 1 --seed "$SEED" --no-color \
    > target/contract-report.txt 2>&1 || status=$?
tail -n 25 target/contract-report.txt
if [ "$status" -ne 0 ]; then
    echo "schemathesis found failures (full report: target/contract-report.txt)" >&2
    cat target/contract-report.txt >&2
    exit "$status"
fi
cases="$(grep -oE '[0-9]+ generated' target/contract-report.txt | tail -n1 | grep -oE '[0-9]+' || echo 0)"
if [ "$cases" -lt "$MIN_CASES" ]; then
    echo "only $cases generated cases (at least $MIN_CASES required)" >&2
    exit 1
fi
if grep -E '"level":"(ERROR|WARN)"' target/contract-server.log | grep -v 'not set' | head -5 | grep -q .; then
    echo "the service logged errors during the run:" >&2
    grep -E '"level":"(ERROR|WARN)"' target/contract-server.log | head -20 >&2
    exit 1
fi
echo "contract run: $cases generated cases, no failures"
