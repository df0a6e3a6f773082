#!/usr/bin/env bash
# Build /opt/svcwrap, the self-contained svcwrap tree, as the image svcwrap-dist:local
# (to COPY from) and the tarball docker/svcwrap-dist/out/svcwrap-dist.tar.gz (to ADD).
#
#   docker/svcwrap-dist/build-local.sh [--rebuild]   (any cwd; needs root + a Docker engine)
#
# 1. builder image svcwrap-dist-builder:bookworm: debootstrap bookworm + Debian's python3.11,
#    patchelf and busybox-static (docker/base-image.sh; cached, rebuilt when its inputs change);
# 2. wheelhouse docker/svcwrap-dist/wheelhouse: svcwrap's wheel built from the repo (fixed
#    SOURCE_DATE_EPOCH: same code, same bytes) and its dependencies, the pinned and hashed
#    wheels of requirements.txt (pip download, on the host: TLS does not work in containers here);
# 3. make-tree.sh run in the builder (--network none) makes the tree and the tarball;
# 4. docker import of the tarball -> svcwrap-dist:local.
# Steps 3-4 are skipped when the image's org.svcwrap.dist-inputs label (a hash of the builder
# image, make-tree.sh and every wheel) already matches and the tarball exists; --rebuild forces.
#
# Environment: PYTHON (a host python3 with venv, for pip; default: the repo's .venv, else
# python3), DIST_TAG (svcwrap-dist:local), DEBIAN_MIRROR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$repo/docker/.cache"
DIST_TAG=${DIST_TAG:-svcwrap-dist:local}
BUILDER_TAG=svcwrap-dist-builder:bookworm
out="$here/out"
tarball="$out/svcwrap-dist.tar.gz"

rebuild=0
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-local.sh: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "svcwrap-dist/build-local.sh: $*"; }
die() { echo "svcwrap-dist/build-local.sh: ERROR: $*" >&2; exit 1; }
t0=$(date +%s.%N)
since() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

mkdir -p "$cache" "$out"
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info' (run docker/engine.sh first)"
# shellcheck source=../inputs.sh
source "$repo/docker/inputs.sh"

# ---- 1. builder image -------------------------------------------------------------------
"$repo/docker/base-image.sh" bookworm "$BUILDER_TAG" python3.11,patchelf,busybox-static

# ---- 2. wheelhouse --------------------------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x "$repo/.venv/bin/python" ] && PYTHON="$repo/.venv/bin/python"
fi
wheelhouse="$here/wheelhouse"
buildenv="$cache/buildenv"
: >"$cache/pip.log"
pipq() { PIP_DISABLE_PIP_VERSION_CHECK=1 "$buildenv/bin/python" -m pip -q "$@" >>"$cache/pip.log" 2>&1; }
pip_failed() { cat "$cache/pip.log" >&2; die "$1"; }
# A small cached venv with setuptools + wheel: svcwrap's (pure Python) wheel builds without
# build isolation in ~1 s instead of fetching setuptools every time.
if ! "$buildenv/bin/python" -c 'import setuptools, wheel' >/dev/null 2>&1; then
    say "creating the wheel-building venv $buildenv"
    rm -rf "$buildenv"
    "$PYTHON" -m venv "$buildenv" || die "cannot create a venv with $PYTHON"
    pipq install 'setuptools>=61' wheel || pip_failed "cannot install setuptools and wheel"
fi
mkdir -p "$wheelhouse"
rm -f "$wheelhouse"/svcwrap-*.whl
SOURCE_DATE_EPOCH=315532800 pipq wheel --no-deps --no-build-isolation --wheel-dir "$wheelhouse" "$repo" \
    || pip_failed "pip wheel svcwrap failed"
# The dependencies for the tree's interpreter (CPython 3.11, glibc x86_64), whatever the host's
# Python is; only the pinned files, and nothing else left in the wheelhouse.
hashes=(--require-hashes); [ "${HASHES:-1}" = 0 ] && hashes=()
if ! pipq download --no-deps --only-binary=:all: "${hashes[@]}" --dest "$wheelhouse" \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
        -r "$here/requirements.txt"; then
    pip_failed "pip download of requirements.txt failed"
fi
for whl in "$wheelhouse"/*.whl; do
    name=$(basename "$whl" | cut -d- -f1 | tr _ - | tr A-Z a-z)
    [ "$name" = svcwrap ] || grep -qi "^$name==" "$here/requirements.txt" || rm -f "$whl"
done
wheels=("$wheelhouse"/*.whl)
say "wheelhouse: ${#wheels[@]} wheels ($(since))"

# ---- 3. the tree and the tarball ------------------------------------------------------------
builder_id=$(docker image inspect -f '{{.Id}}' "$BUILDER_TAG")
inputs=$( { echo "$builder_id"; sha256sum "$here/make-tree.sh"; (cd "$wheelhouse" && sha256sum *.whl); } \
          | sha256sum | cut -d' ' -f1)
sources=$(svcwrap_input_hash "${DIST_INPUTS[@]}")
have=$(docker image inspect -f '{{index .Config.Labels "org.svcwrap.dist-inputs"}}' "$DIST_TAG" 2>/dev/null || true)
if [ "$rebuild" != 1 ] && [ "$have" = "$inputs" ] && [ -s "$tarball" ] \
        && [ "$(cat "$tarball.inputs" 2>/dev/null)" = "$inputs" ]; then
    say "$DIST_TAG and $tarball are up to date ($(since))"
    exit 0
fi
say "making /opt/svcwrap in $BUILDER_TAG"
if ! docker run --rm --network none -v "$wheelhouse:/wheels:ro" -v "$here:/build:ro" -v "$out:/out" \
        "$BUILDER_TAG" bash /build/make-tree.sh /wheels /out/svcwrap-dist.tar.gz >"$cache/make-tree.log" 2>&1; then
    cat "$cache/make-tree.log" >&2
    die "make-tree.sh failed"
fi
echo "$inputs" >"$tarball.inputs"

# ---- 4. the image to COPY from ---------------------------------------------------------------
old=$(docker image inspect -f '{{.Id}}' "$DIST_TAG" 2>/dev/null || true)
docker import \
    --change 'ENTRYPOINT ["/opt/svcwrap/bin/svcwrap"]' \
    --change "LABEL org.svcwrap.dist-inputs=$inputs org.svcwrap.source-hash=$sources" \
    "$tarball" "$DIST_TAG" >/dev/null || die "docker import failed"
if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$DIST_TAG")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
fi
say "$(tail -n 1 "$cache/make-tree.log")"
say "built $DIST_TAG and $tarball ($(du -b "$tarball" | cut -f1) bytes) in $(since)"
