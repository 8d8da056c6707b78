"""Loading config files: JSON and TOML, the seed config, decoding problems, warnings."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from dataclasses import fields, replace
from pathlib import Path
from types import MappingProxyType

import pytest

from patrol.config import AppConfig, ConfigError, ServiceConfig, load_config

DATA = Path(__file__).parent / "data"


def _load_fakes():
    spec = importlib.util.spec_from_file_location("patrol_config_fakes", DATA / "fake_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fakes = _load_fakes()
APP = {"keepalive": 1, "name": "App", "working-directory": "/srv/app", "binary": "app",
       "log-directory": "logs", "pid-path": "app.pid"}


def write(tmp_path: Path, content, name: str = "config.json") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def load(path: Path, methods=None):
    return load_config(path, methods or fakes.methods())


def load_error(path: Path, methods=None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(path, methods)
    return caught.value


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home directory holding the seed's working directory, so "~/" expands to a real dir."""
    home = tmp_path / "home"
    (home / "patrol/unittest/testapp").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


# -- the seed config -------------------------------------------------------------------------

IGNORE_EXIT_CODES_WARNING = (
    "services.ssh.ignore-exit-codes: does nothing (the original Patrol never read it either); "
    'use "ignore-exit-codes-start", "-status", "-stop" or "-restart"')


def test_seed_config_uses_every_app_key(home, tmp_path):
    path = shutil.copy(DATA / "seed.json", tmp_path / "config.json")
    config, warnings = load(Path(path))
    assert warnings == [f"{path}: {IGNORE_EXIT_CODES_WARNING}"]
    assert config.source == Path(path)
    assert config.apps["testapp"] == AppConfig(
        id="testapp", keepalive="pid-patrol", name="Test App", binary="testapp",
        working_directory=f"{home}/patrol/unittest/testapp/", log_directory="logs",
        pid_path="testapp.pid", pid_verify=True, disabled=False,
        keyvalue=MappingProxyType({"a": "B", "c": 1, "d": True}), keyvalue_clear=True, secret="",
        execute_timeout=60.0, args=("--verbose", "-n", "1"),
        env=("PATROL_UNITTEST=I KNOW WHAT I AM DOING", "LANG=C"), env_parent=True, std_merge=True,
        x={"owner": "ops", "tags": ["a", 2]},
    )
    app = config.apps["testapp"]
    assert Path(app.working_directory).is_dir()
    assert app.program == f"{home}/patrol/unittest/testapp/testapp"
    assert app.pid_file == f"{home}/patrol/unittest/testapp/testapp.pid"
    assert [config.apps[a].keepalive for a in ("fake", "fake-secret")] == ["http", "udp"]
    assert config.services["ssh"] == ServiceConfig(
        id="ssh", name="SSH", service="ssh",
        management=MappingProxyType(dict.fromkeys(("start", "status", "stop", "restart"), "service")),
        parameters=MappingProxyType({a: a for a in ("start", "status", "stop", "restart")}),
        ignore_exit_codes=MappingProxyType(dict.fromkeys(("start", "status", "stop", "restart"),
                                                         frozenset())),
        keyvalue=MappingProxyType({"user": "admin", "pass": "hunter2"}),
    )
    assert config.services["fake-secret"].options["initd-directory"] == "/etc/init.d"
    assert (config.tick_every, config.history, config.ping_timeout) == (15, 100, 30)
    assert (config.listen_http, config.listen_udp) == (("127.0.0.1:8421",), ("127.0.0.1:1248",))


def test_toml_gives_the_same_model_as_json(home):
    from_json, json_warnings = load(DATA / "seed.json")
    from_toml, toml_warnings = load(DATA / "seed.toml")
    assert replace(from_toml, source=None) == replace(from_json, source=None)
    assert [w.split(": ", 1)[1] for w in toml_warnings] == [w.split(": ", 1)[1] for w in json_warnings]


def test_the_model_is_frozen(home):
    config, _ = load(DATA / "seed.json")
    with pytest.raises(AttributeError):
        config.apps["testapp"].name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.apps["new"] = config.apps["testapp"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.apps["testapp"].keyvalue["a"] = "x"  # type: ignore[index]


def test_toml_dates_become_iso_strings(tmp_path):
    path = write(tmp_path, '[apps.app]\nkeepalive = 1\nname = "App"\nworking-directory = "/srv"\n'
                           'binary = "app"\nlog-directory = "logs"\npid-path = "app.pid"\n'
                           "x = { since = 1979-05-27T07:32:00Z }\n", "patrol.toml")
    config, _ = load(path)
    assert config.apps["app"].x == {"since": "1979-05-27T07:32:00+00:00"}


def test_toml_nan_is_not_a_number(tmp_path):
    path = write(tmp_path, "tick-every = nan\n[apps.app]\nkeepalive = 3\nname = 'A'\n"
                           "working-directory = '/srv'\nbinary = 'a'\nlog-directory = 'logs'\n", "c.toml")
    assert load_error(path).errors == [f"{path}: tick-every: must be a number (got number NaN)"]


def test_toml_log_limits_are_checked_like_json(tmp_path):
    path = write(tmp_path, '[apps.web]\nkeepalive = 3\nname = "Web"\nworking-directory = "/srv"\n'
                           'binary = "app"\nlog-directory = "logs"\nlog-max-files = 1000\n'
                           'log-max-total-bytes = -1\n', "c.toml")
    assert load_error(path).errors == [f"{path}: apps.web.log-max-files: must be at most 100 (got 1000)",
                                       f"{path}: apps.web.log-max-total-bytes: must be at least 0 (got -1)"]
    path = write(tmp_path, '[apps.web]\nkeepalive = 3\nname = "Web"\nworking-directory = "/srv"\n'
                           'binary = "app"\nlog-directory = "logs"\nlog-max-files = 2\n'
                           'log-max-total-bytes = 4096\n', "d.toml")
    app = load(path)[0].apps["web"]
    assert (app.log_max_files, app.log_max_total_bytes) == (2, 4096)


# -- home expansion ------------------------------------------------------------------------------

def test_tilde_slash_expands_to_home(home, tmp_path):
    config, _ = load(write(tmp_path, {"apps": {"app": dict(APP, **{"working-directory": "~/srv"})}}))
    assert config.apps["app"].working_directory == f"{home}/srv"


@pytest.mark.parametrize("written", ["~", "~root/srv", "~srv"])
def test_only_tilde_slash_is_expanded(home, tmp_path, written):
    error = load_error(write(tmp_path, {"apps": {"app": dict(APP, **{"working-directory": written})}}))
    assert error.errors == [f"{tmp_path}/config.json: apps.app.working-directory: must be an absolute "
                            f'path (got "{written}")']


def test_tilde_without_a_home_stays_relative(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "")
    error = load_error(write(tmp_path, {"apps": {"app": dict(APP, **{"working-directory": "~/srv"})}}))
    assert error.errors == [f"{tmp_path}/config.json: apps.app.working-directory: must be an absolute "
                            'path (got "~/srv") (no home directory to expand ~ with)']


@pytest.mark.parametrize("written,expected", [("${CONFIG_DIR}", ""), ("${CONFIG_DIR}/srv", "/srv")])
def test_config_dir_expands_to_the_config_files_directory(tmp_path, written, expected):
    config, _ = load(write(tmp_path, {"apps": {"app": dict(APP, **{"working-directory": written})}}))
    assert config.apps["app"].working_directory == f"{tmp_path}{expected}"


def test_config_dir_must_be_a_whole_path_component(tmp_path):
    error = load_error(write(tmp_path, {"apps": {"app": dict(APP, **{"working-directory": "${CONFIG_DIR}x"})}}))
    assert "must be an absolute path" in error.errors[0]


# -- unreadable files -----------------------------------------------------------------------------

@pytest.mark.parametrize("content,message", [
    ("", "line 1 column 1: invalid JSON: Expecting value"),
    ('{"apps": {', "line 1 column 11: invalid JSON: Expecting property name enclosed in double quotes"),
    ('{\n  "apps": {}\n  "x": 1\n}', "line 3 column 3: invalid JSON: Expecting ',' delimiter"),
    ('{"tick-every": NaN}', "invalid JSON: NaN is not valid JSON"),
    ('{"tick-every": 1e999}', "invalid JSON: number 1e999 is out of range"),
    (b'{"apps": "\xff"}', "is not UTF-8 text (bad byte at offset 10)"),
    ("[" * 100000, "nested too deeply: arrays and objects (TOML: arrays and tables) may be nested at most 64 "
                    "levels deep"),
])
def test_undecodable_json_is_unreadable(tmp_path, content, message):
    path = write(tmp_path, content)
    error = load_error(path)
    assert error.unreadable and error.errors == [f"{path}: {message}"]


def test_bad_toml_is_unreadable(tmp_path):
    error = load_error(write(tmp_path, "[apps\n", "config.toml"))
    assert error.unreadable and error.errors[0].startswith(f"{tmp_path}/config.toml: invalid TOML: ")


@pytest.mark.parametrize("make", [lambda p: p / "missing.json", lambda p: p])
def test_a_missing_file_or_a_directory_is_unreadable(tmp_path, make):
    path = make(tmp_path)
    error = load_error(path)
    assert error.unreadable and error.errors[0].startswith(f"{path}: cannot read the file: ")


def test_validation_errors_are_not_unreadable(tmp_path):
    assert not load_error(write(tmp_path, "null")).unreadable
    error = load_error(write(tmp_path, "[1, 2]"))
    assert not error.unreadable
    assert error.errors == [f"{tmp_path}/config.json: must be an object with apps and services "
                            "(got array [1, 2])"]


def test_null_document_is_an_empty_config(tmp_path):
    error = load_error(write(tmp_path, "null"))
    assert error.errors == [f"{tmp_path}/config.json: has no apps and no services: nothing to "
                            'supervise (add "apps" or "services")']


def test_text_after_the_document_is_ignored_with_a_warning(tmp_path):
    path = write(tmp_path, json.dumps({"apps": {"app": APP}}) + "\n\n{garbage")
    config, warnings = load(path)
    assert list(config.apps) == ["app"]
    assert warnings == [f"{path}: line 3: ignoring text after the JSON document"]


def test_a_byte_order_mark_is_accepted(tmp_path):
    config, _ = load(write(tmp_path, b"\xef\xbb\xbf" + json.dumps({"apps": {"app": APP}}).encode()))
    assert list(config.apps) == ["app"]



def test_an_item_id_is_one_string_for_the_key_and_the_item_and_mixed_case_still_lowered(tmp_path):
    """An id already in lower case is kept as the one string the decoder made: ``lower()``
    made two more per item (the key and the config's id), kept as long as the config."""
    config, _ = load(write(tmp_path, {"apps": {"web-01": APP, "Api": APP}}))
    assert list(config.apps) == ["web-01", "api"]
    for key, app in config.apps.items():
        assert app.id == key
        assert app.id is key

# -- all errors at once, wrong types, warnings -----------------------------------------------------

def test_every_error_of_a_file_is_reported_at_once(tmp_path):
    path = shutil.copy(DATA / "broken.json", tmp_path / "config.json")
    methods = fakes.methods(keepalives=(fakes.PidPatrol, fakes.PidApp, fakes.Http))
    error = load_error(Path(path), methods)
    assert not error.unreadable
    assert [e.removeprefix(f"{path}: ") for e in error.errors] == [
        "apps.web.keepalive: keepalive 4 needs: pip install patrol-keepalive-udp",
        'apps.web.working-directory: must be an absolute path (got "srv/web")',
        'apps.web.binary: must be a clean path (got "bin/../web", which cleans to "web")',
        'apps.web.execute-timeout: must be a number (got string "10")',
        'apps.web.env[0]: must be KEY=VALUE (got "DEBUG")',
        'apps.Web: duplicate app id (ids are case-insensitive; also "web")',
        'apps.-bad-: app id is invalid: ids are 1..63 characters of 0-9, A-Z, a-z and "-", '
        'not starting or ending with "-"',
        "apps.-bad-.name: is required and must not be empty",
        "apps.-bad-.working-directory: is required and must not be empty",
        "apps.-bad-.pid-path: is required and must not be empty",
        "services.cron.management-status: is required once any management-ACTION key is set "
        '(or use "management" for all four actions)',
        "services.cron.management-stop: is required once any management-ACTION key is set "
        '(or use "management" for all four actions)',
        "services.cron.management-restart: is required once any management-ACTION key is set "
        '(or use "management" for all four actions)',
        'services.cron.service: must not contain "/" (got "../../bin/sh"): it would name a path '
        "outside /etc/init.d",
        "services.cron.ignore-exit-codes-status[0]: must be an exit code 1..255 (got number 0)",
        "services.cron.ignore-exit-codes-status[2]: duplicate exit code 3",
        'json-timestamp: looks like a strftime format; write a Go layout, the reference time '
        '"Mon Jan 2 15:04:05 MST 2006" as you want it shown, e.g. "2006-01-02T15:04:05Z07:00"',
    ]
    assert [w.removeprefix(f"{path}: ") for w in error.warnings] == [
        'apps.-bad-.workdir: unknown key, ignored',
        "tick-every: 2 is outside 5..120; using 5",
        "ping-timeout: 500 is outside 5..180; using 180",
        'listen_http: unknown key, ignored (did you mean "listen-http"?)',
    ]
    assert str(error) == "\n".join(error.errors)


@pytest.mark.parametrize("doc,message", [
    ({"apps": {"app": dict(APP, name=5)}}, "apps.app.name: must be a string (got number 5)"),
    ({"apps": {"app": dict(APP, disabled="yes")}}, 'apps.app.disabled: must be true or false (got string "yes")'),
    ({"apps": {"app": dict(APP, disabled=1)}}, "apps.app.disabled: must be true or false (got number 1)"),
    ({"apps": {"app": dict(APP, keepalive=1.0)}}, "apps.app.keepalive: must be a name or an integer (got number 1.0)"),
    ({"apps": {"app": dict(APP, args="-v")}}, 'apps.app.args: must be an array of strings (got string "-v")'),
    ({"apps": {"app": dict(APP, env=[1])}}, "apps.app.env[0]: must be a string (got number 1)"),
    ({"apps": {"app": dict(APP, keyvalue="a=b")}}, 'apps.app.keyvalue: must be an object (got string "a=b")'),
    ({"apps": {"app": dict(APP, **{"execute-timeout": True})}}, "apps.app.execute-timeout: must be a number (got boolean true)"),
    ({"apps": [APP]}, "apps: must be an object (got array "),
    ({"apps": {"app": APP}, "history": 10.5}, "history: must be an integer (got number 10.5)"),
    ({"apps": {"app": APP}, "tick-every": "5"}, 'tick-every: must be a number (got string "5")'),
    ({"apps": {"app": APP}, "http": "127.0.0.1:80"}, 'http: must be an object (got string "127.0.0.1:80")'),
    ({"apps": {"app": APP}, "http": {"listen": 80}}, "http.listen: must be a string (got number 80)"),
    ({"apps": {"app": APP}, "listen-udp": "x"}, 'listen-udp: must be an array of strings (got string "x")'),
    ({"apps": {"app": APP}, "json-timestamp": 5}, "json-timestamp: must be a string (got number 5)"),
    ({"apps": {"app": APP}, "state-file": False}, "state-file: must be a string (got boolean false)"),
])
def test_wrong_types_name_the_key_and_the_type(tmp_path, doc, message):
    path = write(tmp_path, doc)
    error = load_error(path)
    assert not error.unreadable and error.errors[0].startswith(f"{path}: {message}")


def test_keys_match_case_insensitively_like_go(tmp_path):
    doc = {"Apps": {"Web": {"KeepAlive": 3, "NAME": "Web", "Working-Directory": "/srv", "Binary": "w",
                            "Log-Directory": "logs"}},
           "Tick-Every": 30, "HTTP": {"Listen": "127.0.0.2:80"}}
    config, warnings = load(write(tmp_path, doc))
    assert warnings == []
    app = config.apps["web"]
    assert (app.keepalive, app.name, app.working_directory) == ("http", "Web", "/srv")
    assert config.tick_every == 30 and config.http.listen == "127.0.0.2:80"


def test_several_spellings_of_a_key_the_last_wins(tmp_path):
    path = write(tmp_path, '{"apps": {"app": %s}, "tick-every": 10, "Tick-Every": 20}' % json.dumps(APP))
    config, warnings = load(path)
    assert config.tick_every == 20
    assert warnings == [f'{path}: tick-every: is given as "tick-every", "Tick-Every"; using the last one']


def test_a_key_given_twice_warns_and_the_last_wins(tmp_path):
    path = write(tmp_path, '{"apps": {"app": %s, "app": %s}}'
                 % (json.dumps(APP), json.dumps(dict(APP, name="Second"))))
    config, warnings = load(path)
    assert config.apps["app"].name == "Second"
    assert warnings == [f"{path}: apps.app: is given more than once; the last value is used"]


@pytest.mark.parametrize("doc,warning", [
    ({"apps": {"app": dict(APP, **{"working-directroy": "/x"})}},
     'apps.app.working-directroy: unknown key, ignored (did you mean "working-directory"?)'),
    ({"apps": {"app": dict(APP, keepalve=1)}}, 'apps.app.keepalve: unknown key, ignored (did you mean "keepalive"?)'),
    ({"apps": {"app": APP}, "tick_every": 5}, 'tick_every: unknown key, ignored (did you mean "tick-every"?)'),
    ({"apps": {"app": APP}, "http": {"lisen": "x"}}, 'http.lisen: unknown key, ignored (did you mean "listen"?)'),
    ({"apps": {"app": APP}, "colour": "blue"}, "colour: unknown key, ignored"),
    ({"apps": {"app": APP}, "a b": 1}, '["a b"]: unknown key, ignored'),
])
def test_unknown_keys_warn_with_a_suggestion(tmp_path, doc, warning):
    path = write(tmp_path, doc)
    _, warnings = load(path)
    assert warnings == [f"{path}: {warning}"]


def test_warnings_survive_an_error(tmp_path):
    path = write(tmp_path, json.dumps({"apps": {"app": dict(APP, nmae="x", name="")}}) + " trailing")
    error = load_error(path)
    assert error.errors == [f"{path}: apps.app.name: is required and must not be empty"]
    assert error.warnings == [f"{path}: line 1: ignoring text after the JSON document",
                              f'{path}: apps.app.nmae: unknown key, ignored (did you mean "name"?)']


def test_x_is_kept_verbatim_everywhere(tmp_path):
    x = {"list": [1, "two", None], "nested": {"t": True}}
    doc = {"x": x, "http": {"x": x}, "udp": {"x": [1]}, "apps": {"app": dict(APP, x=x)},
           "services": {"s": {"management": 1, "name": "S", "service": "s", "x": "plain"}}}
    config, warnings = load(write(tmp_path, doc))
    assert warnings == []
    assert config.x == config.http.x == config.apps["app"].x == x
    assert config.udp.x == [1] and config.services["s"].x == "plain"


def test_state_file_and_defaults(tmp_path):
    config, _ = load(write(tmp_path, {"apps": {"app": APP}}))
    assert (config.state_file, config.json_timestamp) == ("", "")
    config, _ = load(write(tmp_path, {"apps": {"app": APP}, "state-file": "/var/lib/patrol/state.db"}))
    assert config.state_file == "/var/lib/patrol/state.db"


def test_what_the_load_interns_the_config_keeps(tmp_path, monkeypatch):
    """Python drops an interned string nobody holds and leaves a dead slot in its table
    of interned strings: interning a path per app that is let go at once (each app's log
    directory, checked while the config loads) filled that table by one slot per app and
    load, and doubled it (+0.55 MB) somewhere between 500 and 1,000 apps. Whatever the load
    interns must be kept by the config; the per-app paths nobody shares are not interned."""
    interned: list[str] = []
    real = sys.intern

    def recording(text: str) -> str:
        if sys._getframe(1).f_globals["__name__"].startswith("patrol."):  # (pathlib interns its parts)
            interned.append(real(text))
            return interned[-1]
        return real(text)

    monkeypatch.setattr(sys, "intern", recording)
    apps = {f"a{i}": {**APP, "name": f"A{i}", "pid-path": f"a{i}.pid", "log-directory": f"logs/a{i}",
                      "env-file": f"a{i}.env", "working-directory": str(tmp_path)} for i in range(3)}
    config, _ = load(write(tmp_path, {"apps": apps}))
    kept = {id(value) for app in config.apps.values() for value in (*vars_of(app), *app.env)}
    assert interned and all(id(text) in kept for text in interned), \
        [text for text in interned if id(text) not in kept]
    interned.clear()
    for app in config.apps.values():
        assert app.pid_file == f"{tmp_path}/{app.id}.pid" and app.env_file_path == f"{tmp_path}/{app.id}.env"
    assert interned == []


def vars_of(app: AppConfig) -> list[object]:
    return [getattr(app, f.name) for f in fields(app)]


def test_text_many_apps_share_is_kept_once(tmp_path):
    """Thousands of apps often share a working directory and environment: the loaded
    configs hold one copy of such text, not one per app (the decoder makes one per app)."""
    env = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
    apps = {f"a{i}": {**APP, "name": f"A{i}", "pid-path": f"a{i}.pid", "working-directory": str(tmp_path),
                      "env": env} for i in range(3)}
    config, _ = load(write(tmp_path, {"apps": apps}))
    first, *others = config.apps.values()
    assert [a.name for a in config.apps.values()] == ["A0", "A1", "A2"]
    for app in others:
        assert app.working_directory is first.working_directory
        assert app.log_directory is first.log_directory
        assert all(mine is theirs for mine, theirs in zip(app.env, first.env, strict=True))
        assert app.pid_path == f"{app.id}.pid"
