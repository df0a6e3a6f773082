"""The self-contained /opt/svcwrap (docker/svcwrap-dist, issue 12) as PID 1 of images that
have no Python of their own: a debootstrap bookworm minbase, a bullseye one (an older glibc
than the tree's) and `FROM scratch` with Debian's static busybox as the only other program.

Every image here also sets PYTHONHOME and PYTHONPATH to a directory whose `encodings`,
`psutil` and `svcwrap` packages exit 99 when imported, runs as a non-root USER, and every
container is started with --read-only: each test also shows the tree ignores the first two
and needs neither root nor a writable file system. Containers use --network host and talk to
127.0.0.1 only (the `consul` fixture: the double, or SVCWRAP_TEST_CONSUL_ADDR).
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from tests.consul_fixture import ConsulUnderTest, wait_until
from tests.docker_support import (
    DIST_IMAGE, DIST_TARBALL, TERM_REPORTER, TREE_PYTHON, Container, DockerError, build_image,
    docker, engine_problem, ensure_base, ensure_dist, unique,
)
from tests.support import free_port

pytestmark = pytest.mark.docker

PREFIX = "svcwrap-test-"   # of every container name and service ID started here
SERVICE = "svcwrap-dist-test"
TTL = 2.0
START_TIMEOUT = 30.0
USER = "65534:65534"       # nobody: the images' USER
EVIL = "/opt/evil"         # the images' PYTHONHOME and PYTHONPATH

# How each test image gets the tree and a shell. bookworm: the redis example's stand-in base
# (debootstrap bookworm minbase + redis-server, no Python), COPY --from the dist image.
# bullseye: debootstrap bullseye minbase (glibc 2.31), ADD of the tarball.
# scratch: nothing but the tree and busybox-static (from the tree's builder image).
BASES: Dict[str, str] = {
    "bookworm": "FROM svcwrap-base:bookworm\n"
                f"COPY --from={DIST_IMAGE} /opt/svcwrap /opt/svcwrap\n",
    "bullseye": "FROM svcwrap-base:bullseye\n"
                "ADD svcwrap-dist.tar.gz /\n",
    "scratch": "FROM scratch\n"
               f"COPY --from={DIST_IMAGE} /opt/svcwrap /opt/svcwrap\n"
               "COPY --from=svcwrap-dist-builder:bookworm /bin/busybox /bin/busybox\n"
               'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n',
}
COMMON = (f"COPY evil/ {EVIL}/\n"
          f"ENV PYTHONHOME={EVIL} PYTHONPATH={EVIL}\n"
          f"USER {USER}\n"
          'ENTRYPOINT ["/opt/svcwrap/bin/svcwrap"]\n')
# Modules that would be imported from PYTHONPATH if svcwrap honoured it (encodings first of
# all, at interpreter start-up).
EVIL_MODULES = ["encodings/__init__.py", "psutil/__init__.py", "svcwrap/__init__.py"]
EVIL_CODE = "import os\nos.write(2, b'imported from PYTHONPATH\\n')\nos._exit(99)\n"


@pytest.fixture(scope="session")
def dist_images(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    images = {}
    try:
        ensure_dist()
        ensure_base("bookworm", "svcwrap-base:bookworm", "redis-server")
        ensure_base("bullseye", "svcwrap-base:bullseye")
        for base, head in BASES.items():
            context = tmp_path_factory.mktemp(f"dist-{base}")
            for module in EVIL_MODULES:
                (context / "evil" / module).parent.mkdir(parents=True, exist_ok=True)
                (context / "evil" / module).write_text(EVIL_CODE)
            if "ADD svcwrap-dist.tar.gz" in head:
                shutil.copy(DIST_TARBALL, context / "svcwrap-dist.tar.gz")
            images[base] = f"svcwrap-dist-test:{base}"
            build_image(images[base], head + COMMON, context)
    except DockerError as err:
        pytest.fail(f"cannot build the test images: {err}", pytrace=False)
    return images


@pytest.fixture(params=list(BASES))
def base(request: pytest.FixtureRequest) -> str:
    return request.param


RunIn = Callable[..., Container]


@pytest.fixture
def run(dist_images: Dict[str, str], base: str) -> Iterator[RunIn]:
    """Start containers of this base's image (read-only); removed at teardown."""
    started: List[Container] = []
    lock = threading.Lock()

    def start(*args: str, env: Optional[Dict[str, str]] = None, name: Optional[str] = None) -> Container:
        container = Container.run(dist_images[base], env, list(args), ["--read-only"],
                                  name or unique(PREFIX + base))
        with lock:
            started.append(container)
        return container

    try:
        yield start
    finally:
        for container in started:
            container.remove()


def exited(container: Container, timeout: float = START_TIMEOUT) -> int:
    try:
        return container.wait_exited(timeout)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{container.describe()}") from None


def wait_printed(container: Container, text: str, timeout: float = START_TIMEOUT) -> None:
    """Until the child printed `text` (stdout only: svcwrap's log on stderr quotes the command)."""
    try:
        wait_until(lambda: text in container.output(), timeout, 0.05, f"{text!r} on stdout")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{container.describe()}") from None


def registered(run: RunIn, consul: ConsulUnderTest, address: str = "127.0.0.1") -> tuple:
    """A container registered as SERVICE whose child (the TERM reporter on the tree's
    interpreter) says at SIGTERM whether it was still listed; (container, service ID)
    once passing."""
    sid = unique(PREFIX + "dist")
    env = {"CONSUL_HTTP_ADDR": consul.addr, "SVCWRAP_ID": sid, "SVCWRAP_PORT": str(free_port()),
           "SVCWRAP_TTL": f"{TTL:g}s", "SVCWRAP_DEREGISTER_AFTER": f"{consul.dcsa_min:g}s",
           "SVCWRAP_ADDRESS": address}
    if consul.token:
        env["CONSUL_HTTP_TOKEN"] = consul.token
    container = run("--name", SERVICE, "--", TREE_PYTHON, "-I", "-c", TERM_REPORTER, SERVICE,
                    env=env, name=sid)
    try:
        wait_until(lambda: sid in consul.passing(SERVICE), START_TIMEOUT, 0.05,
                   f"{sid} to be passing in Consul")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{container.describe()}") from None
    return container, sid


def status_field(status: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith(key + ":"))


# ---------------------------------------------------------------- the init essentials
def test_the_base_images_have_no_python_of_their_own(run: RunIn) -> None:
    container = run("--no-register", "--", "sh", "-c",
                    "for p in /usr/bin/python3 /usr/bin/python3.11 /usr/bin/python3.9 "
                    "/usr/local/bin/python3; do test -e $p && echo found $p; done; exit 0")
    assert exited(container) == 0, container.describe()
    assert "found" not in container.output(), container.output()


def test_the_childs_exit_code_is_the_containers(run: RunIn) -> None:
    container = run("--no-register", "--", "sh", "-c", "exit 3")
    assert exited(container) == 3, container.describe()


def test_a_child_killed_by_sigterm_makes_the_container_exit_143(run: RunIn) -> None:
    container = run("--no-register", "--", "sh", "-c", "kill -TERM $$")
    assert exited(container) == 143, container.describe()


def test_signals_sent_to_the_container_reach_the_child(run: RunIn) -> None:
    container = run("--no-register", "--", "sh", "-c",
                    'trap "echo got-usr1" USR1; trap "echo got-term; exit 7" TERM; echo ready; '
                    "while :; do sleep 1 & wait $!; done")
    wait_printed(container, "ready")
    container.kill("USR1")
    wait_printed(container, "got-usr1")
    container.stop(10)
    assert container.exit_code() == 7, container.describe()
    assert "got-term" in container.output()


def test_orphans_reparented_to_svcwrap_as_pid_1_are_reaped(run: RunIn) -> None:
    # Each subshell exits at once, so its `sleep 1` is reparented to PID 1 (svcwrap).
    container = run("--no-register", "--", "sh", "-c", "(sleep 1 &); (sleep 1 &); exec sleep 60")
    init = str(container.host_pid())

    def orphans() -> List[Dict[str, str]]:
        return [r for r in container.processes()
                if r["PPID"] == init and ("sleep 1" == r["CMD"] or "defunct" in r["CMD"])]

    wait_until(lambda: len(orphans()) == 2, START_TIMEOUT, 0.05, "two orphans under PID 1")
    wait_until(lambda: not orphans(), 10, 0.05, "the orphans to exit and be reaped (no zombies)")
    container.stop(10)


def test_svcwrap_runs_read_only_as_the_images_non_root_user(run: RunIn) -> None:
    container = run("--no-register", "--", "sh", "-c",
                    "grep ^Uid: /proc/1/status; touch /opt/svcwrap/x 2>/dev/null && echo writable; exit 0")
    assert exited(container) == 0, container.describe()
    logs = container.output()
    assert status_field(logs, "Uid").split() == ["65534"] * 4, logs
    assert "writable" not in logs, logs


def test_in_a_read_only_container_status_and_healthcheck_still_answer(run: RunIn) -> None:
    # --read-only leaves /run and /tmp unwritable: the socket goes to /dev/shm,
    # where the verbs look too (else a HEALTHCHECK would fail for good).
    container = run("--no-register", "--", "sleep", "60")
    socket = "/dev/shm/svcwrap-65534/control.sock"
    wait_until(lambda: docker("exec", container.id, "test", "-S", socket, check=False).returncode == 0,
               START_TIMEOUT, 0.05, f"the control socket {socket}")
    docker("exec", container.id, "/opt/svcwrap/bin/svcwrap", "healthcheck")  # raises unless exit 0
    status = container.exec("/opt/svcwrap/bin/svcwrap", "status")
    assert status.split()[:2] == ["state", "running"], status
    assert "no control socket" not in container.logs(), container.describe()


# ---------------------------------------------------------------- Consul
def test_it_registers_in_consul_and_docker_stop_leaves_it_before_the_child_is_signalled(
        run: RunIn, consul: ConsulUnderTest) -> None:
    container, sid = registered(run, consul)
    container.stop(10)
    assert container.exit_code() == 0, container.describe()
    assert "at SIGTERM listed=False" in container.output(), container.describe()
    assert sid not in consul.services()


# ---------------------------------------------------------------- correctness as PID 1
def test_the_child_gets_exactly_the_environment_svcwrap_was_given(run: RunIn) -> None:
    # /proc/N/environ is what N was exec'd with: PID 1 is svcwrap, $$ the child shell (the
    # `exit` keeps a shell from exec'ing its last command in place, with its own exports).
    # Where the image has a C.UTF-8 locale the interpreter adds LC_CTYPE=C.UTF-8 (PEP 538) to
    # its own environment; svcwrap passes on what it was exec'd with instead (issue 9).
    container = run("--no-register", "--", "sh", "-c",
                    "cat /proc/1/environ; echo; echo ---; cat /proc/$$/environ; exit 0",
                    env={"SVCWRAP_TEST_VALUE": "a b\tc"})
    assert exited(container) == 0, container.describe()
    given, _, child = container.output().partition("\n---\n")
    given_env = sorted(filter(None, given.split("\0")))
    child_env = sorted(filter(None, child.split("\0")))
    assert "SVCWRAP_TEST_VALUE=a b\tc" in given_env, given_env
    assert f"PYTHONPATH={EVIL}" in given_env, given_env
    assert child_env == given_env
    assert not [v for v in child_env if v.startswith(("LD_", "LC_", "LANG", "_PYI"))], child_env


def test_svcwrap_itself_is_pid_1_and_the_child_its_direct_child(run: RunIn) -> None:
    # the launcher is a script run by the tree's interpreter: no bootloader process, no re-exec
    container = run("--no-register", "--", "sh", "-c",
                    "tr '\\0' ' ' </proc/1/cmdline; echo; grep ^PPid: /proc/$$/status; exit 0")
    assert exited(container) == 0, container.describe()
    out = container.output()
    assert out.startswith("/opt/svcwrap/bin/python3.11 -IS /opt/svcwrap/bin/svcwrap --no-register -- sh"), out
    assert status_field(out, "PPid") == "1", out


def test_the_child_starts_with_no_blocked_and_no_ignored_signals(run: RunIn) -> None:
    # cat is exec'd by svcwrap directly (no shell in between to change anything)
    container = run("--no-register", "--", "cat", "/proc/self/status")
    assert exited(container) == 0, container.describe()
    logs = container.output()
    assert int(status_field(logs, "SigBlk"), 16) == 0, logs
    assert int(status_field(logs, "SigIgn"), 16) == 0, logs


def test_svcwrap_as_pid_1_maps_only_libraries_from_the_tree(
        run: RunIn, consul: ConsulUnderTest) -> None:
    # registered, so the Consul client and its compiled stdlib modules are loaded, and
    # with the address of an interface, which svcwrap looks up with psutil
    container, _ = registered(run, consul, address="iface:lo")
    maps = [line.split()[5] for line in container.exec("cat", "/proc/1/maps").splitlines()
            if len(line.split()) >= 6 and line.split()[5].startswith("/")]
    libraries = sorted({path for path in maps if ".so" in Path(path).name})
    assert any(p == "/opt/svcwrap/lib/libc.so.6" for p in libraries), libraries
    assert any("/lib-dynload/" in p for p in libraries), libraries
    assert any("psutil" in p for p in libraries), libraries
    assert [p for p in libraries if not p.startswith("/opt/svcwrap/")] == [], libraries
    assert "/opt/svcwrap/bin/python3.11" in maps, maps


def test_pythonhome_and_pythonpath_set_in_the_image_do_not_affect_svcwrap(run: RunIn) -> None:
    container = run("--no-register", "--", "sh", "-c", 'echo "home=$PYTHONHOME path=$PYTHONPATH"')
    assert exited(container) == 0, container.describe()
    assert f"home={EVIL} path={EVIL}" in container.output(), container.describe()  # the child's
    assert "imported from PYTHONPATH" not in container.logs(), container.describe()


def test_the_tarball_also_gives_a_usr_local_bin_svcwrap_link(dist_images: Dict[str, str]) -> None:
    # the bullseye image got the tree with ADD of the tarball
    container = Container.run(dist_images["bullseye"], docker_args=["--read-only", "--entrypoint",
                                                                    "/usr/local/bin/svcwrap"],
                              args=["--version"], name=unique(PREFIX + "link"))
    try:
        assert exited(container) == 0, container.describe()
        assert container.output().startswith("svcwrap "), container.describe()
    finally:
        container.remove()
