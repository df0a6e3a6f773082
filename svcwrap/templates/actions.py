"""Running helper commands: a template's validate command and exec:CMD reloads.

The command runner is injected. Under svcwrap's supervisor it must be
probes.ExitStatuses.run: the supervisor reaps every child with waitpid(-1),
so nothing else may wait for one (see ExitStatuses). Its contract:
run(argv, timeout) -> (exit code, or None on a timeout; output, bounded).
No shell ever runs.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    Runner = Callable[[list[str], float], tuple[int | None, str]]

COMMAND_TIMEOUT = 30.0  # a validation (nginx -t) or a reload command
OUTPUT_LIMIT = 4096     # what is kept of its output (Consul keeps no more in a check)


class CommandResult:
    __slots__ = ("ok", "output")

    def __init__(self, ok: bool, output: str) -> None:
        self.ok = ok
        self.output = output

    def __repr__(self) -> str:
        return f"CommandResult(ok={self.ok}, {self.output[:60]!r})"


def run_command(argv: list[str], runner: Runner, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
    """Run argv; the output says why it failed, in at most OUTPUT_LIMIT characters."""
    try:
        code, output = runner(argv, timeout)
    except OSError as err:
        return CommandResult(False, f"{argv[0]}: {err.strerror or err}")
    output = output.strip()
    if code is None:
        return CommandResult(False, _bounded(f"{argv[0]}: timed out after {timeout:g}s\n{output}"))
    if code != 0:
        return CommandResult(False, _bounded(f"{argv[0]}: exit {code}\n{output}".strip()))
    return CommandResult(True, _bounded(output))


def _bounded(text: str) -> str:
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT - 3] + "..."
