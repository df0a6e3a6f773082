#!/usr/bin/env bash
# Take the discovery example down (what up.sh started), or one container of it:
#
#   examples/discovery/down.sh              every container up.sh started, then the Consul double
#   examples/discovery/down.sh NAME...      just these (e.g. discovery-app-2: a scale-in)
#
# `docker stop`: svcwrap takes each service out of Consul before its child is signalled.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache="$(cd "$here/../.." && pwd)/docker/.cache"
LABEL=org.svcwrap.example=discovery-up

if [ $# -gt 0 ]; then
    docker stop "$@" >/dev/null
    docker rm -v "$@" >/dev/null
    echo "down.sh: stopped $*"
    exit 0
fi
mapfile -t ids < <(docker ps -aq --filter "label=$LABEL")
if [ "${#ids[@]}" -gt 0 ]; then
    docker stop "${ids[@]}" >/dev/null
    docker rm -v "${ids[@]}" >/dev/null
    echo "down.sh: stopped ${#ids[@]} containers"
fi
pidfile="$cache/discovery-consul.pid"
if [ -f "$pidfile" ]; then
    kill -TERM "$(cat "$pidfile")" 2>/dev/null && echo "down.sh: stopped the Consul double" || true
    rm -f "$pidfile"
fi
