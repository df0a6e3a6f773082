# Sourced by the build-local.sh scripts. Which files an image is built from, and their hash;
# tests/docker_support.py computes the same (input_hash) to tell a stale image.
# shellcheck shell=bash
SVCWRAP_SOURCES=(pyproject.toml bin/svcwrap)
DIST_INPUTS=(docker/inputs.sh docker/base-image.sh docker/svcwrap-dist/build-local.sh
             docker/svcwrap-dist/make-tree.sh docker/svcwrap-dist/requirements.txt)
REDIS_INPUTS=("${DIST_INPUTS[@]}" docker/redis-with-wrapper/Dockerfile docker/redis-with-wrapper/build-local.sh)

# sha256 of `sha256sum` lines of the svcwrap sources (pyproject.toml, bin/svcwrap,
# svcwrap/**.py) and the given files (paths relative to the repo), sorted by path.
svcwrap_input_hash() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." \
        && { printf '%s\n' "${SVCWRAP_SOURCES[@]}" "$@"; find svcwrap -type f -name '*.py'; } \
        | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
}
