"""`--metrics HOST:PORT` (issue 10): Prometheus' text format, fed by the
observer alone, scraped over HTTP."""
from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from svcwrap.metrics import Metrics
from svcwrap.states import CheckStatus, ServiceState
from tests.control_support import LogFile, observer, verb
from tests.support import REPO

S = ServiceState


@pytest.fixture
def metrics():
    m = Metrics()
    host, port = m.serve("127.0.0.1", 0)
    m.url = f"http://{host}:{port}/metrics"
    yield m
    m.close()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """name and sorted labels of each sample -> its value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def one_hot(samples: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def test_the_state_gauge_is_1_for_the_current_state_and_0_for_every_other(metrics):
    obs = observer(LogFile(), metrics=metrics, initial=S.REGISTERING)
    obs.registration(id="web-1")
    states = one_hot(scrape(metrics.url), "svcwrap_state", "state")
    assert states == {s.value: (1.0 if s is S.REGISTERED else 0.0) for s in ServiceState}


def test_the_check_gauge_shows_the_last_result_and_nothing_before_the_first(metrics):
    obs = observer(LogFile(), metrics=metrics, initial=S.REGISTERED)
    assert set(one_hot(scrape(metrics.url), "svcwrap_check_status", "status").values()) == {0.0}
    obs.check_result(CheckStatus.PASSING, "ok")
    obs.check_result(CheckStatus.WARNING, "slow")
    assert one_hot(scrape(metrics.url), "svcwrap_check_status", "status") == \
        {"passing": 0.0, "warning": 1.0, "critical": 0.0}


def test_heartbeats_failures_registrations_restarts_and_signals_are_counted(metrics):
    obs = observer(LogFile(), metrics=metrics, initial=S.REGISTERING)
    obs.registration()
    obs.transition(S.REGISTERING)
    obs.registration()
    for _ in range(3):
        obs.heartbeat_ok()
    obs.heartbeat_failed("connection refused")
    obs.child_restarted(99)
    obs.signal_forwarded("SIGUSR1")
    obs.signal_forwarded("SIGUSR1")
    obs.signal_forwarded("SIGHUP")
    samples = scrape(metrics.url)
    assert samples[("svcwrap_registrations_total", ())] == 2
    assert samples[("svcwrap_heartbeats_total", ())] == 3
    assert samples[("svcwrap_heartbeat_failures_total", ())] == 1
    assert samples[("svcwrap_child_restarts_total", ())] == 1
    assert one_hot(samples, "svcwrap_signals_forwarded_total", "signal") == \
        {"SIGUSR1": 2, "SIGHUP": 1}


def test_consul_call_durations_land_in_the_histogram_by_call(metrics):
    obs = observer(LogFile(), metrics=metrics)
    obs.consul_request("register", 0.004)
    obs.consul_request("update", 0.002)
    obs.consul_request("update", 0.3)
    samples = scrape(metrics.url)
    count = one_hot(samples, "svcwrap_consul_request_seconds_count", "call")
    assert count == {"register": 1, "update": 2, "deregister": 0, "maintenance": 0}
    assert samples[("svcwrap_consul_request_seconds_bucket",
                    (("call", "update"), ("le", "0.005")))] == 1
    assert samples[("svcwrap_consul_request_seconds_sum", (("call", "update"),))] == \
        pytest.approx(0.302)


def test_the_standard_process_metrics_are_served(metrics):
    names = {name for name, _ in scrape(metrics.url)}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total",
            "process_open_fds", "process_start_time_seconds"} <= names


def test_metrics_status_and_log_agree_after_a_whole_lifecycle(metrics):
    log = LogFile()
    obs = observer(log, metrics=metrics, initial=S.STARTING)
    obs.transition(S.REGISTERING)
    obs.registration()
    obs.transition(S.LEAVING, "stopping")
    obs.transition(S.DRAINING, "draining")
    obs.registration()  # a late one, refused as a transition
    states = one_hot(scrape(metrics.url), "svcwrap_state", "state")
    current = [state for state, value in states.items() if value == 1]
    logged = [w.split("=", 1)[1] for line in log.lines() for w in line.split()
              if w.startswith("state=")]
    assert current == [obs.snapshot()["state"]] == [logged[-1]] == ["draining"]


def test_other_paths_are_404(metrics):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(metrics.url.replace("/metrics", "/secrets"), timeout=10)
    assert err.value.code == 404


@pytest.mark.parametrize("value, message", [
    ("9100", "--metrics: '9100' is not HOST:PORT"),
    ("127.0.0.1:http", "--metrics: 'http' is not a port number (1-65535)"),
    ("::1:9100", "--metrics: '::1:9100': write an IPv6 address as [ADDR]:PORT"),
])
def test_a_bad_metrics_address_is_one_line_and_exit_2(value, message):
    p = verb("--no-register", "--metrics", value, "--", "true")
    assert (p.returncode, p.stderr) == (2, f"svcwrap: error: {message}\n")


def test_prometheus_client_is_imported_with_the_metrics_module_and_not_before():
    code = ("import sys; sys.path.insert(0, %r); import svcwrap.cli, svcwrap.observer, "
            "svcwrap.control, svcwrap.verbs; before = 'prometheus_client' in sys.modules; "
            "import svcwrap.metrics; print(before, 'prometheus_client' in sys.modules)"
            % str(REPO))
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_metrics_started_late_carry_over_everything_the_observer_saw_before():
    # prometheus_client is imported on a worker thread while the main loop
    # already forwards signals: nothing from that window may be lost.
    obs = observer(LogFile(), initial=S.REGISTERING)
    obs.signal_forwarded("SIGHUP")
    obs.registration()
    obs.heartbeat_ok()
    obs.check_result(CheckStatus.WARNING, "slow")
    m = Metrics()
    obs.attach_metrics(m)
    obs.heartbeat_ok()

    def value(name, **labels):
        return m.registry.get_sample_value(name, labels)
    assert value("svcwrap_state", state="registered") == 1
    assert value("svcwrap_check_status", status="warning") == 1
    assert value("svcwrap_signals_forwarded_total", signal="SIGHUP") == 1
    assert value("svcwrap_registrations_total") == 1
    assert value("svcwrap_heartbeats_total") == 2
    assert obs.snapshot()["counts"] == {"heartbeats": 2, "heartbeat_failures": 0,
                                        "registrations": 1, "child_restarts": 0,
                                        "signals_forwarded": {"SIGHUP": 1}}
