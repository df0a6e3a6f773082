# Sourced by test.sh and demo.sh: everything a fresh Debian/Ubuntu machine
# needs, installed only where missing. Leaves the venv in .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need=()
for pkg_cmd in tini:tini dumb-init:dumb-init redis-server:redis-server unshare:util-linux \
               ps:procps debootstrap:debootstrap nginx:nginx-light; do
  command -v "${pkg_cmd%%:*}" >/dev/null 2>&1 || need+=("${pkg_cmd##*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "== not root: cannot install ${need[*]}"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing svcwrap into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
