#!/usr/bin/env bash
# Run svcwrap's whole test suite on a fresh Debian/Ubuntu machine: installs
# what it needs (Debian packages as root, .venv, a Docker engine where one
# can run), then runs pytest. Extra arguments go to pytest, e.g.
# `scripts/test.sh -m docker`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"

if [ "$(id -u)" = 0 ]; then
  echo "== making sure a Docker engine runs (the docker tests skip without one)"
  bash docker/engine.sh || echo "== no Docker engine: the docker tests will skip"
fi

echo "== running the tests"
exec .venv/bin/pytest "$@"
