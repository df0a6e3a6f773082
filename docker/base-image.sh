#!/usr/bin/env bash
# A Debian base image made locally with debootstrap, for machines that cannot pull.
#
#   docker/base-image.sh SUITE TAG [PACKAGE,...]     (root; any cwd)
#
# `debootstrap --variant=minbase SUITE` (from the mirror apt already uses on this host, or
# $DEBIAN_MIRROR) plus the comma-separated Debian PACKAGES, slimmed like the official images
# (no apt lists, docs, man pages) and `docker import`ed as TAG. The image is labelled
# org.svcwrap.base-inputs with a hash of SUITE, PACKAGES and this script: it is rebuilt only
# when that changes, or with REBUILD_BASE=1. Downloaded .debs are kept in
# docker/.cache/debs-SUITE, so a second image of the same suite fetches little.
# Extra `docker import --change` lines can be given in $IMPORT_CHANGES (one per line).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache="$here/.cache"
[ $# -ge 2 ] || { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
suite=$1 tag=$2 packages=${3:-}

say() { echo "base-image.sh: $*"; }
die() { echo "base-image.sh: ERROR: $*" >&2; exit 1; }

inputs=$( { echo "$suite"; echo "$packages"; echo "${IMPORT_CHANGES:-}"; cat "${BASH_SOURCE[0]}"; } \
          | sha256sum | cut -d' ' -f1)
have=$(docker image inspect -f '{{index .Config.Labels "org.svcwrap.base-inputs"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$inputs" ] && [ "${REBUILD_BASE:-0}" != 1 ]; then
    say "$tag is up to date"
    exit 0
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

t0=$(date +%s)
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; } \
        || die "cannot install debootstrap"
fi
mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
rootfs="$cache/rootfs-${tag//[:\/]/-}"
log="$cache/debootstrap-${tag//[:\/]/-}.log"
mkdir -p "$cache/debs-$suite"
rm -rf "$rootfs"
mkdir -p "$rootfs"
say "debootstrap --variant=minbase $suite from $mirror${packages:+ (+ $packages)} -> $tag"
if ! debootstrap --variant=minbase ${packages:+--include="$packages"} --cache-dir="$cache/debs-$suite" \
        "$suite" "$rootfs" "$mirror" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "debootstrap failed (full log: $log)"
fi
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/tmp/*
old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
changes=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
         --change "LABEL org.svcwrap.base-inputs=$inputs")
while IFS= read -r line; do [ -n "$line" ] && changes+=(--change "$line"); done <<<"${IMPORT_CHANGES:-}"
tar -C "$rootfs" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" >/dev/null \
    || die "docker import failed"
rm -rf "$rootfs"
# the image this one replaced, unless something still uses it
if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
fi
say "built $tag in $(( $(date +%s) - t0 ))s"
