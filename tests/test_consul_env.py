"""svcwrap reads Consul's client variables the way Consul's own client does
(py-consul reads only a few of them, some differently, so svcwrap maps them)."""
from __future__ import annotations

import signal

import pytest

from svcwrap.cli import parse
from svcwrap.registry import Registry
from tests.lifecycle_support import Service
from tests.support import program, wait_until


def consul_config(env: dict[str, str], *flags: str):
    config, _ = parse(["--name", "web", *flags, "--", "true"], env)
    return config.consul


def test_without_variables_the_agent_is_127_0_0_1_8500_over_http():
    assert consul_config({}).base_url == "http://127.0.0.1:8500"


@pytest.mark.parametrize("addr,url", [
    ("10.0.0.5:8600", "http://10.0.0.5:8600"),
    ("http://10.0.0.5:8600", "http://10.0.0.5:8600"),
    ("https://consul.internal:8501", "https://consul.internal:8501"),
    ("[::1]:8500", "http://[::1]:8500"),
    ("consul.internal", "http://consul.internal:8500"),
])
def test_consul_http_addr_takes_the_forms_consuls_client_takes(addr, url):
    assert consul_config({"CONSUL_HTTP_ADDR": addr}).base_url == url


def test_the_consul_flag_and_its_variable_win_over_consul_http_addr():
    env = {"CONSUL_HTTP_ADDR": "10.0.0.5:8500"}
    assert consul_config(env, "--consul", "127.0.0.2:9500").base_url == "http://127.0.0.2:9500"
    assert consul_config(env | {"SVCWRAP_CONSUL": "127.0.0.3:9500"}).base_url == \
        "http://127.0.0.3:9500"


def test_consul_http_ssl_true_switches_to_https_even_for_an_http_address():
    env = {"CONSUL_HTTP_ADDR": "http://127.0.0.1:8501", "CONSUL_HTTP_SSL": "true"}
    assert consul_config(env).base_url == "https://127.0.0.1:8501"


@pytest.mark.parametrize("value,verify", [("false", False), ("0", False), ("true", True),
                                          ("1", True)])
def test_consul_http_ssl_verify_is_a_go_boolean(value, verify):
    # py-consul itself would turn verification off for "1"; test_consul_http.py
    # shows what verification does on a real TLS connection.
    assert consul_config({"CONSUL_HTTP_SSL_VERIFY": value}).verify is verify


def test_consul_cacert_and_capath_become_the_trusted_cas(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert consul_config({"CONSUL_CACERT": str(ca)}).verify == str(ca)
    assert consul_config({"CONSUL_CAPATH": str(tmp_path)}).verify == str(tmp_path)


def test_client_cert_and_key_are_sent_together(tmp_path):
    env = {"CONSUL_CLIENT_CERT": "/etc/c.pem", "CONSUL_CLIENT_KEY": "/etc/k.pem"}
    assert consul_config(env).cert == ("/etc/c.pem", "/etc/k.pem")


def test_tls_server_name_is_sent_and_verified_without_its_port():
    config = consul_config({"CONSUL_TLS_SERVER_NAME": "consul.internal:8501",
                            "CONSUL_HTTP_SSL": "true"})
    assert config.tls_server_name == "consul.internal"


def test_consul_http_token_is_the_token(tmp_path):
    assert consul_config({"CONSUL_HTTP_TOKEN": "abc"}).token.reveal() == "abc"


def test_a_token_file_wins_over_consul_http_token(tmp_path):
    (tmp_path / "t1").write_text("from-file\n")
    (tmp_path / "t2").write_text("from-flag\n")
    env = {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "t1")}
    assert consul_config(env).token.reveal() == "from-file"
    assert consul_config(env, "--token-file", str(tmp_path / "t2")).token.reveal() == "from-flag"


def test_a_unix_address_is_a_socket_path_as_in_consuls_client():
    config = consul_config({"CONSUL_HTTP_ADDR": "unix:///run/consul/http.sock"})
    assert (config.scheme, config.host, config.base_url) == \
        ("unix", "/run/consul/http.sock", "unix:///run/consul/http.sock")


def test_the_token_never_shows_in_the_configurations_repr(tmp_path):
    config = consul_config({"CONSUL_HTTP_TOKEN": "abc-secret"})
    assert "abc-secret" not in repr(config.token) + str(config.token)


def test_svcwrap_finds_the_agent_through_consul_http_addr(wrap_pid1, consul, tmp_path):
    svc = Service(consul, tmp_path)
    w = wrap_pid1("--name", svc.name, "--id", svc.id, "--port", str(svc.port), "--",
                  *program("service.py", svc.port), env=svc.env(CONSUL_HTTP_ADDR=consul.addr))
    wait_until(svc.is_passing, timeout=10, message="registered through CONSUL_HTTP_ADDR")
    w.kill(signal.SIGTERM)
    assert w.wait() == 0


def test_address_auto_sends_no_address_for_a_local_agent_and_an_ip_is_sent_as_given(tmp_path):
    local = parse(["--name", "web", "--consul", "127.0.0.1:8500", "--", "true"], {})[0]
    assert Registry(local.consul, local.service, local.health, "").address is None
    given = parse(["--name", "web", "--address", "192.0.2.7", "--", "true"], {})[0]
    assert Registry(given.consul, given.service, given.health, "").address == "192.0.2.7"
    iface = parse(["--name", "web", "--address", "iface:lo", "--", "true"], {})[0]
    assert Registry(iface.consul, iface.service, iface.health, "").address == "127.0.0.1"


@pytest.mark.parametrize("flags,message", [
    (("--notify-access", "everyone"), "--notify-access: 'everyone' is not main or all"),
    (("--leave-timeout", "1"), "--leave-timeout: missing unit"),
    (("--consul", "unix://relative.sock"), "give unix:///absolute/path"),
])
def test_bad_hardening_options_are_one_line_naming_the_flag(flags, message):
    from svcwrap.cli import UsageError

    with pytest.raises(UsageError, match=message):
        consul_config({}, *flags)


def test_the_child_keeps_consul_http_token_without_registration_or_with_pass_token(tmp_path):
    (tmp_path / "t").write_text("abc")
    env = {"CONSUL_HTTP_TOKEN": "abc", "CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "t")}
    plain, _ = parse(["--no-register", "--", "true"], env)
    passed, _ = parse(["--name", "web", "--pass-token", "--", "true"], env)
    stripped, _ = parse(["--name", "web", "--", "true"], env)
    assert plain.environ == env and passed.environ == env
    assert "CONSUL_HTTP_TOKEN" not in stripped.environ
    assert "CONSUL_HTTP_TOKEN_FILE" not in stripped.environ
