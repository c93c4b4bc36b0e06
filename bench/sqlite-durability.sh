#!/usr/bin/env bash
# What SQLite's `synchronous = FULL` costs per commit against NORMAL, in WAL
# mode as the service runs it: the same N one-row transactions, each
# committed on its own, timed for each setting in turn (three rounds).
# FULL syncs the write-ahead log at every commit, so a commit that returned
# survives a power loss; NORMAL may lose the last commits.
#
#   bench/sqlite-durability.sh [N]      # default 2000; needs the sqlite3 CLI
set -euo pipefail
n=${1:-2000}
command -v sqlite3 >/dev/null || { echo "needs the sqlite3 command (Debian: sqlite3)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
{
    echo "PRAGMA journal_mode=WAL;"
    echo "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
    for i in $(seq "$n"); do echo "BEGIN; INSERT INTO t (v) VALUES ('x$i'); COMMIT;"; done
} >"$dir/commits.sql"
for round in 1 2 3; do
    for mode in NORMAL FULL; do
        rm -f "$dir"/db*
        start=$(date +%s%N)
        { echo "PRAGMA synchronous=$mode;"; cat "$dir/commits.sql"; } | sqlite3 "$dir/db" >/dev/null
        end=$(date +%s%N)
        awk -v r="$round" -v m="$mode" -v n="$n" -v ns=$((end - start)) \
            'BEGIN { printf "round %d  %-6s  %d commits  %.3f s  %.0f us per commit\n", r, m, n, ns / 1e9, ns / 1e3 / n }'
    done
done
