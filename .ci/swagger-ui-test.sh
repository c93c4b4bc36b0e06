#!/usr/bin/env bash
# Swagger UI in a real browser: Debian's headless Chromium, driven by
# playwright-core (pinned, from npm), against the service with
# authentication on: Authorize with a bearer token, then "Try it out" on
# POST /orders (201) and GET /orders/{order_id} (200). The page's
# screenshot is kept as target/swagger-ui.png for a person to look at.
#   bash .ci/swagger-ui-test.sh [--prepare]   # --prepare: only install the tools
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT_CORE_VERSION=1.64.1
TOOLS=.tools/playwright

if [ ! -x /usr/bin/chromium ]; then
    # The browser comes from Debian, never from a download of the test tool.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ "$(node -p "require('./$TOOLS/node_modules/playwright-core/package.json').version" 2>/dev/null)" != "$PLAYWRIGHT_CORE_VERSION" ]; then
    npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error \
        "playwright-core@$PLAYWRIGHT_CORE_VERSION"
fi
[ "${1:-}" = --prepare ] && exit 0

cargo build --quiet --locked --bins
mkdir -p target
# The script imports playwright-core from next to itself.
cp .ci/swagger-ui.mjs "$TOOLS/swagger-ui.mjs"
node "$TOOLS/swagger-ui.mjs" "${CARGO_TARGET_DIR:-$PWD/target}/debug/orders-service" "$PWD/target"
