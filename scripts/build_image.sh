#!/usr/bin/env bash
# Build kefu's container image without a container registry or a Docker daemon: Debian's buildah,
# a base image made from Debian's own packages (debootstrap from deb.debian.org), vfs storage and
# chroot isolation (no overlay filesystem, no user namespaces, no daemon needed).
#
#   apt-get install -y buildah debootstrap          # once (Debian/Ubuntu packages)
#   scripts/build_image.sh                          # -> localhost/kefu:local, the model trained inside
#   TRAIN=0 scripts/build_image.sh                  # no model in the image: mount one at /app/models
#   TORCH_WHEELS=/opt/wheels scripts/build_image.sh # torch from a local wheel folder (no PyTorch index)
#   CHECK=1 scripts/build_image.sh                  # then start the image's server and ask /health/live
#   CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt ... # behind a TLS-intercepting proxy: the host's CAs
#                                                   # for the build's downloads (not kept in the image)
#
# The base, localhost/kefu-base:bookworm, is Debian 12 (python3 3.11, python3-venv, python-is-python3,
# ca-certificates) and replaces the Dockerfile's python:3.11-slim-bookworm through the
# PYTHON_IMAGE build argument; everything else is the Dockerfile as Docker builds it. Where a
# registry is reachable, `docker build .` (or `buildah bud .`) needs none of this.
#
# Environment: TAG (localhost/kefu:local), TRAIN (1), TORCH_WHEELS (unset: PyTorch's CPU index), CA_BUNDLE,
# MIRROR (http://deb.debian.org/debian), STORAGE_DRIVER (vfs), CHECK (0), REBUILD_BASE (0).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TAG="${TAG:-localhost/kefu:local}"
TRAIN="${TRAIN:-1}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
BASE="localhost/kefu-base:bookworm"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

for tool in buildah debootstrap; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool not found. Fix: apt-get install -y buildah debootstrap (Debian's packages)." >&2
        exit 2
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "Run as root: debootstrap and buildah's chroot isolation need it." >&2
    exit 2
fi

if [ "${REBUILD_BASE:-0}" = 1 ] || ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    work="$(mktemp -d /tmp/kefu-base.XXXXXX)"
    trap 'rm -rf "$work"' EXIT
    echo "== debootstrap bookworm from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    echo "== import as $BASE"
    container="$(buildah from scratch)"
    mount="$(buildah mount "$container")"
    tar -C "$work/rootfs" -cf - . | tar -C "$mount" -xf -
    buildah umount "$container" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd '["python3"]' "$container"
    buildah commit --quiet "$container" "$BASE" >/dev/null
    buildah rm "$container" >/dev/null
fi

args=(--isolation "$BUILDAH_ISOLATION" --format docker --layers
      --build-arg "PYTHON_IMAGE=$BASE" --build-arg "TRAIN=$TRAIN" -t "$TAG" -f "$ROOT/Dockerfile")
if [ -n "${CA_BUNDLE:-}" ]; then  # a TLS-intercepting proxy: the build's pip trusts the host's CAs
    args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
fi
if [ -n "${TORCH_WHEELS:-}" ]; then
    args+=(--volume "$TORCH_WHEELS:/wheels:ro" --build-arg "TORCH_SOURCE=--find-links /wheels")
fi
echo "== buildah bud ${args[*]} $ROOT"
buildah bud "${args[@]}" "$ROOT"
buildah images "$TAG"

kill_tree() {  # SIGTERM to a process and everything it started, children first
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
    kill "$1" 2>/dev/null || true
}

if [ "${CHECK:-0}" = 1 ]; then
    echo "== check: the image's server answers /health/live"
    container="$(buildah from "$TAG")"
    port=$((20000 + RANDOM % 20000))
    # chroot isolation shares the host's network: the server binds 127.0.0.1 only
    # `timeout` inside: the server ends even if stopping buildah does not reach it
    buildah run --env KEFU_AUTH_TOKEN="$(head -c 24 /dev/urandom | base64)" "$container" -- \
        timeout 300 python -m bot run --enable-api --host 127.0.0.1 --port "$port" >"/tmp/kefu-image-check.log" 2>&1 &
    runner=$!
    ok=0
    for _ in $(seq 1 180); do
        if python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$port/health/live', timeout=2).status == 200 else 1)" 2>/dev/null; then
            ok=1; break
        fi
        kill -0 "$runner" 2>/dev/null || break
        sleep 1
    done
    ready="$(python3 -c "import urllib.request,urllib.error
try: print(urllib.request.urlopen('http://127.0.0.1:$port/health/ready', timeout=5).status)
except urllib.error.HTTPError as e: print(e.code)
except OSError as e: print(e)" 2>&1)"
    echo "/health/ready: $ready"
    kill_tree "$runner"  # stopping buildah alone leaves the server running in its chroot
    wait "$runner" 2>/dev/null || true
    buildah rm "$container" >/dev/null
    if [ "$ok" = 1 ]; then
        echo "check passed: /health/live answered 200 (server log: /tmp/kefu-image-check.log)"
    else
        echo "check FAILED; server log:" >&2
        tail -30 /tmp/kefu-image-check.log >&2
        exit 1
    fi
fi
