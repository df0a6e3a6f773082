#!/usr/bin/env bash
# Build redis-with-wrapper:local on a machine that cannot pull images.
#
#   docker/redis-with-wrapper/build-local.sh [--rebuild]   (any cwd; needs root + a Docker engine)
#
# 1. base image svcwrap-base:bookworm, a local stand-in for redis:7-bookworm:
#    `debootstrap --variant=minbase bookworm` plus Debian's redis-server (no Python), then
#    `docker import` (docker/base-image.sh: rebuilt only when its inputs change, or with
#    --rebuild / REBUILD_BASE=1);
# 2. svcwrap-dist:local, the self-contained /opt/svcwrap (docker/svcwrap-dist/build-local.sh;
#    rebuilt only when svcwrap, its dependencies or the build change);
# 3. docker build --build-arg BASE_IMAGE=svcwrap-base:bookworm -t redis-with-wrapper:local:
#    the base plus one COPY of /opt/svcwrap, labelled org.svcwrap.source-hash with a hash of
#    the inputs (docker/inputs.sh), which tests/docker_support.py compares.
#
# Environment: PYTHON (host python3 for pip), DEBIAN_MIRROR, BASE_TAG, IMAGE_TAG, DIST_TAG.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$repo/docker/.cache"
BASE_TAG=${BASE_TAG:-svcwrap-base:bookworm}
IMAGE_TAG=${IMAGE_TAG:-redis-with-wrapper:local}
export DIST_TAG=${DIST_TAG:-svcwrap-dist:local}

dist_args=()
for arg in "$@"; do
    case "$arg" in
        --rebuild) export REBUILD_BASE=1; dist_args=(--rebuild) ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-local.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "build-local.sh: $*"; }
die() { echo "build-local.sh: ERROR: $*" >&2; exit 1; }
t0=$(date +%s.%N)
since() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

mkdir -p "$cache"
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info' (run docker/engine.sh first)"
# shellcheck source=../inputs.sh
source "$repo/docker/inputs.sh"

# ---- 1. base image, 2. the svcwrap tree ---------------------------------------------
IMPORT_CHANGES='CMD ["redis-server"]' "$repo/docker/base-image.sh" bookworm "$BASE_TAG" redis-server
"$repo/docker/svcwrap-dist/build-local.sh" "${dist_args[@]}"

# ---- 3. final image --------------------------------------------------------------
source_hash=$(svcwrap_input_hash "${REDIS_INPUTS[@]}")
say "docker build --build-arg BASE_IMAGE=$BASE_TAG -t $IMAGE_TAG"
# The legacy builder: it needs no buildx plugin and no network.
if ! DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE_TAG" --build-arg "DIST_IMAGE=$DIST_TAG" \
        --label "org.svcwrap.source-hash=$source_hash" -t "$IMAGE_TAG" "$here" \
        >"$cache/build.log" 2>&1; then
    cat "$cache/build.log" >&2
    die "docker build failed"
fi
# Earlier builds of this image that the new one untagged: drop them (dangling only).
docker image prune -f --filter "label=org.svcwrap.source-hash" >/dev/null 2>&1 || true
say "built $IMAGE_TAG ($(docker image inspect -f '{{.Id}}' "$IMAGE_TAG" | cut -c8-19)) in $(since)"
