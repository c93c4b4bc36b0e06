#!/usr/bin/env bash
# Builds both images from the committed Dockerfiles, unchanged, and runs what
# they contain, on a machine without a Docker engine that cannot pull base
# images:
#
# 1. STAND-INS for the two base images, made here (they are not the real
#    images; what they cannot prove is the real images' contents):
#    - `rust:<version>-slim-trixie`: a Debian 13 root file system from
#      debootstrap (minbase, gcc, libc6-dev, ca-certificates), with this
#      machine's Rust toolchain at the official image's paths
#      (/usr/local/cargo, /usr/local/rustup);
#    - `gcr.io/distroless/cc-debian13:nonroot`: from the same Debian 13
#      packages, only glibc, libgcc, the CA certificates, and /etc/passwd
#      with `nonroot` (65532); no shell.
# 2. `buildah build` of Dockerfile and migrations.dockerfile (`--pull=never`,
#    `--isolation chroot`, `vfs` storage), the second reusing the first's
#    builder layers.
# 3. Each image's binary run as user 65532 inside that image's root file
#    system mounted read-only: `migrate` against a fresh PostgreSQL database,
#    then the server, which must answer /readyz 200 and create and read an
#    order.
#
#   bash .ci/images.sh        # as root; installs buildah and debootstrap
set -euo pipefail
cd "$(dirname "$0")/.."

RUST_VERSION=$(sed -n 's/^FROM rust:\([0-9.]*\)-slim-trixie.*/\1/p' Dockerfile | head -n1)
RUNTIME=gcr.io/distroless/cc-debian13:nonroot
WORK=/var/tmp/orders-images
ROOTFS=$WORK/trixie
ADMIN_URL="${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
DB="orders_images_$$"
PORT=18720
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
buildah() { command buildah --storage-driver vfs "$@"; }

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap >/dev/null
        break
    }
done
toolchain="$(rustc --print sysroot)"
[ "$(rustc --version | cut -d' ' -f2)" = "$RUST_VERSION" ] || {
    echo "the Dockerfile's rust:$RUST_VERSION needs this machine's toolchain to be $RUST_VERSION" >&2
    exit 1
}

# vfs keeps a whole copy of the root file system for every layer: a first
# build peaked at 47 GB under /var/lib/containers here. The layers of an
# earlier run stay as a cache (a second run rebuilds only what changed) when
# the disk can hold a whole build beside them; otherwise everything goes, the
# stand-ins are made again (a minute or two), and a build that still would
# not fit stops here rather than filling the disk.
STORE=/var/lib/containers
PEAK_GB=52
mkdir -p "$STORE" "$WORK"
free_gb() { df --output=avail -BG "$STORE" | tail -n1 | tr -dc 0-9; }
# A change of Cargo.toml or Cargo.lock rebuilds nearly every layer, so the
# cache is kept only when a whole build fits beside it.
if [ "$(free_gb)" -lt "$PEAK_GB" ]; then
    step "$(free_gb) GB free under $STORE: dropping the layer cache"
    buildah rm --all >/dev/null 2>&1 || true
    buildah rmi --all --force >/dev/null 2>&1 || true
fi
if [ "$(free_gb)" -lt "$PEAK_GB" ]; then
    echo "$(free_gb) GB free under $STORE; building both images with vfs storage needs up to $PEAK_GB GB" >&2
    exit 1
fi

step "Stand-in base images (not the real ones)"
if [ ! -x "$ROOTFS/usr/bin/gcc" ]; then
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
        trixie "$ROOTFS" http://deb.debian.org/debian >"$WORK/debootstrap.log"
fi
if ! buildah inspect "rust:$RUST_VERSION-slim-trixie" >/dev/null 2>&1; then
    builder=$(buildah from scratch)
    mnt=$(buildah mount "$builder")
    cp -a "$ROOTFS/." "$mnt/"
    mkdir -p "$mnt/usr/local/rustup/toolchains" "$mnt/usr/local/cargo/bin"
    cp -a "$toolchain" "$mnt/usr/local/rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu"
    for tool in cargo rustc rustdoc; do
        ln -s "../../rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu/bin/$tool" \
            "$mnt/usr/local/cargo/bin/$tool"
    done
    # This machine's CA bundle: crates.io is reached through its network,
    # whose TLS certificates it trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
    buildah umount "$builder" >/dev/null
    buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        "$builder"
    buildah commit -q "$builder" "docker.io/library/rust:$RUST_VERSION-slim-trixie" >/dev/null
    buildah rm "$builder" >/dev/null
fi
if ! buildah inspect "$RUNTIME" >/dev/null 2>&1; then
    runtime=$(buildah from scratch)
    mnt=$(buildah mount "$runtime")
    mkdir -p "$mnt/etc" "$mnt/usr/lib/x86_64-linux-gnu" "$mnt/lib64" "$mnt/tmp" "$mnt/home/nonroot"
    for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1; do
        cp -aL "$ROOTFS/usr/lib/x86_64-linux-gnu/$lib" "$mnt/usr/lib/x86_64-linux-gnu/"
    done
    ln -s ../usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$mnt/lib64/ld-linux-x86-64.so.2"
    ln -s usr/lib "$mnt/lib"
    # The bundle only: the rest of /etc/ssl/certs are links into the builder's
    # /usr/share.
    mkdir -p "$mnt/etc/ssl/certs"
    cp "$ROOTFS/etc/ssl/certs/ca-certificates.crt" "$mnt/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$mnt/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$mnt/etc/group"
    chown 65532:65532 "$mnt/home/nonroot"
    chmod 1777 "$mnt/tmp"
    buildah umount "$runtime" >/dev/null
    buildah config --user 65532:65532 "$runtime"
    buildah commit -q "$runtime" "$RUNTIME" >/dev/null
    buildah rm "$runtime" >/dev/null
fi

step "Build both images from the committed Dockerfiles"
# The builds' output (cargo's, mostly) goes to a log, shown when a build fails.
build_failed() { tail -n 60 "$WORK/build.log" >&2; echo "the build failed; its whole log: $WORK/build.log" >&2; exit 1; }
buildah build --pull=never --layers -q -f Dockerfile -t coffeemesh-orders:ci . >"$WORK/build.log" 2>&1 || build_failed
buildah build --pull=never --layers -q -f migrations.dockerfile -t coffeemesh-orders-migrations:ci . >>"$WORK/build.log" 2>&1 || build_failed
echo "built in $((SECONDS - started)) s"

step "Run each image's binary as 65532 in its own read-only root file system"
cleanup() {
    if [ -n "${server_pid:-}" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    for dir in "$WORK/ro-server" "$WORK/ro-migrations"; do
        umount "$dir" 2>/dev/null || true
    done
    for container in ${containers:-}; do
        buildah umount "$container" >/dev/null 2>&1 || true
        buildah rm "$container" >/dev/null 2>&1 || true
    done
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
containers=""
# A read-only view of an image's root file system at $2.
read_only_root() {
    local container mnt
    container=$(buildah from --pull=never "$1")
    containers="$containers $container"
    mnt=$(buildah mount "$container")
    mkdir -p "$2"
    mount --bind "$mnt" "$2"
    mount -o remount,bind,ro "$2"
}
read_only_root coffeemesh-orders-migrations:ci "$WORK/ro-migrations"
read_only_root coffeemesh-orders:ci "$WORK/ro-server"
for root in "$WORK/ro-migrations" "$WORK/ro-server"; do
    if [ -e "$root/bin/sh" ] || [ -e "$root/usr/bin/sh" ]; then
        echo "$root has a shell; the runtime image must not" >&2
        exit 1
    fi
done

psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
url="${ADMIN_URL%/*}/$DB"
# env runs on this side and execs chroot with only these variables; the
# images have no env of their own (no shell, no tools).
env -i DB_URL="$url" /usr/sbin/chroot --userspec=65532:65532 "$WORK/ro-migrations" /usr/local/bin/migrate
env -i DB_URL="$url" PORT="$PORT" RUST_LOG=warn \
    /usr/sbin/chroot --userspec=65532:65532 "$WORK/ro-server" /usr/local/bin/orders-service \
    >"$WORK/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$WORK/server.log"; exit 1; }
echo "/readyz: 200"
created=$(curl -sf "http://127.0.0.1:$PORT/orders" -H 'content-type: application/json' \
    -d '{"order": [{"product": "cappuccino", "size": "big", "quantity": 2}]}')
id=$(printf '%s' "$created" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
read_back=$(curl -sf "http://127.0.0.1:$PORT/orders/$id")
printf '%s' "$read_back" | python3 -c 'import json, sys; o = json.load(sys.stdin); assert o["id"] == sys.argv[1] and o["status"] == "created", o' "$id"
echo "POST /orders: 201, GET /orders/$id: 200"
echo "images built and run in $((SECONDS - started)) s"
