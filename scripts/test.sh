#!/usr/bin/env bash
# Run svcwrap's whole test suite on a fresh Debian/Ubuntu machine: installs
# what it needs (Debian packages as root, .venv, a Docker engine where one
# can run), then runs pytest in two parts:
#   1. every test but the Docker ones, on SVCWRAP_TEST_WORKERS processes
#      (pytest-xdist; default 6: the tests mostly wait on processes and
#      sockets, so 6 fit on 2 cores, even beside a CPU hog; 0 runs them in
#      this process);
#   2. the Docker tests, one at a time (they share images and one engine).
# Extra arguments go to pytest (both parts), e.g. `scripts/test.sh -q`. Any
# selection of your own (-m, -k, a path) runs as one plain pytest instead:
# `scripts/test.sh -m docker`, `scripts/test.sh tests/test_signals.py`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"

if [ "$(id -u)" = 0 ]; then
  echo "== making sure a Docker engine runs (the docker tests skip without one)"
  bash docker/engine.sh || echo "== no Docker engine: the docker tests will skip"
fi

selects=0
for arg in "$@"; do
  case "$arg" in
    -m|-m*|-k|-k*|--deselect*|--lf|--last-failed|--sw|--stepwise) selects=1 ;;
    -*) ;;
    *) selects=1 ;;  # a path, or an option's value: either way, run it as given
  esac
done
if [ "$selects" = 1 ]; then
  echo "== running the tests"
  exec .venv/bin/pytest "$@"
fi

workers=${SVCWRAP_TEST_WORKERS:-6}
case "$workers" in
  ''|*[!0-9]*) echo "scripts/test.sh: SVCWRAP_TEST_WORKERS must be a number, not '$workers'" >&2; exit 2 ;;
esac
parallel=()
[ "$workers" -gt 0 ] && parallel=(-n "$workers" --dist worksteal)

echo "== running the tests (all but Docker, on $workers workers)"
rc=0
.venv/bin/pytest -m "not docker" "${parallel[@]}" "$@" || rc=$?
echo "== running the Docker tests"
.venv/bin/pytest -m docker "$@" || { r=$?; [ "$rc" = 0 ] && rc=$r; }
exit "$rc"
