"""The reload decision between the template manager and the supervisor
(svcwrap/templating.py, issue 11 "Reload actions", "Quiescence"): one pass
makes one reload, whatever number of templates changed in it."""
from __future__ import annotations

from svcwrap.cli import parse
from svcwrap.logs import Logger
from svcwrap.probes import ExitStatuses
from svcwrap.templating import Templating


class Queue:
    def __init__(self) -> None:
        self.put_calls: list[tuple[str, dict]] = []

    def put(self, verb: str, **args: object) -> None:
        self.put_calls.append((verb, args))


def templating(tmp_path, *options: str, tables: str = "") -> tuple[Templating, Queue]:
    config_file = tmp_path / "svcwrap.toml"
    config_file.write_text(tables)
    config = parse(["--no-register", "--config", str(config_file), *options, "--", "true"],
                   {})[0]
    t = Templating(config, Logger(level="error"), ExitStatuses({}), wake=lambda: None)
    queue = Queue()
    t.requests = queue   # type: ignore[assignment]
    return t, queue


def table(name: str, reload: str | None = None) -> str:
    extra = f'reload = "{reload}"\n' if reload else ""
    return f'[[template]]\nsource = "{name}.j2"\ndestination = "{name}"\n{extra}\n'


def test_several_templates_changed_in_one_pass_make_one_reload(tmp_path):
    t, queue = templating(tmp_path, "--reload", "signal:HUP",
                          tables=table("a") + table("b") + table("c", "signal:HUP"))
    t.on_rendered(t.config.templates, {})
    assert queue.put_calls == [("signal", {"signo": 1})]
    assert t.reloads == 1


def test_a_restart_among_the_changes_is_the_only_action_run(tmp_path):
    t, queue = templating(tmp_path, "--reload", "signal:USR1",
                          tables=table("a") + table("b", "restart"))
    t.on_rendered(t.config.templates, {})
    assert [verb for verb, _ in queue.put_calls] == ["restart"]


def test_templates_whose_action_is_none_reload_nothing(tmp_path):
    t, queue = templating(tmp_path, tables=table("a") + table("b", "none"))
    t.on_rendered(t.config.templates, {})
    assert queue.put_calls == [] and t.reloads == 0


def test_the_reload_signal_is_rewritten_like_a_forwarded_one_and_dropped_when_rewritten_to_0(
        tmp_path):
    t, queue = templating(tmp_path, "--reload", "signal:HUP", "--rewrite", "HUP:USR2",
                          tables=table("a"))
    t.on_rendered(t.config.templates, {})
    assert queue.put_calls == [("signal", {"signo": 12})]
    t, queue = templating(tmp_path, "--reload", "signal:HUP", "--rewrite", "HUP:0",
                          tables=table("a"))
    t.on_rendered(t.config.templates, {})
    assert queue.put_calls == []


def test_a_failing_validation_is_reported_for_the_check_even_with_nothing_changed(tmp_path):
    t, queue = templating(tmp_path, tables=table("a"))
    seen: list[dict] = []
    t.on_failures = seen.append
    t.on_rendered([], {"a": "nginx: exit 1\nno servers are inside upstream"})
    assert seen == [{"a": "nginx: exit 1\nno servers are inside upstream"}]
    assert queue.put_calls == []


def test_a_ready_1_that_the_old_childs_lifecycle_drains_still_counts_for_the_new_child():
    # After a `restart` reload the old ServiceLifecycle may still be draining
    # the notify socket when the new child sends READY=1 (issue 11).
    import os
    import socket
    import uuid

    from svcwrap.notify import NotifySocket

    address = f"@svcwrap-test-{uuid.uuid4().hex[:8]}"
    notify = NotifySocket(address)
    try:
        notify.new_child(os.getpid())   # this process plays the new child
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as child:
            child.sendto(b"READY=1", "\0" + address[1:])
        notify.drain(0.2)
        assert notify.wait_ready(0)
        assert not notify.wait_ready(0)   # once
    finally:
        notify.close()
