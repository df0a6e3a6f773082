#!/usr/bin/env bash
# Build the images of the discovery example on a machine that cannot pull (root + Docker):
#
#   examples/discovery/build.sh [--print-hash]     (any cwd)
#
# 1. redis-with-wrapper:local and svcwrap-dist:local (docker/redis-with-wrapper/build-local.sh:
#    each rebuilt only when its inputs change);
# 2. discovery-base:bookworm: debootstrap bookworm minbase + Debian's nginx-light, no Python
#    (docker/base-image.sh; cached). The app image shares it with the lb: one base on disk;
# 3. discovery-app:local and discovery-lb:local: the base, one COPY of /opt/svcwrap and the
#    example's files, labelled org.svcwrap.source-hash with a hash of their inputs (what
#    --print-hash prints; tests/discovery_support.py rebuilds an image whose label differs).
#
# Environment: REDIS_TAG, REDIS_BASE_TAG (svcwrap-base:bookworm), DIST_TAG, DISCOVERY_BASE_TAG,
# APP_TAG, LB_TAG (defaults above), and what docker/redis-with-wrapper/build-local.sh reads
# (PYTHON, DEBIAN_MIRROR).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export DIST_TAG=${DIST_TAG:-svcwrap-dist:local}
REDIS_TAG=${REDIS_TAG:-redis-with-wrapper:local}
REDIS_BASE_TAG=${REDIS_BASE_TAG:-svcwrap-base:bookworm}
DISCOVERY_BASE_TAG=${DISCOVERY_BASE_TAG:-discovery-base:bookworm}
APP_TAG=${APP_TAG:-discovery-app:local}
LB_TAG=${LB_TAG:-discovery-lb:local}

# shellcheck source=../../docker/inputs.sh
source "$repo/docker/inputs.sh"
# The images' inputs: the svcwrap tree's and every file of the two image directories.
mapfile -t own < <(cd "$repo" && find examples/discovery/app examples/discovery/lb -type f \
                   ! -name '*.pyc' | LC_ALL=C sort)
source_hash=$(svcwrap_input_hash "${DIST_INPUTS[@]}" examples/discovery/build.sh "${own[@]}")
if [ "${1:-}" = --print-hash ]; then
    echo "$source_hash"
    exit 0
fi
[ $# -eq 0 ] || { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

say() { echo "discovery/build.sh: $*"; }
die() { echo "discovery/build.sh: ERROR: $*" >&2; exit 1; }
t0=$(date +%s)

IMAGE_TAG=$REDIS_TAG BASE_TAG=$REDIS_BASE_TAG "$repo/docker/redis-with-wrapper/build-local.sh"
"$repo/docker/base-image.sh" bookworm "$DISCOVERY_BASE_TAG" nginx-light

log="$repo/docker/.cache/discovery-build.log"
for role in app lb; do
    tag=$APP_TAG; [ "$role" = lb ] && tag=$LB_TAG
    say "docker build -t $tag $here/$role"
    # The legacy builder: it needs no buildx plugin and no network.
    if ! DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$DISCOVERY_BASE_TAG" \
            --build-arg "DIST_IMAGE=$DIST_TAG" --label "org.svcwrap.source-hash=$source_hash" \
            --label org.svcwrap.example=discovery -t "$tag" "$here/$role" >"$log" 2>&1; then
        cat "$log" >&2
        die "docker build of $tag failed"
    fi
done
# Earlier builds of these images that the new ones untagged (dangling ones of this example only).
docker image prune -f --filter label=org.svcwrap.example=discovery >/dev/null 2>&1 || true
say "built $APP_TAG and $LB_TAG in $(( $(date +%s) - t0 ))s"
