"""Writing rendered files (issue 11 "Writing" and "Validate, then reload,
or roll back"): atomic, only on change, modes and owners, backups, and the
validation that puts the previous file back when it fails."""
from __future__ import annotations

import os
import stat
import sys
import threading

import pytest

from svcwrap.templates.spec import TemplateSpec
from svcwrap.templates.writer import write
from tests.templates_support import Harness, run_command

# A validation command: passes unless the file holds the word "bad".
VALIDATE = [sys.executable, "-c",
            "import sys; t = open(sys.argv[1]).read(); print('checked', len(t));"
            "sys.exit('syntax error: bad upstream' if 'bad' in t else 0)"]


def spec(tmp_path, name="out.conf", **options) -> TemplateSpec:
    return TemplateSpec(str(tmp_path / "src"), str(tmp_path / name), **options)


def test_a_reader_never_sees_a_partial_file(tmp_path):
    target = spec(tmp_path)
    versions = [bytes([65 + i]) * (512 * 1024) for i in range(6)]
    write(target, versions[0], run_command)
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            with open(target.destination, "rb") as f:
                seen.add(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(5):
            for version in versions:
                write(target, version, run_command)
    finally:
        stop.set()
        reader.join()
    assert seen <= set(versions)
    assert [p for p in os.listdir(tmp_path) if p != "out.conf"] == []  # no temp file left


def test_a_file_is_rewritten_only_when_its_bytes_change(tmp_path):
    target = spec(tmp_path)
    assert write(target, b"one", run_command).changed
    inode = os.stat(target.destination).st_ino
    assert not write(target, b"one", run_command).changed
    assert os.stat(target.destination).st_ino == inode


def test_a_new_file_is_0644_and_an_existing_file_keeps_its_mode(tmp_path):
    target = spec(tmp_path)
    os.umask(0o077)  # the umask must not decide the mode
    try:
        write(target, b"one", run_command)
    finally:
        os.umask(0o022)
    assert stat.S_IMODE(os.stat(target.destination).st_mode) == 0o644
    os.chmod(target.destination, 0o600)
    write(target, b"two", run_command)
    assert stat.S_IMODE(os.stat(target.destination).st_mode) == 0o600


def test_the_templates_mode_wins_over_the_existing_files(tmp_path):
    target = spec(tmp_path, mode=0o640)
    (tmp_path / "out.conf").write_text("old")
    write(target, b"new", run_command)
    assert stat.S_IMODE(os.stat(target.destination).st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_an_existing_files_owner_is_kept_and_the_templates_user_and_group_win(tmp_path):
    (tmp_path / "out.conf").write_text("old")
    os.chown(tmp_path / "out.conf", 65534, 65534)
    write(spec(tmp_path), b"new", run_command)
    st = os.stat(tmp_path / "out.conf")
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    write(spec(tmp_path, uid=0, gid=65534), b"newer", run_command)
    st = os.stat(tmp_path / "out.conf")
    assert (st.st_uid, st.st_gid) == (0, 65534)


def test_missing_directories_are_created_only_when_asked(tmp_path):
    result = write(spec(tmp_path, "a/b/out.conf"), b"x", run_command)
    assert not result.changed and "No such file or directory" in result.failure
    assert write(spec(tmp_path, "a/b/out.conf", create_dirs=True), b"x", run_command).changed
    assert (tmp_path / "a/b/out.conf").read_bytes() == b"x"


def test_backup_keeps_the_previous_version_as_dest_bak(tmp_path):
    target = spec(tmp_path, backup=True)
    write(target, b"one", run_command)
    assert not (tmp_path / "out.conf.bak").exists()
    write(target, b"two", run_command)
    assert (tmp_path / "out.conf.bak").read_bytes() == b"one"


def test_validation_runs_with_the_new_file_in_place(tmp_path):
    target = spec(tmp_path, validate=VALIDATE + [str(tmp_path / "out.conf")])
    assert write(target, b"good config", run_command).changed


def test_a_failed_validation_puts_the_previous_file_back_and_says_why(tmp_path):
    target = spec(tmp_path, validate=VALIDATE + [str(tmp_path / "out.conf")])
    write(target, b"good", run_command)
    os.chmod(target.destination, 0o600)
    result = write(target, b"bad", run_command)
    assert not result.changed
    assert "syntax error: bad upstream" in result.failure and "checked 3" in result.failure
    assert (tmp_path / "out.conf").read_bytes() == b"good"
    assert stat.S_IMODE(os.stat(target.destination).st_mode) == 0o600


def test_a_failed_validation_of_a_first_version_leaves_no_file(tmp_path):
    target = spec(tmp_path, validate=VALIDATE + [str(tmp_path / "out.conf")])
    assert write(target, b"bad", run_command).failure
    assert not (tmp_path / "out.conf").exists()


def test_validation_failure_reports_a_warning_reloads_nothing_and_recovers_on_next_change(tmp_path):
    dest = str(tmp_path / "up.conf")
    h = Harness(tmp_path, {"up.conf": "{{ key('upstream') }}\n"}, validate=VALIDATE + [dest])
    h.consul.put("upstream", "server a;")
    h.settle()
    assert h.manager.first_render_done.is_set() and h.reloads == []
    h.consul.put("upstream", "server bad;")
    h.settle()
    assert h.text("up.conf") == "server a;\n"   # the last good configuration
    (changed, failures), = h.reloads
    assert changed == [] and "bad upstream" in failures[dest]
    assert "bad upstream" in h.manager.failures()[dest]
    h.consul.put("upstream", "server b;")
    h.settle()
    assert h.text("up.conf") == "server b;\n"
    assert h.reloads[1] == (["up.conf"], {})
    assert h.manager.failures() == {}
