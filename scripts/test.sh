#!/usr/bin/env bash
# Run svcwrap's whole test suite on a fresh Debian/Ubuntu machine.
# Sets up everything it needs: Debian packages (as root), a venv in .venv,
# the project with its test extra, and a Docker engine where one can run.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m docker`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg_cmd in tini:tini dumb-init:dumb-init redis-server:redis-server unshare:util-linux \
               ps:procps debootstrap:debootstrap; do
  command -v "${pkg_cmd%%:*}" >/dev/null 2>&1 || need+=("${pkg_cmd##*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "== not root: cannot install ${need[*]}; tests that need them will skip"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing svcwrap with its test extra"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

if [ "$(id -u)" = 0 ] && [ -x docker/engine.sh ]; then
  echo "== making sure a Docker engine runs (the docker tests skip without one)"
  docker/engine.sh || echo "== no Docker engine: docker tests will skip"
fi

echo "== running the tests"
exec .venv/bin/pytest "$@"
