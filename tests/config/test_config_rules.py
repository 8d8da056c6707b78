"""The validation rules of the config (spec §1.5, §1.6, §11 scenarios 1-6, new keys)."""

from __future__ import annotations

import importlib.util
import signal
import string
from pathlib import Path

import pytest

from patrol.config import ConfigError, parse_config
from patrol.config.rules import is_app_service_id, is_path_clean, service_problem, signal_number


def _load_fakes():
    path = Path(__file__).parent / "data" / "fake_methods.py"
    spec = importlib.util.spec_from_file_location("patrol_config_fakes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fakes = _load_fakes()

APP = {"keepalive": 1, "name": "App", "working-directory": "/srv/app", "binary": "app",
       "log-directory": "logs", "pid-path": "app.pid"}
SERVICE = {"management": 1, "name": "SSH", "service": "ssh"}


def parse(doc, methods=None):
    return parse_config(doc, methods or fakes.methods(), source="config.json")


def errors_of(doc, methods=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(doc, methods)
    assert not caught.value.unreadable
    return caught.value.errors


def with_app(**changes):
    """A document with app "app": APP with ``changes`` (keys in kebab_case -> kebab-case)."""
    app = dict(APP)
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            app.pop(key, None)
        else:
            app[key] = value
    return {"apps": {"app": app}}


def with_service(**changes):
    service = dict(SERVICE)
    for key, value in changes.items():
        key = key.replace("_", "-")
        if value is None:
            service.pop(key, None)
        else:
            service[key] = value
    return {"services": {"svc": service}}


def one_error(doc) -> str:
    errors = errors_of(doc)
    assert len(errors) == 1, errors
    return errors[0]


# -- §1.5 ids (scenario 1) ---------------------------------------------------------------

@pytest.mark.parametrize("value", ["", ".", "..", "-", "a-", "-a", "a" * 64, "a.b", "a b", "a_b",
                                   "é", "a/b", "web\n"])
def test_invalid_ids(value):
    assert not is_app_service_id(value)


@pytest.mark.parametrize("value", ["a-a", "a--a", "a" * 63, "A", "0", "Web-2", "9-z"])
def test_valid_ids(value):
    assert is_app_service_id(value)


def test_a_one_character_id_is_valid_iff_alphanumeric():
    for byte in range(128):
        char = chr(byte)
        assert is_app_service_id(char) == (char in string.ascii_letters + string.digits), byte


@pytest.mark.parametrize("group,noun,body", [("apps", "app", APP), ("services", "service", SERVICE)])
@pytest.mark.parametrize("item_id,fragment", [
    ("", '[""]: {noun} id is empty'),
    ("-a", ".-a: {noun} id is invalid"),
    ("a" * 64, f".{'a' * 64}: {{noun}} id is invalid"),
    ("a.b", '["a.b"]: {noun} id is invalid'),
])
def test_bad_item_ids_are_errors(group, noun, body, item_id, fragment):
    assert one_error({group: {item_id: body}}).startswith(
        f"config.json: {group}" + fragment.format(noun=noun))


@pytest.mark.parametrize("group,noun,body", [("apps", "app", APP), ("services", "service", SERVICE)])
def test_ids_are_lower_cased_and_duplicates_case_insensitive(group, noun, body):
    config, _ = parse({group: {"WEB-1": body}})
    items = getattr(config, group)
    assert list(items) == ["web-1"] and items["web-1"].id == "web-1"
    assert one_error({group: {"web": body, "Web": body}}) == (
        f'config.json: {group}.Web: duplicate {noun} id (ids are case-insensitive; also "web")')


# -- §1.5 clean paths (scenario 2) --------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "a", "a/", "a/b/c", "..", "../", "../a", "../a/"])
def test_clean_paths(path):
    assert is_path_clean(path)


@pytest.mark.parametrize("path", ["", ".", "./", "a/.", "a/..", "a/./", "a/../b/c", "a/b/../c", "/.",
                                  "/..", "/./", "/../", ".//", "..//", "//", "///", "../a/."])
def test_unclean_paths(path):
    assert not is_path_clean(path)


# -- §1.6 app rules, every one with a bad config ------------------------------------------

@pytest.mark.parametrize("changes,expected", [
    ({"keepalive": None}, "keepalive: is required: choose a keepalive method (installed: "
                          "http (3), pid-app (2), pid-patrol (1), udp (4))"),
    ({"keepalive": 0}, "keepalive: is required"),
    ({"keepalive": 5}, "keepalive: unknown keepalive 5 (installed: http, pid-app, pid-patrol, udp)"),
    ({"keepalive": "nope"}, "keepalive: unknown keepalive 'nope'"),
    ({"keepalive": True}, "keepalive: must be a name or an integer (got boolean true)"),
    ({"name": ""}, "name: is required and must not be empty"),
    ({"name": None}, "name: is required and must not be empty"),
    ({"name": "é" * 128}, "name: must be at most 255 bytes (got 256)"),
    ({"working_directory": ""}, "working-directory: is required"),
    ({"working_directory": "srv/app"}, 'working-directory: must be an absolute path (got "srv/app")'),
    ({"working_directory": "/srv/./app"}, "working-directory: must be a clean path "
                                          '(got "/srv/./app", which cleans to "/srv/app")'),
    ({"binary": ""}, "binary: is required"),
    ({"binary": "bin/../app"}, "binary: must be a clean path"),
    ({"log_directory": None}, "log-directory: is required"),
    ({"log_directory": "logs//x"}, "log-directory: must be a clean path"),
    ({"pid_path": ""}, "pid-path: is required"),
    ({"pid_path": "pid/.."}, "pid-path: must be a clean path"),
    ({"keepalive": 2, "pid_path": None}, "pid-path: is required"),
    ({"secret": "s" * 129}, "secret: must be at most 128 bytes (got 129)"),
    ({"execute_timeout": -1}, "execute-timeout: must be at least 0 (got -1)"),
    ({"args": ["ok", 1]}, "args[1]: must be a string (got number 1)"),
    ({"env": ["A=1", "DEBUG"]}, 'env[1]: must be KEY=VALUE (got "DEBUG")'),
    ({"env": ["=x"]}, 'env[0]: must be KEY=VALUE (got "=x")'),
    ({"keyvalue": ["a"]}, 'keyvalue: must be an object (got array ["a"])'),
    ({"stop_signal": "SIGNOPE"}, 'stop-signal: must be a signal name such as "SIGTERM" or a number'),
    ({"restart_signal": 0}, "restart-signal: must be a signal name"),
    ({"stop_timeout": -0.5}, "stop-timeout: must be at least 0 (got -0.5)"),
    ({"backoff_factor": 0.5}, "backoff-factor: must be at least 1 (got 0.5)"),
    ({"backoff_base": 5, "backoff_max": 2}, "backoff-max: must be at least backoff-base (2 < 5)"),
    ({"start_limit": -1}, "start-limit: must be at least 0 (got -1)"),
    ({"start_limit": 1.5}, "start-limit: must be an integer (got number 1.5)"),
    ({"log_max_bytes": -1}, "log-max-bytes: must be at least 0 (got -1)"),
    ({"log_max_files": -1}, "log-max-files: must be at least 0 (got -1)"),
    ({"log_max_files": 101}, "log-max-files: must be at most 100 (got 101)"),
    ({"log_max_files": 2.5}, "log-max-files: must be an integer (got number 2.5)"),
    ({"log_max_total_bytes": -5}, "log-max-total-bytes: must be at least 0 (got -5)"),
    ({"log_max_total_bytes": "1G"}, 'log-max-total-bytes: must be an integer (got string "1G")'),
])
def test_app_rule(changes, expected):
    assert one_error(with_app(**changes)).startswith("config.json: apps.app." + expected)


def test_app_errors_come_in_the_original_order():
    """Spec §11 scenario 3: fixing one problem at a time reveals the next, in Go's order."""
    app = {"keepalive": 1}
    steps = [
        (None, None, "name: is required"),
        ("name", "n" * 256, "name: must be at most 255 bytes"),
        ("name", "n" * 255, "working-directory: is required"),
        ("working-directory", "directory", "working-directory: must be an absolute path"),
        ("working-directory", "/directory/.", "working-directory: must be a clean path"),
        ("working-directory", "/directory", "binary: is required"),
        ("binary", "file/..", "binary: must be a clean path"),
        ("binary", "file", "log-directory: is required"),
        ("log-directory", "log-directory/.", "log-directory: must be a clean path"),
        ("log-directory", "log-directory", "pid-path: is required"),
        ("pid-path", "pid/..", "pid-path: must be a clean path"),
    ]
    for key, value, expected in steps:
        if key:
            app[key] = value
        assert errors_of({"apps": {"app": app}})[0].startswith("config.json: apps.app." + expected)
    app["pid-path"] = "app.pid"
    config, _ = parse({"apps": {"app": app}})
    assert config.apps["app"].pid_file == "/directory/app.pid"
    assert config.apps["app"].program == "/directory/file"


@pytest.mark.parametrize("keepalive", [3, 4, "http", "udp"])
def test_pid_path_is_optional_and_unchecked_for_ping_keepalives(keepalive):
    config, _ = parse(with_app(keepalive=keepalive, pid_path="pid/.."))
    assert config.apps["app"].pid_path == "pid/.."


def test_keepalive_by_name_or_alias():
    for value, name in [(1, "pid-patrol"), ("pid-app", "pid-app"), ("HTTP", "http"), (4, "udp")]:
        config, _ = parse(with_app(keepalive=value))
        assert config.apps["app"].keepalive == name


def test_missing_plugin_names_the_package():
    methods = fakes.methods(keepalives=(fakes.PidPatrol, fakes.PidApp, fakes.Http))
    errors = errors_of(with_app(keepalive=4), methods)
    assert errors == ["config.json: apps.app.keepalive: keepalive 4 needs: pip install patrol-keepalive-udp"]


# -- §1.6 service rules (scenario 4) --------------------------------------------------------

@pytest.mark.parametrize("changes,expected", [
    ({"management": None}, "management: is required: choose a service backend (installed: "
                           "initd (2, init.d), service (1)), or set management-start, -status, -stop "
                           "and -restart"),
    ({"management": 0}, "management: is required"),
    ({"management": 3}, "management: unknown management 3 (installed: initd, service)"),
    ({"management": None, "management_restart": 1}, "management: is required"),
    ({"management": "bogus"}, "management: unknown management 'bogus'"),
    ({"service": ""}, "service: is required and must not be empty"),
    ({"service": "s" * 64}, "service: must be at most 63 bytes (got 64)"),
    ({"service": "../../bin/sh"}, 'service: must not contain "/"'),
    ({"service": ".."}, 'service: must not be "." or ".." (got "..")'),
    ({"service": "-x"}, 'service: must not start with "-"'),
    ({"service": "my service"}, 'service: may only contain 0-9, A-Z, a-z, "-", ".", "_" and "@"'),
    ({"name": ""}, "name: is required and must not be empty"),
    ({"name": "n" * 256}, "name: must be at most 255 bytes (got 256)"),
    ({"secret": "s" * 129}, "secret: must be at most 128 bytes (got 129)"),
    ({"ignore_exit_codes_start": [0]}, "ignore-exit-codes-start[0]: must be an exit code 1..255 (got number 0)"),
    ({"ignore_exit_codes_stop": [256]}, "ignore-exit-codes-stop[0]: must be an exit code 1..255"),
    ({"ignore_exit_codes_status": [3, 3]}, "ignore-exit-codes-status[1]: duplicate exit code 3"),
    ({"ignore_exit_codes_restart": "AQI="}, 'ignore-exit-codes-restart: must be an array of exit codes '
                                            '1..255 (got string "AQI=")'),
    ({"status_timeout": 0}, "status-timeout: must be greater than 0 (got 0)"),
    ({"command_timeout": -3}, "command-timeout: must be greater than 0 (got -3)"),
    ({"stop_on_shutdown": "yes"}, 'stop-on-shutdown: must be true or false (got string "yes")'),
])
def test_service_rule(changes, expected):
    assert one_error(with_service(**changes)).startswith("config.json: services.svc." + expected)


def test_per_action_management_needs_all_four_actions():
    """Rule 1a: once start, status or stop is set per action, all four must be valid."""
    doc = with_service(management=None, management_start=1)
    assert [e.split(": ")[1] for e in errors_of(doc)] == [
        "services.svc.management-status", "services.svc.management-stop",
        "services.svc.management-restart"]
    doc = with_service(management=None, management_start=1, management_status="init.d",
                       management_stop=2, management_restart=9)
    assert errors_of(doc) == ["config.json: services.svc.management-restart: unknown management 9 "
                              "(installed: initd, service)"]
    doc["services"]["svc"]["management-restart"] = "service"
    config, _ = parse(doc)
    assert dict(config.services["svc"].management) == {
        "start": "service", "status": "initd", "stop": "initd", "restart": "service"}


def test_general_management_wins_over_per_action_keys_with_a_warning():
    config, warnings = parse(with_service(management=2, management_stop=1))
    assert set(config.services["svc"].management.values()) == {"initd"}
    assert warnings == ['config.json: services.svc.management-stop: is ignored: "management" is set '
                        "and applies to all four actions"]


def test_service_errors_come_in_the_original_order():
    """Spec §11 scenario 4."""
    service: dict = {"management": 0}
    steps = [
        (None, None, "management: is required"),
        ("management", 1, "service: is required"),
        ("service", "s" * 64, "service: must be at most 63 bytes"),
        ("service", "s" * 63, "name: is required"),
        ("name", "n" * 256, "name: must be at most 255 bytes"),
    ]
    for key, value, expected in steps:
        if key:
            service[key] = value
        assert errors_of({"services": {"svc": service}})[0].startswith(
            "config.json: services.svc." + expected)
    service["name"] = "n" * 255
    for action in ("start", "status", "stop", "restart"):
        key = f"ignore-exit-codes-{action}"
        service[key] = [0]
        assert "must be an exit code 1..255" in one_error({"services": {"svc": service}})
        service[key] = [1, 1]
        assert "duplicate exit code 1" in one_error({"services": {"svc": service}})
        service[key] = [2]
    config, _ = parse({"services": {"svc": service}})
    assert dict(config.services["svc"].ignore_exit_codes) == dict.fromkeys(
        ("start", "status", "stop", "restart"), frozenset({2}))


def test_service_defaults_and_parameters():
    config, _ = parse(with_service(management_stop_parameter="force-stop", status_timeout=5))
    svc = config.services["svc"]
    assert dict(svc.parameters) == {"start": "start", "status": "status", "stop": "force-stop",
                                    "restart": "restart"}
    assert (svc.status_timeout, svc.command_timeout, svc.stop_on_shutdown) == (5.0, 180.0, False)


@pytest.mark.parametrize("name", ["ssh", "cron", "getty@tty1", "systemd-journald", "php7.4-fpm", "a_b"])
def test_real_service_names_are_accepted(name):
    assert service_problem(name) is None


# -- top level (scenario 5) and listeners (scenario 6) ----------------------------------------

@pytest.mark.parametrize("doc", [{}, None, {"apps": {}}, {"apps": None, "services": {}}])
def test_no_apps_and_no_services(doc):
    assert one_error(doc) == ("config.json: has no apps and no services: nothing to supervise "
                              '(add "apps" or "services")')


def test_top_level_scenario():
    """Spec §11 scenario 5, step by step."""
    assert "service id is empty" in one_error({"services": {"": SERVICE}})
    assert "service id is invalid" in one_error({"services": {"s" * 64: SERVICE}})
    assert "services.ssh.management: is required" in errors_of({"services": {"ssh": {}}})[0]
    doc = {"services": {"ssh": SERVICE}}
    config, _ = parse(doc)
    doc["services"]["SSH"] = SERVICE
    assert "services.SSH: duplicate service id" in one_error(doc)
    doc["apps"] = {"": APP}
    del doc["services"]
    assert "app id is empty" in one_error(doc)
    assert "app id is invalid" in one_error({"apps": {"a" * 64: APP}})
    assert "apps.http.keepalive: is required" in one_error({"apps": {"http": dict(APP, keepalive=0)}})
    doc = {"apps": {"http": APP}}
    parse(doc)
    doc["apps"]["HTTP"] = APP
    assert "apps.HTTP: duplicate app id" in one_error(doc)


@pytest.mark.parametrize("item", [None, 5, "x", []])
def test_an_item_must_be_an_object(item):
    assert one_error({"apps": {"app": item}}).startswith("config.json: apps.app: must be an object (got ")


def test_listeners_default_to_the_bound_addresses():
    """Scenario 6, with the daemon's defaults (spec §1.2): a ping app always has a listener."""
    config, _ = parse(with_app(keepalive=3))
    assert config.listen_http == ("127.0.0.1:8421",) and config.http.listen == "127.0.0.1:8421"
    config, _ = parse(with_app(keepalive=4) | {"udp": {"listen": "0.0.0.0:9999"}})
    assert config.listen_udp == ("0.0.0.0:9999",)
    config, _ = parse(with_app(keepalive=4) | {"listen-udp": [":0"], "listen-http": []})
    assert config.listen_udp == (":0",) and config.listen_http == ("127.0.0.1:8421",)


def test_listener_addresses_must_not_be_empty():
    assert one_error(with_app(keepalive=3) | {"listen-http": ["127.0.0.1:1", " "]}) == (
        "config.json: listen-http[1]: must not be empty")


@pytest.mark.parametrize("key,value,expected", [
    ("tick-every", None, 15.0), ("tick-every", 0, 15.0), ("tick-every", 2, 5.0),
    ("tick-every", -7, 5.0), ("tick-every", 500, 120.0), ("tick-every", 7.5, 7.5),
    ("history", 0, 100), ("history", 1, 5), ("history", 5000, 1000), ("history", 50, 50),
    ("ping-timeout", 0, 30.0), ("ping-timeout", 3, 5.0), ("ping-timeout", 181, 180.0),
    ("ping-timeout", 1000, 180.0), ("ping-timeout", 180, 180.0),
])
def test_clamping_warns(key, value, expected):
    doc = with_app() | ({} if value is None else {key: value})
    config, warnings = parse(doc)
    assert getattr(config, key.replace("-", "_")) == expected
    clamped = value not in (None, 0, expected)
    assert warnings == ([f"config.json: {key}: {value:g} is outside "
                         f"{'5..1000' if key == 'history' else '5..120' if key == 'tick-every' else '5..180'}"
                         f"; using {expected:g}"] if clamped else [])


def test_json_timestamp_must_be_a_go_layout():
    config, _ = parse(with_app() | {"json-timestamp": "Mon, 02 Jan 2006 15:04:05 -0700"})
    assert config.json_timestamp == "Mon, 02 Jan 2006 15:04:05 -0700"
    assert one_error(with_app() | {"json-timestamp": "RFC3339"}) == (
        'config.json: json-timestamp: "RFC3339" is the name of a Go layout; write the layout '
        'itself: "2006-01-02T15:04:05Z07:00"')


# -- new keys ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,number", [("SIGTERM", 15), ("term", 15), ("KILL", 9), (2, 2), ("1", 1),
                                          ("SIGUSR1", signal.SIGUSR1)])
def test_signal_names_and_numbers(value, number):
    assert signal_number(value) == number
    config, _ = parse(with_app(stop_signal=value, restart_signal=value))
    assert config.apps["app"].stop_signal == config.apps["app"].restart_signal == number


def test_app_defaults_of_the_new_keys():
    app = parse(with_app())[0].apps["app"]
    assert (app.stop_signal, app.restart_signal, app.stop_timeout) == (signal.SIGUSR1, signal.SIGUSR2, 10.0)
    assert (app.backoff.base, app.backoff.factor, app.backoff.max, app.backoff.reset, app.backoff.limit) == (
        0.1, 2.0, 30.0, 1.0, 0)
    app = parse(with_app(backoff_base=1, backoff_factor=3, backoff_max=60, backoff_reset=5,
                         start_limit=4))[0].apps["app"]
    assert app.backoff == type(app.backoff)(base=1.0, factor=3.0, max=60.0, reset=5.0, limit=4)


def test_log_limits_default_and_derive():
    app = parse(with_app())[0].apps["app"]
    assert (app.log_max_bytes, app.log_max_files, app.log_max_total_bytes) == (50 << 20, 5, 20 * (50 << 20))
    app = parse(with_app(log_max_bytes=1000))[0].apps["app"]
    assert app.log_max_total_bytes == 20_000  # the budget follows log-max-bytes unless set
    app = parse(with_app(log_max_bytes=0))[0].apps["app"]
    assert app.log_max_total_bytes == 0  # never rotated: no budget unless one is set
    app = parse(with_app(log_max_bytes=1000, log_max_files=0, log_max_total_bytes=0))[0].apps["app"]
    assert (app.log_max_files, app.log_max_total_bytes) == (0, 0)


# -- plugin options and checks -----------------------------------------------------------------

def test_keepalive_options_are_typed_defaulted_and_checked():
    assert parse(with_app(keepalive=3))[0].apps["app"].options["ping-grace"] == 2.0
    app = parse(with_app(keepalive=3, ping_grace=5))[0].apps["app"]
    assert app.options["ping-grace"] == 5.0 and isinstance(app.options["ping-grace"], float)
    assert one_error(with_app(keepalive=3, ping_grace="5")) == (
        'config.json: apps.app.ping-grace: must be a number (got string "5")')
    assert one_error(with_app(keepalive=3, ping_grace=61)) == (
        "config.json: apps.app.ping-grace: must be at most 60")
    assert one_error(with_app(keepalive=3, ping_grace=20)) == (
        "config.json: apps.app.ping-grace: must not exceed stop-timeout")


@pytest.mark.parametrize("value,expected", [(None, 10.0), (3, 3), (2.5, 2.5)])
def test_an_int_or_float_option(value, expected):
    app = parse(with_app(keepalive=2, pid_grace=value))[0].apps["app"]
    assert app.options["pid-grace"] == expected


@pytest.mark.parametrize("value", ["3", True, [3]])
def test_an_int_or_float_option_is_a_number(value):
    assert one_error(with_app(keepalive=2, pid_grace=value)).startswith(
        "config.json: apps.app.pid-grace: must be a number (got ")


def test_an_option_of_another_method_is_an_unknown_key():
    config, warnings = parse(with_app(keepalive=1, ping_grace=5))
    assert "ping-grace" not in config.apps["app"].options
    assert warnings == ["config.json: apps.app.ping-grace: unknown key, ignored"]


def test_service_options_come_from_every_backend_used():
    svc = parse(with_service(management=2))[0].services["svc"]
    assert dict(svc.options) == {"initd-directory": "/etc/init.d"}
    doc = with_service(management=None, management_start=1, management_status=1, management_stop=1,
                       management_restart=2, initd_directory="/opt/init.d")
    assert parse(doc)[0].services["svc"].options["initd-directory"] == "/opt/init.d"
    assert one_error(with_service(management=2, initd_directory="init.d")) == (
        "config.json: services.svc.initd-directory: must be an absolute path")
    _, warnings = parse(with_service(management=1, initd_directory="/x"))
    assert warnings == ["config.json: services.svc.initd-directory: unknown key, ignored"]


def test_a_broken_plugin_check_is_an_error_not_a_traceback():
    class Broken(fakes.PidPatrol):
        name = "broken"
        aliases = (9,)

        @classmethod
        def validate(cls, app):
            raise RuntimeError("boom")

    methods = fakes.methods(keepalives=(fakes.PidPatrol, Broken))
    assert errors_of(with_app(keepalive="broken"), methods) == [
        "config.json: apps.app: broken could not check it (RuntimeError: boom)"]


def test_a_secret_of_the_wrong_type_is_not_repeated_in_the_error():
    from patrol.testing import item_errors

    app = {"keepalive": 1, "name": "A", "binary": "a", "working-directory": "/srv", "log-directory": "l",
           "pid-path": "a.pid", "secret": 987654321}
    errors = item_errors("apps", app)
    assert any("secret" in e and "must be a string (got number)" in e for e in errors), errors
    assert not any("987654321" in e for e in errors)
