#!/usr/bin/env bash
# A working demo on a fresh machine: a stand-in Consul agent, a small HTTP
# service wrapped by svcwrap (as PID 1 when run as root), registered,
# found through Consul, stopped, and gone from Consul.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec .venv/bin/python scripts/demo.py
