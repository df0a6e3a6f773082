"""Each kind of readiness probe holds registration back until the service is ready."""
from __future__ import annotations

import itertools
import shutil
import signal
import socket
import sys
import threading
import uuid

import psutil
import pytest

from tests.support import assert_stays_false, wait_until
from tests.tls_support import https_server, tls_files  # noqa: F401 (a fixture)


def assert_registered_only_after_gate(wrap_pid1, svc, *ready: str, child_args=(), gate=None):
    gate = gate or svc.tmp / "gate"
    w = wrap_pid1(*svc.args(*ready, child_args=("--gate", gate, *child_args)), env=svc.env())
    wait_until(lambda: w.children(), message="child running")
    assert_stays_false(svc.registered, seconds=0.3, message="registered before ready")
    gate.touch()
    wait_until(svc.is_passing, timeout=10, message="passing once ready")
    return w


def test_a_tcp_probe_waits_for_the_port_to_accept_connections(wrap_pid1, svc):
    assert_registered_only_after_gate(wrap_pid1, svc, "--ready", f"tcp:127.0.0.1:{svc.port}")


def test_an_http_probe_waits_for_a_2xx_answer(wrap_pid1, svc):
    assert_registered_only_after_gate(wrap_pid1, svc, "--ready", f"http://127.0.0.1:{svc.port}/")


def test_an_exec_probe_waits_for_the_command_to_exit_0(wrap_pid1, svc):
    flag = svc.tmp / "flag"
    w = wrap_pid1(*svc.args("--ready", f"exec:test -e {flag}"), env=svc.env())
    wait_until(lambda: w.children(), message="child running")
    assert_stays_false(svc.registered, seconds=0.3, message="registered before ready")
    flag.touch()
    wait_until(svc.is_passing, timeout=10, message="passing once the command exits 0")


@pytest.mark.parametrize("form", ["abstract", "path"])
def test_notify_waits_for_ready_1_on_notify_socket(wrap_pid1, svc, form):
    ready = "notify" if form == "abstract" else f"notify:{svc.tmp / 'notify.sock'}"
    assert_registered_only_after_gate(wrap_pid1, svc, "--ready", ready, child_args=("--notify",))


def test_none_registers_as_soon_as_the_child_runs(wrap_pid1, svc):
    wrap_pid1(*svc.args("--ready", "none", child=["sleep", "30"]), env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing without a probe")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="Debian's redis-server is not installed")
def test_a_real_redis_server_with_supervised_systemd_is_registered_on_ready_1(wrap_pid1, svc):
    w = wrap_pid1(*svc.args("--ready", "notify", child=[
        "redis-server", "--port", str(svc.port), "--supervised", "systemd", "--save", "",
        "--appendonly", "no", "--bind", "127.0.0.1"]), env=svc.env())
    entry = wait_until(lambda: svc.consul.get(f"/v1/health/service/{svc.name}?passing")[1],
                       timeout=10, message="redis passing")[0]
    address = entry["Service"]["Address"] or entry["Node"]["Address"]
    with socket.create_connection((address, entry["Service"]["Port"]), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(64) == b"+PONG\r\n"
    w.kill(signal.SIGTERM)
    assert w.wait() == 0
    assert not svc.registered()


# -- sd_notify: who may talk, and the socket's life (issue 9, section 4) ----------------
SEND = ("import os, socket, sys\n"
        "a = os.environ['NOTIFY_SOCKET']\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.sendto(b'READY=1', '\\0' + a[1:] if a[0] == '@' else a)\n"
        "for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 0):\n"
        "    s.sendto(b'STATUS=%d' % i, '\\0' + a[1:] if a[0] == '@' else a)\n"
        "if len(sys.argv) > 2:\n"
        "    open(sys.argv[2], 'w').close()\n"
        "import time; time.sleep(30)\n")  # a sender that is gone cannot be told apart


def abstract_name() -> str:
    return f"@svcwrap-test-{uuid.uuid4().hex}"


def bound(name: str) -> bool:
    with open("/proc/net/unix") as f:
        return any(line.split()[-1] == name for line in f.read().splitlines()[1:]
                   if len(line.split()) > 7)


def test_ready_1_from_a_process_that_is_not_the_childs_is_ignored(wrap_pid1, svc):
    # Issue 9: anyone in the network namespace finds the name in /proc/net/unix.
    name = abstract_name()
    w = wrap_pid1(*svc.args("--ready", f"notify:{name}", child=["sleep", "30"]), env=svc.env())
    wait_until(lambda: bound(name), message="socket bound")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", "\0" + name[1:])  # from outside svcwrap's PID namespace
    wait_until(lambda: "notify message ignored" in w.stderr_so_far(), message="rejected")
    assert_stays_false(svc.registered, seconds=0.5, message="registered on a stranger's READY=1")


@pytest.mark.parametrize("access", ["main", "all"])
def test_notify_access_all_also_hears_descendants_of_the_child(wrap_pid1, svc, access):
    child = ["sh", "-c", f'{sys.executable} -c "$0"; sleep 30', SEND]  # a grandchild sends
    w = wrap_pid1(*svc.args("--ready", "notify", "--notify-access", access, child=child),
                  env=svc.env())
    if access == "all":
        wait_until(svc.is_passing, timeout=10, message="registered on a descendant's READY=1")
    else:
        wait_until(lambda: "notify message ignored" in w.stderr_so_far(), message="rejected")
        assert_stays_false(svc.registered, seconds=0.5, message="registered on a grandchild's")


def test_the_notify_socket_stays_bound_and_drained_for_the_childs_whole_life(wrap_pid1, svc):
    # Issue 9: closed after READY=1, another user could bind the freed name.
    name = abstract_name()
    sent = svc.tmp / "sent"
    # 50 more datagrams than the 10 a unix socket queues: blocks unless read.
    child = ["sh", "-c", f'{sys.executable} -c "$0" 50 {sent}; sleep 30', SEND]
    wrap_pid1(*svc.args("--ready", f"notify:{name}", "--notify-access", "all", child=child),
              env=svc.env())
    wait_until(svc.is_passing, timeout=10, message="passing")
    wait_until(sent.exists, timeout=5, message="every STATUS= datagram read")
    assert bound(name)


def test_without_registration_there_is_no_notify_socket_at_all(wrap_pid1, tmp_path):
    name = abstract_name()
    out = tmp_path / "env"
    w = wrap_pid1("--no-register", "--ready", f"notify:{name}", "--", "sh", "-c",
                  f'echo "[$NOTIFY_SOCKET]" > {out}')
    assert w.wait() == 0
    assert out.read_text() == "[]\n"
    assert not bound(name)


# -- http probes: one deadline, verified certificates (issue 9, sections 3 and 4) --------
@pytest.fixture
def trickling_server():
    """Accepts, then sends a status line one byte every 100 ms, forever."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX: "):
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def test_a_trickling_health_endpoint_cannot_defeat_the_ready_timeout(wrap_pid1, svc,
                                                                     trickling_server):
    w = wrap_pid1(*svc.args("--ready", f"http://127.0.0.1:{trickling_server}/",
                            "--ready-timeout", "1s", child=["sleep", "30"]), env=svc.env())
    assert w.wait(timeout=6) == 1
    assert "not ready" in w.stderr and "no complete answer within 1s" in w.stderr


def non_loopback_ip() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


@pytest.mark.skipif(non_loopback_ip() is None, reason="needs a non-loopback local address")
@pytest.mark.parametrize("where", ["remote", "remote-insecure", "loopback"])
def test_an_https_probe_verifies_certificates_unless_loopback_or_probe_insecure(
        wrap_pid1, svc, tls_files, where):
    host = "127.0.0.1" if where == "loopback" else non_loopback_ip()
    with https_server(host, tls_files) as url:  # its CA is trusted by nobody
        extra = ["--probe-insecure"] if where == "remote-insecure" else []
        w = wrap_pid1(*svc.args("--ready", url + "/", "--ready-timeout", "2s", *extra,
                                child=["sleep", "30"]), env=svc.env())
        if where == "remote":
            assert w.wait(timeout=8) == 1
            assert "certificate verify failed" in w.stderr
            assert not svc.registered()
        else:
            wait_until(svc.is_passing, timeout=10, message="passing without verification")
