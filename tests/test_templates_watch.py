"""Watches as Consul blocking queries (issue 11 "Behaviour", reference §11),
driven one call at a time against the in-process fake with a test clock."""
from __future__ import annotations

from svcwrap.templates.queries import Query
from svcwrap.templates.watch import BLOCK_WAIT, MAX_ANSWER, Watch, next_index
from tests.templates_support import Clock, FakeConsul


class Recorder:
    def __init__(self) -> None:
        self.answers: list[object] = []
        self.errors: list[str] = []

    def answer(self, query, data) -> None:
        self.answers.append(data)

    def error(self, query, text) -> None:
        self.errors.append(text)


def watch_of(consul: FakeConsul, query: Query, *, floor: float = 0.0, clock=None):
    rec = Recorder()
    return Watch(query, consul, rec.answer, rec.error, floor=floor, clock=clock or Clock(),
                 rng=lambda: 1.0), rec


def test_the_first_call_is_a_plain_read_and_the_next_blocks_on_the_reported_index():
    consul = FakeConsul()
    watch, _ = watch_of(consul, Query("key", "a"))
    watch.step()
    consul.put("a", "1")
    watch.step()
    (_, first, _, _), (_, second, _, _) = consul.calls
    assert "index" not in first
    assert second["index"] == "10" and second["wait"] == f"{int(BLOCK_WAIT * 1000)}ms"


def test_an_index_that_goes_backwards_resets_to_a_plain_read():
    consul = FakeConsul()
    watch, _ = watch_of(consul, Query("key", "a"))
    consul.index_override = 50
    watch.step()
    consul.index_override = 7   # tombstones reaped, or a new agent (§16.8)
    watch.step()
    watch.step()
    assert [c[1].get("index") for c in consul.calls] == [None, "50", None]


def test_an_index_below_one_is_treated_as_one():
    assert next_index(0, 0) == 1
    assert next_index(0, -3) == 1
    consul = FakeConsul()
    consul.index_override = 0
    watch, _ = watch_of(consul, Query("key", "a"))
    watch.step()
    watch.step()
    assert consul.calls[1][1]["index"] == "1"


def test_a_return_whose_data_did_not_change_is_not_passed_on():
    consul = FakeConsul()
    consul.put("a", "1")
    watch, rec = watch_of(consul, Query("key", "a"))
    watch.step()
    consul.index += 5   # wait ran out / a write elsewhere: a new index, the same data
    watch.step()
    consul.put("a", "2")
    watch.step()
    assert rec.answers == ["1", "2"]


def test_a_floor_separates_two_calls_of_one_watch():
    clock = Clock()
    consul = FakeConsul()
    consul.clock = clock
    watch, _ = watch_of(consul, Query("key", "a"), floor=0.25, clock=clock)
    assert watch.step() == 0.25
    consul.latency = 0.1
    assert abs(watch.step() - 0.15) < 1e-9
    consul.latency = 1.0   # a call that blocked longer than the floor: no extra wait
    assert watch.step() == 0.0


def test_consul_down_backs_off_exponentially_up_to_a_cap_and_reports_each_failure():
    consul = FakeConsul()
    consul.down = True
    watch, rec = watch_of(consul, Query("key", "a"))
    delays = [watch.step() for _ in range(8)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert len(rec.errors) == 8 and "Connection refused" in rec.errors[0]
    consul.down = False
    consul.put("a", "1")
    assert watch.step() == 0.0 and rec.answers == ["1"]


def test_an_error_status_from_consul_backs_off_like_a_failure():
    consul = FakeConsul()
    consul.error = (403, b"Permission denied")
    watch, rec = watch_of(consul, Query("services"))
    assert watch.step() == 0.25
    assert rec.errors == ["services(): Consul answered 403 Permission denied"]
    assert rec.answers == []


def test_every_call_is_bounded_in_size_and_in_time_by_wait_plus_a_sixteenth_and_a_margin():
    consul = FakeConsul()
    watch, _ = watch_of(consul, Query("service", "web"))
    watch.wait = 16.0
    watch.step()
    watch.step()
    (_, _, plain, size1), (_, _, blocking, size2) = consul.calls
    assert size1 == size2 == MAX_ANSWER
    assert plain < 16.0
    assert 17.0 < blocking <= 17.0 + 10.0


def test_a_stopped_watch_passes_on_nothing_more():
    consul = FakeConsul()
    consul.put("a", "1")
    watch, rec = watch_of(consul, Query("key", "a"))
    watch.stop()
    watch.step()
    assert rec.answers == []
