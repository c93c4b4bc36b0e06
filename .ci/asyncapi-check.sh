#!/usr/bin/env bash
# The order events' contract: asyncapi.yaml must be a valid AsyncAPI 3.0
# document for the official AsyncAPI CLI (pinned, from npm): the document's
# own schema, the AMQP bindings' schemas, every $ref resolved, and the CLI's
# governance rules, a warning failing as an error does. Whether events match
# it is checked by the Rust tests (tests/api/events_contract.rs).
#   bash .ci/asyncapi-check.sh [--prepare]   # --prepare: only install the tools
set -euo pipefail
cd "$(dirname "$0")/.."

# 4.1.1 is the last release that runs on Debian's Node.js 20 (5.x needs 24).
ASYNCAPI_CLI_VERSION=4.1.1
TOOLS=.tools/asyncapi

if [ "$(node -p "require('./$TOOLS/node_modules/@asyncapi/cli/package.json').version" 2>/dev/null)" != "$ASYNCAPI_CLI_VERSION" ]; then
    npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error \
        "@asyncapi/cli@$ASYNCAPI_CLI_VERSION"
fi
# The CLI sends usage metrics unless its settings file says not to, and
# looks for a newer release of itself unless told not to.
printf '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"ci"}\n' >"$TOOLS/analytics.json"
[ "${1:-}" = --prepare ] && exit 0

ASYNCAPI_METRICS_CONFIG_PATH="$PWD/$TOOLS/analytics.json" ASYNCAPI_SKIP_NEW_VERSION_CHECK=true \
    "$TOOLS/node_modules/.bin/asyncapi" validate asyncapi.yaml --fail-severity warn
