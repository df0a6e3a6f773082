"""`--ready notify`: the systemd notify socket, as the README states it (issue 14)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.support import PROGRAMS


def test_ready_timeout_also_applies_to_ready_notify(wrap_pid1, svc):
    w = wrap_pid1(*svc.args("--ready", "notify", "--ready-timeout", "500ms", child=["sleep", "30"]),
                  env=svc.env())
    assert w.wait(timeout=10) == 1, "a child that never sends READY=1 is stopped"
    assert "not ready" in w.stderr
    assert not svc.registered()


def test_the_notify_socket_is_not_inherited_by_the_child(wrap, svc):
    w = wrap(*svc.args("--ready", "notify", child=[sys.executable, str(PROGRAMS / "describe.py")]),
             env=svc.env(), stdout=subprocess.PIPE)
    out, _ = w.proc.communicate(timeout=10)
    seen = json.loads(out)
    assert seen["env"]["NOTIFY_SOCKET"].startswith("@svcwrap-notify-")
    # 0-2 and the one describe.py opens to list /proc/self/fd: no socket.
    assert len(seen["fds"]) == 4, seen["fds"]
