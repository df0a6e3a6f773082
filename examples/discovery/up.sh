#!/usr/bin/env bash
# Bring the discovery example up: Consul, redis, two apps and the lb, each container with
# svcwrap as PID 1, all on --network host, finding each other only through Consul.
#
#   examples/discovery/up.sh          the whole system (builds the images first; root + Docker)
#   examples/discovery/up.sh app      one more app (scale out); `down.sh discovery-app-N` scales in
#   examples/discovery/down.sh        everything down again
#
# Consul: $CONSUL_HTTP_ADDR when set (e.g. a `consul agent -dev` on 127.0.0.1:8500), else the
# repository's Consul agent double (python -m tests.consul_double, a test stand-in, NOT Consul)
# started on 127.0.0.1:18500. Ports: lb 18080, redis 18379, apps 18101, 18102, ...
# Environment: PYTHON (for the double; default the repo's .venv), SKIP_BUILD=1, and the
# image tags of build.sh (REDIS_TAG, APP_TAG, LB_TAG).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="$repo/docker/.cache"
REDIS_TAG=${REDIS_TAG:-redis-with-wrapper:local}
APP_TAG=${APP_TAG:-discovery-app:local}
LB_TAG=${LB_TAG:-discovery-lb:local}
LABEL=org.svcwrap.example=discovery-up
LB_PORT=18080 REDIS_PORT=18379 FIRST_APP_PORT=18101
DOUBLE_ADDR=127.0.0.1:18500

say() { echo "up.sh: $*"; }
die() { echo "up.sh: ERROR: $*" >&2; exit 1; }
mkdir -p "$cache"

consul_addr() {
    if [ -n "${CONSUL_HTTP_ADDR:-}" ]; then echo "$CONSUL_HTTP_ADDR"; else echo "$DOUBLE_ADDR"; fi
}

agent_answers() {  # GET /v1/agent/self -> 200
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' ${CONSUL_HTTP_TOKEN:+-H "X-Consul-Token: $CONSUL_HTTP_TOKEN"} \
           "http://$(consul_addr)/v1/agent/services" 2>/dev/null || true)
    [ "$code" = 200 ]
}

start_double() {
    agent_answers && { say "Consul answers on $(consul_addr)"; return; }
    [ -n "${CONSUL_HTTP_ADDR:-}" ] && die "no Consul agent answers on $CONSUL_HTTP_ADDR"
    local python=${PYTHON:-}
    if [ -z "$python" ]; then
        python=python3
        for candidate in "$repo/.venv/bin/python" /work/main/.venv/bin/python; do
            [ -x "$candidate" ] && { python=$candidate; break; }
        done
    fi
    say "starting the Consul agent double on $DOUBLE_ADDR (log: $cache/discovery-consul.log)"
    # its own session, so it outlives this script; down.sh stops it by this pid
    (cd "$repo" && exec setsid "$python" -m tests.consul_double --http-addr "$DOUBLE_ADDR") \
        </dev/null >"$cache/discovery-consul.log" 2>&1 &
    echo $! >"$cache/discovery-consul.pid"
    for _ in $(seq 100); do agent_answers && return; sleep 0.1; done
    cat "$cache/discovery-consul.log" >&2
    die "the double did not answer on $DOUBLE_ADDR"
}

# run NAME IMAGE PORT [ENV=VALUE...]: a detached container of the example
run() {
    local name=$1 image=$2 port=$3; shift 3
    local env=(-e "CONSUL_HTTP_ADDR=$(consul_addr)" -e "SVCWRAP_ID=$name" -e "SVCWRAP_PORT=$port"
               -e SVCWRAP_ADDRESS=127.0.0.1)
    [ -n "${CONSUL_HTTP_TOKEN:-}" ] && env+=(-e "CONSUL_HTTP_TOKEN=$CONSUL_HTTP_TOKEN")
    for kv in "$@"; do env+=(-e "$kv"); done
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" --network host --label "$LABEL" "${env[@]}" "$image" >/dev/null
    say "started $name ($image) on port $port"
}

passing() {  # passing NAME ID: is instance ID of service NAME passing in Consul?
    curl -s ${CONSUL_HTTP_TOKEN:+-H "X-Consul-Token: $CONSUL_HTTP_TOKEN"} \
        "http://$(consul_addr)/v1/health/service/$1?passing" | grep -q "\"ID\": *\"$2\""
}

wait_passing() {
    for _ in $(seq 300); do passing "$1" "$2" && return; sleep 0.1; done
    docker logs "$2" 2>&1 | tail -n 20 >&2
    die "$2 is not passing in Consul after 30 s"
}

next_app() {  # the first N with no container discovery-app-N
    local n=1
    while docker inspect "discovery-app-$n" >/dev/null 2>&1; do n=$((n + 1)); done
    echo "$n"
}

add_app() {
    local n
    n=$(next_app)
    run "discovery-app-$n" "$APP_TAG" $((FIRST_APP_PORT + n - 1))
    wait_passing app "discovery-app-$n"
}

case "${1:-}" in
    app) start_double; add_app; exit 0 ;;
    "") ;;
    *) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

[ "${SKIP_BUILD:-0}" = 1 ] || "$here/build.sh"
start_double
# redis keeps serving for 3 s after leaving Consul: the apps' template-wait MAX (2 s) + reload
run discovery-redis-1 "$REDIS_TAG" "$REDIS_PORT" SVCWRAP_DRAIN=3s
wait_passing redis discovery-redis-1
add_app
add_app
run discovery-lb "$LB_TAG" "$LB_PORT"
wait_passing lb discovery-lb
say "up. Try:"
cat <<EOF
  curl -s -X POST http://127.0.0.1:$LB_PORT/          # instance=discovery-app-N count=... redis=...
  python3 examples/discovery/loadgen.py --rate 200 --duration 10
  examples/discovery/up.sh app                         # scale out: one more app
  docker stop discovery-app-1                          # scale in: out of nginx first, then stopped
  docker exec discovery-lb cat /run/discovery/site.conf
  examples/discovery/down.sh
EOF
