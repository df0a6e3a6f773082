#!/usr/bin/env bash
# Build redis-with-wrapper:local on a machine that cannot pull images.
#
#   docker/redis-with-wrapper/build-local.sh [--rebuild]   (any cwd; needs root + a Docker engine)
#
# 1. base image svcwrap-base:bookworm, a local stand-in for redis:7-bookworm:
#    `debootstrap --variant=minbase bookworm` plus Debian's redis-server, python3
#    and python3-venv, then `docker import`. Skipped when the image already
#    exists, unless --rebuild is given (or REBUILD_BASE=1).
# 2. the wheelhouse (svcwrap + its dependencies) built on the host with pip,
#    always, so the image picks up the current svcwrap code;
# 3. docker build --build-arg BASE_IMAGE=svcwrap-base:bookworm -t redis-with-wrapper:local
#    (only the layers from the wheelhouse on are rebuilt when svcwrap changes).
#
# Environment: PYTHON (a host Python 3.11 with pip and venv; default: the repo's
# .venv, else /work/venv, else python3), DEBIAN_MIRROR (default: the mirror apt uses on this host),
# BASE_TAG, IMAGE_TAG.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$repo/docker/.cache"
BASE_TAG=${BASE_TAG:-svcwrap-base:bookworm}
IMAGE_TAG=${IMAGE_TAG:-redis-with-wrapper:local}
SUITE=bookworm

rebuild=${REBUILD_BASE:-0}
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-local.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "build-local.sh: $*"; }
die() { echo "build-local.sh: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

mkdir -p "$cache"
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info' (run docker/engine.sh first)"

if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    for candidate in "$repo/.venv/bin/python" /work/venv/bin/python; do
        if [ -x "$candidate" ]; then PYTHON=$candidate; break; fi
    done
fi

# The Debian mirror apt already uses on this host (deb822 .sources or one-line lists).
debian_mirror() {
    local uri
    uri=$(grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{ for (i = 2; i <= NF; i++) print $i }' | grep -E '/debian/?$' | head -n1 || true)
    if [ -z "$uri" ]; then
        uri=$(grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | sed -E 's/\[[^]]*\]//' | awk '{ print $2 }' | grep -E '/debian/?$' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# ---- 1. base image --------------------------------------------------------------
t0=$(now)
old_base=
if [ "$rebuild" != 1 ] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    say "base image $BASE_TAG exists; not rebuilding it (use --rebuild to force)"
else
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; } \
            || die "cannot install debootstrap"
    fi
    mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
    rootfs="$cache/rootfs-$SUITE"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    say "debootstrap --variant=minbase $SUITE from $mirror (+ redis-server python3 python3-venv)"
    if ! debootstrap --variant=minbase --include=redis-server,python3,python3-venv \
            "$SUITE" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1; then
        tail -n 30 "$cache/debootstrap.log" >&2
        die "debootstrap failed (full log: $cache/debootstrap.log)"
    fi
    # Slim it down like the official Debian images do.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/tmp/*
    old_base=$(docker image inspect -f '{{.Id}}' "$BASE_TAG" 2>/dev/null || true)
    say "docker import -> $BASE_TAG"
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["redis-server"]' \
        - "$BASE_TAG" >/dev/null || die "docker import failed"
    rm -rf "$rootfs"
    say "base image built in $(since "$t0")"
fi

# ---- 2. wheelhouse -------------------------------------------------------------
t1=$(now)
wheelhouse="$here/wheelhouse"
buildenv="$cache/buildenv"
pipq() { PIP_DISABLE_PIP_VERSION_CHECK=1 "$buildenv/bin/python" -m pip -q "$@" >>"$cache/pip.log" 2>&1; }
: >"$cache/pip.log"
pip_failed() { cat "$cache/pip.log" >&2; die "$1"; }
# Dependency wheels such as charset_normalizer are built for the interpreter that
# runs pip: it must be the image's python (3.11 on bookworm).
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$PYTHON is not Python 3.11 (bookworm's python3); set PYTHON to one"
# A small cached venv with setuptools + wheel: building svcwrap's (pure Python) wheel
# without build isolation takes ~1 s instead of fetching setuptools every time.
if ! "$buildenv/bin/python" -c 'import setuptools, wheel' >/dev/null 2>&1; then
    say "creating the wheel-building venv $buildenv"
    rm -rf "$buildenv"
    "$PYTHON" -m venv "$buildenv" || die "cannot create a venv with $PYTHON"
    pipq install 'setuptools>=61' wheel || pip_failed "cannot install setuptools and wheel"
fi
mkdir -p "$wheelhouse"
rm -f "$wheelhouse"/svcwrap-*.whl
# A fixed SOURCE_DATE_EPOCH makes the svcwrap wheel byte-identical when the code
# did not change, so docker's layer cache is hit; any change rebuilds the layer.
say "pip wheel $repo -> $wheelhouse"
SOURCE_DATE_EPOCH=315532800 pipq wheel --no-deps --no-build-isolation --wheel-dir "$wheelhouse" "$repo" \
    || pip_failed "pip wheel svcwrap failed"
svcwrap_wheel=("$wheelhouse"/svcwrap-*.whl)
# Dependencies: offline from the wheels already there; from the index when some are missing.
if ! pipq wheel --no-index --find-links "$wheelhouse" --wheel-dir "$wheelhouse" "${svcwrap_wheel[0]}"; then
    say "fetching dependency wheels"
    pipq wheel --find-links "$wheelhouse" --wheel-dir "$wheelhouse" "${svcwrap_wheel[0]}" \
        || pip_failed "pip wheel (dependencies) failed"
fi
wheels=("$wheelhouse"/*.whl)
say "wheelhouse: ${#wheels[@]} wheels: ${wheels[*]##*/} ($(since "$t1"))"

# ---- 3. final image --------------------------------------------------------------
t2=$(now)
# Which svcwrap sources the image holds (tests/docker_support.py computes the same
# hash and rebuilds a stale image): sha256 of `sha256sum` over pyproject.toml, bin/svcwrap
# and svcwrap/**.py.
source_hash=$(cd "$repo" && { echo pyproject.toml; echo bin/svcwrap; find svcwrap -type f -name '*.py'; } \
              | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
say "docker build --build-arg BASE_IMAGE=$BASE_TAG -t $IMAGE_TAG"
# The legacy builder: it needs no buildx plugin and no network.
if ! DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE_TAG" \
        --label "org.svcwrap.source-hash=$source_hash" -t "$IMAGE_TAG" "$here" \
        >"$cache/build.log" 2>&1; then
    cat "$cache/build.log" >&2
    die "docker build failed"
fi
# Earlier builds of this image that the new one untagged: drop them (dangling only).
docker image prune -f --filter "label=org.svcwrap.source-hash" >/dev/null 2>&1 || true
# ... and the base image a --rebuild replaced, unless something still uses it.
if [ -n "$old_base" ] && [ "$old_base" != "$(docker image inspect -f '{{.Id}}' "$BASE_TAG")" ]; then
    docker rmi "$old_base" >/dev/null 2>&1 || true
fi
say "built $IMAGE_TAG ($(docker image inspect -f '{{.Id}}' "$IMAGE_TAG" | cut -c8-19)) in $(since "$t2"); total $(since "$t0")"
