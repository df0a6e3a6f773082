#!/usr/bin/env bash
# Make a Docker engine available on a (fresh) Debian machine, as root.
#
#   docker/engine.sh            # idempotent: installs/starts only what is missing
#
# 1. installs Debian's docker.io if `docker`/`dockerd` are missing
#    (apt-get update + apt-get install -y docker.io);
# 2. starts dockerd in the background (log: $DOCKERD_LOG) if `docker info` fails;
# 3. waits (deadline $ENGINE_WAIT_SECONDS, default 60 s) until `docker info` answers.
#
# Prints what it did; exits non-zero with a message on stderr if it cannot.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
ENGINE_WAIT_SECONDS=${ENGINE_WAIT_SECONDS:-60}

say() { echo "engine.sh: $*"; }
die() { echo "engine.sh: ERROR: $*" >&2; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_answers; then
    say "Docker engine already answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')); nothing to do"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root to install/start the Docker engine"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "docker is missing and apt-get is not available to install docker.io"
    say "installing docker.io (apt-get update && apt-get install -y docker.io)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends docker.io >/dev/null \
        || die "apt-get install docker.io failed"
    # iptables is how dockerd sets up its default bridge; make sure it is there too.
    command -v iptables >/dev/null 2>&1 || apt-get install -y -q iptables >/dev/null || true
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
else
    say "docker and dockerd are installed"
fi

if engine_answers; then
    say "Docker engine answers"
    exit 0
fi

if pgrep -x dockerd >/dev/null 2>&1; then
    say "dockerd is already running (pid $(pgrep -x dockerd | tr '\n' ' ')); waiting for it"
else
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid + nohup: the daemon must outlive this script and the shell that ran it.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    started_pid=$!
fi

deadline=$(( $(date +%s) + ENGINE_WAIT_SECONDS ))
until engine_answers; do
    if [ -n "${started_pid:-}" ] && ! kill -0 "$started_pid" 2>/dev/null; then
        echo "--- last lines of $DOCKERD_LOG ---" >&2
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        die "dockerd exited while starting"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "--- last lines of $DOCKERD_LOG ---" >&2
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        die "Docker engine did not answer 'docker info' within ${ENGINE_WAIT_SECONDS}s"
    fi
    sleep 0.5
done
say "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
