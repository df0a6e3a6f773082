"""--config FILE (issue 11 "What the user writes"): TOML whose top-level
keys are the long options, and [[template]] tables. Bad input is one line,
FILE:LINE: KEY: what is wrong, exit 2."""
from __future__ import annotations

import subprocess
import sys
from textwrap import dedent

import pytest

from svcwrap.cli import UsageError, parse
from tests.support import REPO
from tests.test_cli import run


def config(tmp_path, text: str) -> str:
    path = tmp_path / "svcwrap.toml"
    path.write_text(dedent(text).lstrip("\n"))
    return str(path)


def parsed(path: str, *args: str, environ=None):
    return parse(["--config", path, *args, "--", "true"], environ or {})[0]


BAD = [
    # (file, the error after "FILE:")
    ('name = "lb"\nbogus = 1\n', "2: bogus: unknown option (see svcwrap --help)"),
    ('name = "lb"\n\nttl = 10\n', "3: ttl: missing unit in duration"),
    ('name = "lb"\nno-register = "yes"\n', "2: no-register: must be true or false"),
    ('name = "lb"\ntag = [true]\n', "2: tag: must be a string or an array of strings (TAG), "
                                   "not a boolean"),
    ('name = ["a", "b"]\n', "1: name: must be a string (NAME), not an array"),
    ('config = "other.toml"\n', "1: config: cannot be set in a config file"),
    ('name = "lb"\nlog-format = "xml"\n', "2: log-format: 'xml' is not text or json"),
    ('name = "lb"\n[[template]]\ndestination = "/tmp/x"\n',
     "2: [[template]]: source is missing"),
    ('name = "lb"\n[[template]]\nsource = "a"\ndestination = "b"\nowner = "me"\n',
     "5: owner: unknown template key"),
    ('name = "lb"\n[[template]]\nsource = "a"\ndestination = "b"\n'
     '[[template]]\nsource = "c"\ndestination = "d"\nmode = "0999"\n',
     '8: mode: \'0999\' is not an octal mode such as "0640"'),
    ('[[template]]\nsource = "a"\ndestination = "b"\nmode = 0o640\n',
     "4: mode: must be a non-empty string, not an integer"),
    ('[[template]]\nsource = "a"\ndestination = "b"\nvalidate = 3\n',
     "4: validate: must be a command string or a non-empty array of strings"),
    ('[[template]]\nsource = "a"\ndestination = "b"\nvalidate = "nginx -t \'open"\n',
     "4: validate: No closing quotation"),
    ('[[template]]\nsource = "a"\ndestination = "b"\nuser = "no-such-user-here"\n',
     "4: user: no user named 'no-such-user-here'"),
    ('[[template]]\nsource = "a"\ndestination = "b"\nbackup = "yes"\n',
     "4: backup: must be true or false"),
    ('[[template]]\nsource = "a"\ndestination = "b"\nreload = "signal:NOPE"\n',
     "4: reload: unknown signal 'NOPE'"),
    ('[[template]]\nsource = "a"\ndestination = "b"\nreload = "kill"\n',
     "4: reload: 'kill' is not signal:SIG, exec:CMD, restart or none"),
    ('name = "lb"\ntag = [\n  "a",\n  "b",\n]\ntemplate-wait = "5s:1s"\n'
     '[[template]]\nsource = "a"\ndestination = "b"\n',
     "6: template-wait: 5s:1s: MAX is shorter than MIN"),
    ('name = """\nttl = 1\n"""\nttl = "x"\n', '4: ttl: invalid duration "x"'),
    ('name = "lb"\nttl = \n', "2: invalid TOML: Invalid value"),
    ('name = "lb"\n[template]\nsource = "a"\n', "2: template: write [[template]]"),
    ('name = "lb"\ntemplate = [{ source = "a" }]\n', "2: [[template]]: destination is missing"),
    ('name = "lb"\nlog.level = "x"\n', "2: log: unknown option"),
]


@pytest.mark.parametrize("text,error", BAD, ids=[e for _, e in BAD])
def test_a_bad_key_type_or_value_names_the_file_line_and_key(tmp_path, text, error):
    path = config(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        parsed(path, "--no-register")
    assert str(caught.value).startswith(f"{path}:{error}")


def test_a_bad_config_file_is_one_line_on_stderr_and_exit_2(tmp_path):
    path = config(tmp_path, 'name = "lb"\n\nttl = "10x"\n')
    done = run("--config", path, "--", "true")
    assert done.returncode == 2
    assert done.stderr == (f"svcwrap: error: {path}:3: ttl: unknown unit \"x\" in duration "
                           "\"10x\" (use Go syntax like 500ms, 10s, 1m30s)\n")


def test_a_missing_config_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(UsageError, match="nope.toml: cannot read: No such file"):
        parsed(str(tmp_path / "nope.toml"))


def test_the_command_line_wins_over_the_file_and_the_file_over_the_environment(tmp_path):
    path = config(tmp_path, 'name = "from-file"\nttl = "20s"\ntag = ["f1", "f2"]\n')
    env = {"SVCWRAP_NAME": "from-env", "SVCWRAP_TTL": "30s", "SVCWRAP_DRAIN": "3s"}
    c = parsed(path, "--name", "from-cli", environ=env)
    assert (c.service.name, c.health.ttl, c.service.tags, c.health.drain) == \
        ("from-cli", 20.0, ["f1", "f2"], 3.0)


def test_a_switch_set_false_in_the_file_wins_over_the_environment(tmp_path):
    path = config(tmp_path, 'name = "lb"\nsingle-child = false\n')
    c = parsed(path, environ={"SVCWRAP_SINGLE_CHILD": "true"})
    assert c.supervisor.single_child is False


def test_templates_come_from_the_file_and_the_command_line_with_their_settings(tmp_path):
    path = config(tmp_path, '''
        name = "lb"
        reload = "signal:HUP"
        template-wait = "2s:10s"
        watch-floor = "1s"

        [[template]]
        source = "/etc/svcwrap/up.j2"
        destination = "/etc/nginx/up.conf"
        validate = ["nginx", "-t", "-c", "/etc/nginx/nginx.conf"]
        reload = "exec:nginx -s reload"
        mode = "0640"
        user = "nobody"
        group = "0"
        backup = true
        create-dirs = true
        ''')
    c = parsed(path, "--template", "/t/a.j2:/out/a.conf")
    t = c.templates
    assert (t.wait, t.floor, t.timeout, t.reload.text) == ((2.0, 10.0), 1.0, 0.0, "signal:HUP")
    cli_spec, file_spec = t.templates
    assert (cli_spec.source, cli_spec.destination, t.action_for(cli_spec).signal) == \
        ("/t/a.j2", "/out/a.conf", 1)
    assert (file_spec.validate, file_spec.mode, file_spec.uid, file_spec.gid) == \
        (["nginx", "-t", "-c", "/etc/nginx/nginx.conf"], 0o640, 65534, 0)
    assert (file_spec.backup, file_spec.create_dirs) == (True, True)
    assert t.action_for(file_spec).argv == ["nginx", "-s", "reload"]


def test_validate_as_a_string_is_split_like_a_shell_would_without_one(tmp_path):
    path = config(tmp_path, '''
        [[template]]
        source = "a"
        destination = "b"
        validate = "check --file '/etc/my app.conf' $HOME"
        ''')
    spec, = parsed(path, "--no-register").templates.templates
    assert spec.validate == ["check", "--file", "/etc/my app.conf", "$HOME"]


def test_template_options_come_from_svcwrap_variables_too(tmp_path):
    c = parse(["--no-register", "--", "true"],
              {"SVCWRAP_TEMPLATE": "a.j2:a,b.j2:b", "SVCWRAP_TEMPLATE_WAIT": "1s",
               "SVCWRAP_TEMPLATE_TIMEOUT": "30s"})[0]
    assert [s.destination for s in c.templates.templates] == ["a", "b"]
    assert (c.templates.wait, c.templates.timeout) == ((1.0, 4.0), 30.0)


@pytest.mark.parametrize("args,error", [
    (["--template", "nodest"], "--template: 'nodest' is not SRC:DEST"),
    (["--template", "a:x", "--template", "b:x"], "--template: x is also the destination of "
                                                 "--template"),
    (["--template", "a:b", "--reload", "signal:NOPE"], "--reload: unknown signal 'NOPE'"),
    (["--template", "a:b", "--reload", "exec:"], "--reload: needs a command"),
    (["--template", "a:b", "--template-wait", "1"], "--template-wait: missing unit"),
    (["--template", "a:b", "--watch-floor", "-1s"], "--watch-floor: -1s must not be negative"),
])
def test_bad_template_options_are_one_line_naming_the_flag(args, error):
    with pytest.raises(UsageError, match="^" + error.replace("(", r"\(")):
        parse(["--no-register", *args, "--", "true"], {})


def test_without_templates_neither_tomllib_jinja2_nor_the_template_modules_are_imported():
    code = ("import sys; from svcwrap import cli; cli.parse(['--no-register', '--', 'true'], {});"
            "print(sorted(m for m in sys.modules if m.startswith(('tomllib', 'jinja2', "
            "'svcwrap.templates'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out == "[]\n"


def test_parsing_template_options_imports_neither_tomllib_nor_jinja2():
    code = ("import sys; from svcwrap import cli;"
            "cli.parse(['--no-register', '--template', 'a:b', '--', 'true'], {});"
            "print(sorted(m for m in sys.modules if m.startswith(('tomllib', 'jinja2'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out == "[]\n"


def test_template_as_a_top_level_array_of_strings_is_the_repeatable_option(tmp_path):
    path = config(tmp_path, 'template = ["a.j2:/out/a", "b.j2:/out/b"]\n')
    c = parsed(path, "--no-register")
    assert [(s.source, s.destination) for s in c.templates.templates] == \
        [("a.j2", "/out/a"), ("b.j2", "/out/b")]
