"""Writing a rendered file so that no reader ever sees half of it.

    render -> temp file in DEST's directory -> fsync -> rename over DEST
           -> fsync the directory -> validate -> (failed) put the old file back

Only when the bytes changed. Mode and owner: the template's own settings if
it has them, else the existing file's, else 0644 and svcwrap's user. The
validation runs with the new file in place (`nginx -t` reads it from where
nginx will); if it fails, the previous version goes back the same atomic
way (or the new file is removed when there was none) and the failure, with
the command's output, is reported so the caller can warn in Consul.
"""
from __future__ import annotations

import os

from svcwrap.templates.actions import run_command
from svcwrap.templates.spec import TemplateSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from svcwrap.templates.actions import Runner

DEFAULT_MODE = 0o644
MAX_EXISTING = 64 << 20  # bytes of DEST read back to compare and to restore


class WriteResult:
    __slots__ = ("changed", "failure")

    def __init__(self, changed: bool, failure: str | None = None) -> None:
        self.changed = changed     # the new bytes are in place
        self.failure = failure     # why not (validation output, or an OS error)

    def __repr__(self) -> str:
        return f"WriteResult(changed={self.changed}, failure={self.failure!r})"


class _Existing:
    __slots__ = ("data", "mode", "uid", "gid")

    def __init__(self, data: bytes, mode: int, uid: int, gid: int) -> None:
        self.data = data
        self.mode = mode
        self.uid = uid
        self.gid = gid


def write(spec: TemplateSpec, data: bytes, runner: Runner) -> WriteResult:
    path = spec.destination
    try:
        existing = _read_existing(path)
        if existing is not None and existing.data == data:
            return WriteResult(False)
        directory = os.path.dirname(path) or "."
        if spec.create_dirs:
            os.makedirs(directory, exist_ok=True)
        if spec.backup and existing is not None:
            _replace(path + ".bak", existing.data, existing.mode, existing.uid, existing.gid)
        mode, uid, gid = _target_attributes(spec, existing)
        _replace(path, data, mode, uid, gid)
    except OSError as err:
        return WriteResult(False, f"cannot write {path}: {err.strerror or err}")
    if not spec.validate:
        return WriteResult(True)
    result = run_command(spec.validate, runner)
    if result.ok:
        return WriteResult(True)
    try:
        if existing is None:
            os.unlink(path)
        else:
            _replace(path, existing.data, existing.mode, existing.uid, existing.gid)
    except OSError as err:
        return WriteResult(False, f"{result.output}\n(cannot restore {path}: "
                                  f"{err.strerror or err})")
    return WriteResult(False, result.output or f"{spec.validate[0]} failed")


def _read_existing(path: str) -> _Existing | None:
    try:
        data, st = read_bounded(path, MAX_EXISTING)
    except FileNotFoundError:
        return None
    return _Existing(data, st.st_mode & 0o7777, st.st_uid, st.st_gid)


def read_bounded(path: str, limit: int) -> tuple[bytes, os.stat_result]:
    """A file's bytes and its status; OSError (EFBIG) past limit bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(27, f"larger than {limit} bytes")
        return b"".join(chunks), st
    finally:
        os.close(fd)


def _target_attributes(spec: TemplateSpec, existing: _Existing | None) -> tuple[int, int, int]:
    mode = spec.mode if spec.mode is not None else \
        existing.mode if existing is not None else DEFAULT_MODE
    uid = spec.uid if spec.uid is not None else \
        existing.uid if existing is not None else os.geteuid()
    gid = spec.gid if spec.gid is not None else \
        existing.gid if existing is not None else os.getegid()
    return mode, uid, gid


def _replace(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Atomically make path hold data, with that mode and owner."""
    import tempfile

    directory = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                                suffix=".svcwrap-tmp")
    try:
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)  # before the mode: chown may clear set-id bits
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    os.close(fd)
    try:
        os.rename(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    # The rename itself must reach the disk too, or a crash could bring back
    # the old file after a reload already acted on the new one.
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
