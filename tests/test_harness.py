"""The test harness itself (issue 14): a suite that does not cry wolf."""
from __future__ import annotations

import signal

import psutil

from tests.support import Wrapped, skip_unless_pid1


def test_a_svcwrap_still_running_when_its_test_ends_is_killed_by_the_harness_not_only_unshare():
    skip_unless_pid1()
    w = Wrapped(["--no-register", "--", "sleep", "30"], pid1=True)
    svcwrap = psutil.Process(w.pid)
    try:
        w.close()
        assert not svcwrap.is_running(), "svcwrap left running as PID 1 of its namespace"
    finally:
        if svcwrap.is_running():
            svcwrap.send_signal(signal.SIGKILL)
