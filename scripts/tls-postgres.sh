#!/usr/bin/env bash
# A throwaway PostgreSQL server that speaks TLS only, for the tests of
# `sslmode=verify-full` (tests/api/database_tls.rs).
#
#   scripts/tls-postgres.sh start DIR PORT   # prints nothing; ready when it returns
#   scripts/tls-postgres.sh stop DIR
#
# `start` makes, under DIR:
#   ca.pem        the CA that signed the server's certificate
#   other-ca.pem  a CA that signed nothing the server presents
#   server.pem    the server's certificate: DNS name `localhost` only (no IP
#                 address), so a client that connects to 127.0.0.1 and checks
#                 the name must refuse it
#   data/         the cluster, listening on 127.0.0.1:PORT with `ssl = on` and
#                 `hostssl` the only kind of connection pg_hba.conf accepts
#                 (user postgres, trust: the test is about the certificate)
#
# It is a second cluster of its own, never the machine's main one. PostgreSQL
# refuses to run as root, so as root the cluster belongs to the `postgres`
# user. The binaries are the newest of Debian's /usr/lib/postgresql/*/bin
# (initdb and pg_ctl are not on the PATH there) unless PG_BIN says otherwise.
set -euo pipefail

if [ -z "${PG_BIN:-}" ]; then
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
fi

usage() {
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
}

# Runs a command as the cluster's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

certificates() {
    local dir="$1"
    # Quiet, fast keys: the test makes a fresh set each run.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 2 -subj "/CN=orders test CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 2 -subj "/CN=orders test other CA" \
        -keyout "$dir/other-ca.key" -out "$dir/other-ca.pem" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n' \
        >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -days 2 \
        -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
}

start() {
    local dir="$1" port="$2"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    certificates "$dir"
    chmod 0755 "$dir"
    chmod 0644 "$dir"/*.pem
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        chown postgres: "$dir/server.key"
    fi
    chmod 0600 "$dir/server.key"
    as_owner "$PG_BIN/initdb" --pgdata="$dir/data" --username=postgres \
        --auth=trust --no-sync >"$dir/initdb.log" 2>&1
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = '$dir/server.pem'
ssl_key_file = '$dir/server.key'
fsync = off
EOF
    cat >"$dir/data/pg_hba.conf" <<EOF
local     all all              trust
hostssl   all all 127.0.0.1/32 trust
EOF
    as_owner "$PG_BIN/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" \
        --wait --timeout=60 start >/dev/null
}

stop() {
    local dir="$1"
    if [ -d "$dir/data" ]; then
        as_owner "$PG_BIN/pg_ctl" --pgdata="$dir/data" --mode=immediate \
            --wait stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
