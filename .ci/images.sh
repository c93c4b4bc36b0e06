#!/usr/bin/env bash
# Builds both images from the committed Dockerfiles and runs what they
# contain, on a machine without a Docker engine that cannot pull base images:
#
# 1. A STAND-IN for the runtime base image, made here (not the real image;
#    what it cannot prove is the real image's contents):
#    `gcr.io/distroless/cc-debian13:nonroot` from Debian 13 packages
#    (debootstrap minbase): only glibc, libgcc, the CA certificates, and
#    /etc/passwd with `nonroot` (65532); no shell.
# 2. `buildah build` of Dockerfile and migrations.dockerfile (`--pull=never`,
#    `--isolation chroot`) with BINARIES=prebuilt: the release binaries
#    `cargo build --release --locked` made once for every check of CI go in
#    through the Dockerfiles' own `prebuilt` stage, and RUNTIME_IMAGE names
#    the stand-in. Storage: kernel overlay where it works, else
#    fuse-overlayfs, else vfs (a whole copy per layer); the run says which.
# 3. Each image's binary run as user 65532 inside that image's root file
#    system mounted read-only: `migrate` against a fresh PostgreSQL database,
#    then the server, which must answer /readyz 200 and create and read an
#    order.
#
#   bash .ci/images.sh            # as root; installs buildah and debootstrap
#   bash .ci/images.sh --prepare  # only the tools and the stand-in's root file system
set -euo pipefail
cd "$(dirname "$0")/.."

RUST_VERSION=$(sed -n 's/^ARG RUST_IMAGE=.*rust:\([0-9.]*\)-slim-trixie@.*/\1/p' Dockerfile)
# Not the real image: --build-arg RUNTIME_IMAGE names it instead of the
# Dockerfiles' pinned digest, which no local image can match.
RUNTIME=localhost/stand-in/distroless-cc-debian13:nonroot
WORK=/var/tmp/orders-images
ROOTFS=$WORK/trixie
BINARIES="${CARGO_TARGET_DIR:-target}/release"
ADMIN_URL="${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
DB="orders_images_$$"
PORT=18720
export BUILDAH_ISOLATION=chroot

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap fuse-overlayfs >/dev/null
        break
    }
done
mkdir -p "$WORK"
if [ ! -e "$ROOTFS/usr/lib/x86_64-linux-gnu/libgcc_s.so.1" ]; then
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=ca-certificates \
        trixie "$ROOTFS" http://deb.debian.org/debian >"$WORK/debootstrap.log"
fi
[ "${1:-}" = --prepare ] && exit 0

# The binaries must be what the Dockerfiles' builder would make: the same
# compiler, a locked release build.
[ "$(rustc --version | cut -d' ' -f2)" = "$RUST_VERSION" ] || {
    echo "the Dockerfile's rust:$RUST_VERSION needs this machine's toolchain to be $RUST_VERSION" >&2
    exit 1
}
cargo build --release --locked --bins --quiet

# The first storage driver that can make and mount a container here.
STORE=/var/lib/containers
for candidate in overlay fuse-overlayfs vfs; do
    case "$candidate" in
        overlay) options=(--storage-driver overlay) ;;
        fuse-overlayfs) options=(--storage-driver overlay --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs) ;;
        vfs) options=(--storage-driver vfs) ;;
    esac
    probe=$(command buildah "${options[@]}" from scratch 2>/dev/null) || continue
    if command buildah "${options[@]}" mount "$probe" >/dev/null 2>&1; then
        command buildah "${options[@]}" rm "$probe" >/dev/null
        break
    fi
    command buildah "${options[@]}" rm "$probe" >/dev/null 2>&1 || true
done
buildah() { command buildah "${options[@]}" "$@"; }
echo "storage: $candidate"
# vfs copies the root file system for every layer; the others share them.
free_gb() { df --output=avail -BG "$STORE" | tail -n1 | tr -dc 0-9; }
if [ "$(free_gb)" -lt 5 ]; then
    echo "$(free_gb) GB free under $STORE; the images need a few GB" >&2
    exit 1
fi

step "Stand-in runtime base image (not the real one)"
if ! buildah inspect "$RUNTIME" >/dev/null 2>&1; then
    runtime=$(buildah from scratch)
    mnt=$(buildah mount "$runtime")
    mkdir -p "$mnt/etc" "$mnt/usr/lib/x86_64-linux-gnu" "$mnt/lib64" "$mnt/tmp" "$mnt/home/nonroot"
    for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1; do
        cp -aL "$ROOTFS/usr/lib/x86_64-linux-gnu/$lib" "$mnt/usr/lib/x86_64-linux-gnu/"
    done
    ln -s ../usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$mnt/lib64/ld-linux-x86-64.so.2"
    ln -s usr/lib "$mnt/lib"
    # The bundle only: the rest of /etc/ssl/certs are links into /usr/share.
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

step "Build both images from the committed Dockerfiles, with the release binaries"
# The build context holds the binaries only, where the prebuilt stage
# looks for them.
CONTEXT="$WORK/context"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/target/release"
cp "$BINARIES/orders-service" "$BINARIES/migrate" "$CONTEXT/target/release/"
build_failed() { tail -n 60 "$WORK/build.log" >&2; echo "the build failed; its whole log: $WORK/build.log" >&2; exit 1; }
ARGS=(--build-arg BINARIES=prebuilt --build-arg "RUNTIME_IMAGE=$RUNTIME")
buildah build --pull=never --layers -q "${ARGS[@]}" -f Dockerfile -t coffeemesh-orders:ci "$CONTEXT" >"$WORK/build.log" 2>&1 || build_failed
buildah build --pull=never --layers -q "${ARGS[@]}" -f migrations.dockerfile -t coffeemesh-orders-migrations:ci "$CONTEXT" >>"$WORK/build.log" 2>&1 || build_failed
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
env -i DB_URL="$url" PORT="$PORT" OPS_ADDR=127.0.0.1:0 RUST_LOG=warn \
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
