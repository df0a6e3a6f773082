"""Quiescence (consul-template's wait MIN:MAX) and the reload decision
(issue 11 "Quiescence", `svcwrap reload`), on the test clock."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from svcwrap.logs import Logger
from svcwrap.templates.quiescence import Quiescence
from svcwrap.templates.spec import TemplateError, parse_wait
from tests.templates_support import Harness

VALUE = "{{ key('v') }}"


def started(tmp_path, sources, wait=(2.0, 10.0)) -> Harness:
    h = Harness(tmp_path, sources, wait=wait)
    for key in ("v", "w"):
        h.consul.put(key, "0")
    h.settle()
    assert h.manager.first_render_done.is_set() and h.reloads == []
    return h


def test_a_burst_of_changes_makes_one_render_and_one_reload(tmp_path):
    h = started(tmp_path, {"out": VALUE})
    for i in range(1, 6):          # five changes, 1 s apart: each within MIN of the last
        h.consul.put("v", str(i))
        h.pump()
        assert not h.manager.run_once()
        h.clock.advance(1.0)
    assert h.text("out") == "0"
    h.clock.advance(1.0)           # MIN (2 s) after the last change
    h.pump()
    assert h.manager.run_once()
    assert h.text("out") == "5"
    assert h.reloads == [(["out"], {})]


def test_a_change_that_never_quiets_down_is_rendered_after_max(tmp_path):
    h = started(tmp_path, {"out": VALUE})
    for i in range(1, 12):         # a change every 1.5 s: never 2 s of quiet
        h.consul.put("v", str(i))
        h.pump()
        if h.manager.run_once():
            break
        h.clock.advance(1.5)
    # The burst began at t=0; the first look after MAX (10 s) is at t=10.5,
    # with the eighth change just made.
    assert h.text("out") == "8"
    assert len(h.reloads) == 1


def test_changes_to_several_templates_within_the_window_make_one_reload(tmp_path):
    h = started(tmp_path, {"a": VALUE, "b": "{{ key('w') }}", "c": "unchanged"})
    h.consul.put("v", "1")
    h.pump()
    h.clock.advance(1.0)
    h.consul.put("w", "1")
    h.pump()
    h.clock.advance(2.0)
    h.settle()
    assert h.reloads == [(["a", "b"], {})]


def test_without_a_wait_every_change_renders_at_once(tmp_path):
    h = started(tmp_path, {"out": VALUE}, wait=(0.0, 0.0))
    for i in (1, 2):
        h.consul.put("v", str(i))
        h.settle()
    assert h.reloads == [(["out"], {}), (["out"], {})]


def test_the_first_render_is_not_held_back_by_the_wait_and_reloads_nothing(tmp_path):
    h = Harness(tmp_path, {"out": VALUE}, wait=(60.0, 600.0))
    h.consul.put("v", "1")
    h.settle()
    assert h.text("out") == "1" and h.manager.first_render_done.is_set()
    assert h.reloads == []


def test_a_change_that_renders_identical_bytes_reloads_nothing(tmp_path):
    h = started(tmp_path, {"out": "{{ key('v')|length }}"}, wait=(0.0, 0.0))
    h.consul.put("v", "1")        # "0" -> "1": the same length
    h.settle()
    assert h.reloads == []


def test_svcwrap_reload_rerenders_now_and_the_pending_change_lands_with_it_once(tmp_path):
    h = started(tmp_path, {"out": VALUE})
    (tmp_path / "out.j2").write_text("v=" + VALUE)   # reload re-reads the sources
    h.consul.put("v", "7")
    h.pump()                       # pending in the window (2 s)
    request = h.manager.request_reload()
    assert h.manager.run_once() and request.done.is_set()
    assert [spec.destination for spec in request.changed] == [str(tmp_path / "out")]
    assert h.text("out") == "v=7"
    assert h.reloads == [(["out"], {})]
    h.clock.advance(60.0)
    h.pump()
    assert not h.manager.run_once()   # no second pass, no second reload
    assert len(h.reloads) == 1


def test_watches_no_template_needs_any_more_are_stopped(tmp_path):
    h = Harness(tmp_path, {"out": "{% if key('mode') == 'a' %}{{ key('a') }}"
                                  "{% else %}{{ key('b') }}{% endif %}"})
    for key, value in (("mode", "a"), ("a", "1"), ("b", "2")):
        h.consul.put(key, value)
    h.settle()
    h.consul.put("mode", "b")
    h.settle()
    live = sorted(w.query.arg for w in h.watches if not w.stopping.is_set())
    assert live == ["b", "mode"] and h.text("out") == "2"


def test_quiescence_is_due_min_after_the_last_change_but_no_later_than_max_after_the_first():
    q = Quiescence(2.0, 5.0)
    q.changed(0.0)
    assert not q.due(1.9) and q.due(2.0)
    q.changed(1.9)
    q.changed(3.8)
    assert q.due_at == 5.0
    q.clear()
    assert not q.pending


def test_wait_max_defaults_to_four_times_min_and_must_not_be_shorter():
    assert parse_wait("2s") == (2.0, 8.0)
    assert parse_wait("500ms:3s") == (0.5, 3.0)
    with pytest.raises(TemplateError, match="MAX is shorter than MIN"):
        parse_wait("5s:1s")
    with pytest.raises(TemplateError, match="invalid duration"):
        parse_wait("soon")


def test_rapid_changes_for_15s_make_one_render_per_max_and_one_after_the_last(tmp_path):
    h = started(tmp_path, {"out": VALUE})    # wait 2s:10s
    start = h.clock.now
    passes = 0
    for i in range(1, 1501):       # a change every 10 ms for 15 s
        h.clock.now = start + (i - 1) / 100
        h.consul.put("v", str(i))
        h.pump()
        passes += h.manager.run_once()
    h.clock.now += 2.0
    passes += h.settle()
    # At MAX after the burst began (t=10 s), then MIN after the last change.
    assert passes == len(h.reloads) == 2
    assert h.text("out") == "1500"


@contextmanager
def two_watches_logging(tmp_path) -> Iterator[tuple[Harness, Path]]:
    """A harness on two keys, rendered once, logging to a file (read it after the block)."""
    h = Harness(tmp_path, {"a": "{{ key('a') }}{{ key('b') }}"})
    log = tmp_path / "log"
    with open(log, "w") as f:
        h.manager.log = Logger(fd=f.fileno())
        h.manager.run_once()
        yield h, log


def test_consul_down_is_logged_once_for_all_watches_and_its_return_once(tmp_path):
    with two_watches_logging(tmp_path) as (h, log):
        h.consul.down = True
        for _ in range(3):
            h.pump()
        h.consul.down = False
        h.pump()
    text = log.read_text()
    assert text.count("consul unavailable") == 1 and text.count("consul available again") == 1


def test_a_stopped_manager_logs_nothing_about_consul_even_from_a_call_still_in_flight(tmp_path):
    # A watch's blocking call outlives stop(); how it ends must not be logged
    # (the log's descriptor may be closed by then: a test harness once wrote
    # a line into the socket that reused its number).
    with two_watches_logging(tmp_path) as (h, log):
        h.consul.down = True
        h.watches[0].step()            # one watch fails: logged
        h.manager.stop()
        h.consul.down = False
        h.watches[0].step()            # its call in flight recovers after the stop
        h.consul.down = True
        h.watches[1].step()            # another's fails after the stop
        h.manager.failed(h.watches[1].query, "refused")
    text = log.read_text()
    assert text.count("consul unavailable") == 1 and "available again" not in text
