"""The config's access keys: ``http.auth`` (token, token-file), ``insecure-no-auth``,
``rate-limit``, and the refusal of an unauthenticated HTTP listener beyond loopback.

Every message names the key and the rule, and none ever shows a token.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from patrol.config import ConfigError, load_config, parse_config
from patrol.config.access import is_loopback

DATA = Path(__file__).parent / "data"
TOKEN = "tok-" + "x1Y2z3" * 5
APP = {"keepalive": 1, "name": "App", "working-directory": "/srv/app", "binary": "app",
       "log-directory": "logs", "pid-path": "app.pid"}
PING_APP = {"keepalive": 3, "name": "Pinger", "working-directory": "/srv/app", "binary": "app",
            "log-directory": "logs"}


def _fakes():
    spec = importlib.util.spec_from_file_location("patrol_config_auth_fakes", DATA / "fake_methods.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.methods()


METHODS = _fakes()


def doc(http=None, udp=None, apps=None):
    document = {"apps": apps or {"app": APP}}
    if http is not None:
        document["http"] = http
    if udp is not None:
        document["udp"] = udp
    return document


def parse(document, base_dir=""):
    return parse_config(document, METHODS, source="config.json", base_dir=base_dir)


def errors_of(document, base_dir="") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(document, base_dir)
    return caught.value.errors


@pytest.mark.parametrize("address,expected", [
    ("127.0.0.1:8421", True), ("127.3.4.5:1", True), ("localhost:80", True), ("LOCALHOST:80", True),
    ("[::1]:8421", True), ("::1", True), ("127.0.0.1", True), ("[::ffff:127.0.0.1]:80", True),
    ("0.0.0.0:8421", False), (":8421", False), ("[::]:8421", False), ("10.0.0.5:8421", False),
    ("example.com:80", False), ("192.168.1.2", False),
])
def test_loopback_addresses(address, expected):
    assert is_loopback(address) is expected


def test_no_auth_on_loopback_is_the_default_and_fine():
    config, warnings = parse(doc())
    assert config.http.auth is None and config.http.rate_limit == 100 and warnings == []


@pytest.mark.parametrize("listen", ["0.0.0.0:8421", ":8421", "[::]:8421", "10.1.2.3:80", "patrol.example:80"])
def test_listening_beyond_loopback_without_auth_is_refused(listen):
    errors = errors_of(doc(http={"listen": listen}))
    assert len(errors) == 1
    assert errors[0].startswith(f'config.json: http.listen: "{listen}" accepts connections from other machines, '
                                "and http.auth is not set")
    assert "insecure-no-auth" in errors[0] and "token-file" in errors[0]


def test_insecure_no_auth_opts_out_with_a_loud_warning():
    config, warnings = parse(doc(http={"listen": "0.0.0.0:8421", "insecure-no-auth": True}))
    assert config.http.auth is None and config.http.insecure_no_auth is True
    assert warnings == ['config.json: http.insecure-no-auth: the HTTP API and web GUI on "0.0.0.0:8421" are open '
                        "to anyone who can connect: they can start and stop apps and read their logs "
                        "(set http.auth to require a token)"]


def test_an_inline_token_is_read_and_never_shown():
    config, warnings = parse(doc(http={"listen": "0.0.0.0:1", "auth": {"token": f"  {TOKEN}\n"}}))
    assert config.http.auth.token == TOKEN and config.http.auth.source == "http.auth.token"
    assert TOKEN not in repr(config) and warnings == []


def test_a_token_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)
    config, warnings = parse(doc(http={"auth": {"token-file": "token"}}), base_dir=str(tmp_path))
    assert config.http.auth.token == TOKEN and config.http.auth.source == "token"
    assert warnings == []


def test_a_token_file_others_can_read_is_warned_about(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    path.chmod(0o644)
    config, warnings = parse(doc(http={"auth": {"token-file": str(path)}}))
    assert config.http.auth.token == TOKEN
    assert warnings == [f'config.json: http.auth.token-file: "{path}" is readable or writable by other users '
                        "(mode 0644), so they can read the token: chmod 600 it"]


def test_an_inline_token_in_a_config_others_can_read_is_warned_about(tmp_path):
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps(doc(http={"auth": {"token": TOKEN}})))
    path.chmod(0o640)
    config, warnings = load_config(path, METHODS)
    assert config.http.auth.token == TOKEN
    assert warnings == ["%s: http.auth.token: the config file is readable or writable by other users (mode 0640), "
                        "so they can read the token: chmod 600 it" % path]
    path.chmod(0o600)
    assert load_config(path, METHODS)[1] == []


@pytest.mark.parametrize("auth,message", [
    ({}, 'http.auth: needs "token-file" (a file holding the token) or "token" (generate one with: '),
    ({"token": TOKEN, "token-file": "/x"}, 'http.auth: give "token" or "token-file", not both'),
    ({"token": "short-Secret1"}, "http.auth.token: must be at least 16 characters (got 13); generate one with"),
    ({"token": 1234567890123456789}, "http.auth.token: must be a string"),
    ({"token": "a" * 1025}, "http.auth.token: must be at most 1024 characters (got 1025)"),
    ({"token": "has spaces inside it ok"}, "http.auth.token: may only contain printable ASCII characters, "
                                            "without spaces"),
    ({"token": "ünïcödé-ünïcödé-ünïcödé"}, "http.auth.token: may only contain printable ASCII"),
    ({"token-file": ""}, "http.auth.token-file: must be the path of a file holding the token"),
    ({"token-file": "/nonexistent/token"}, 'http.auth.token-file: cannot read "/nonexistent/token": '
                                           "No such file or directory"),
    ({"token": TOKEN, "tokn": 1}, None),  # a typo'd key is a warning, see below
    ("yes", 'http.auth: must be an object (got string "yes")'),
])
def test_auth_errors_name_the_key_and_never_show_the_token(auth, message):
    document = doc(http={"listen": "0.0.0.0:8421", "auth": auth})
    if message is None:
        config, warnings = parse(document)
        assert config.http.auth.token == TOKEN
        assert warnings == ['config.json: http.auth.tokn: unknown key, ignored (did you mean "token"?)']
        return
    errors = errors_of(document)
    assert len(errors) == 1 and errors[0].startswith("config.json: " + message), errors
    token = auth.get("token") if isinstance(auth, dict) else None
    assert token is None or str(token) not in errors[0] and str(token)[:12] not in errors[0]


@pytest.mark.parametrize("content,message", [
    ("", "must hold the token on one line (it has 0)"),
    ("a-token-on-line-1\nand-line-2-too-xx\n", "must hold the token on one line (it has 2)"),
    ("tiny\n", "http.auth.token-file: must be at least 16 characters (got 4)"),
    (b"\xff\xfe-not-utf8-at-all-xxxxxxxx", "is not UTF-8 text"),
])
def test_bad_token_files(tmp_path, content, message):
    path = tmp_path / "token"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    errors = errors_of(doc(http={"auth": {"token-file": str(path)}}))
    assert len(errors) == 1 and message in errors[0] and errors[0].startswith("config.json: http.auth.token-file: ")
    assert "line-2" not in errors[0] and "tiny" not in errors[0]  # the file's content is never shown


def test_a_broken_auth_section_is_not_also_reported_as_missing():
    errors = errors_of(doc(http={"listen": "0.0.0.0:8421", "auth": {"token": "short"}}))
    assert len(errors) == 1 and "http.auth.token" in errors[0]


def test_insecure_no_auth_on_loopback_says_what_it_turns_off():
    config, warnings = parse(doc(http={"listen": "127.0.0.1:1", "insecure-no-auth": True}))
    assert config.http.insecure_no_auth is True
    assert warnings == ["config.json: http.insecure-no-auth: on a loopback address it only turns off the check "
                        "that keeps web pages from reaching Patrol through DNS rebinding (any Host is answered)"]


def test_insecure_no_auth_beside_auth_is_ignored_with_a_warning():
    config, warnings = parse(doc(http={"listen": "0.0.0.0:1", "auth": {"token": TOKEN}, "insecure-no-auth": True}))
    assert config.http.auth is not None
    assert warnings == ["config.json: http.insecure-no-auth: is ignored: http.auth is set, so every request needs "
                        "the token"]


@pytest.mark.parametrize("value,error", [
    (0, None), (2.5, None), (1000, None),
    (-1, "http.rate-limit: must be at least 0 (got -1); 0 means no limit"),
    ("fast", 'http.rate-limit: must be a number (got string "fast")'),
])
def test_rate_limit(value, error):
    if error is None:
        assert parse(doc(http={"rate-limit": value}))[0].http.rate_limit == value
    else:
        assert errors_of(doc(http={"rate-limit": value})) == [f"config.json: {error}"]


def test_udp_beyond_loopback_is_warned_about():
    _, warnings = parse(doc(udp={"listen": "0.0.0.0:1248"}))
    assert warnings == ['config.json: udp.listen: "0.0.0.0:1248" accepts datagrams from other machines, and UDP '
                        "cannot be authenticated: anyone who can send one can ping apps and, unless http.auth is "
                        "on (then UDP answers pings only), toggle items that have no secret"]
    assert parse(doc(udp={"listen": "127.0.0.1:1248"}))[1] == []


def test_http_ping_apps_without_a_secret_are_warned_about_when_auth_is_on():
    apps = {"app": APP, "pinger": PING_APP, "safe": {**PING_APP, "secret": "app-secret"}}
    _, warnings = parse(doc(http={"auth": {"token": TOKEN}}, apps=apps))
    assert warnings == ["config.json: apps.pinger.secret: is not set, but the app is kept alive by HTTP pings and "
                        "http.auth is on: its pings are refused unless it sends the token. Give it a secret and "
                        "make it send the secret with its pings"]
    assert parse(doc(apps=apps))[1] == []  # without auth, nothing to say


def test_patrol_check_and_run_refuse_an_open_listener(tmp_path):
    """The refusal is a config error: ``patrol check`` says it, ``patrol run`` does not start."""
    app = {**APP, "working-directory": str(tmp_path), "binary": "/bin/true"}
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps({"apps": {"app": app}, "http": {"listen": "0.0.0.0:0"}}))
    for command in (["check", str(path)], ["run", str(path), "--log-format", "json"]):
        done = subprocess.run([sys.executable, "-m", "patrol", *command], capture_output=True, text=True,
                              timeout=30, cwd=tmp_path)
        assert done.returncode == 1, done
        assert 'http.listen: "0.0.0.0:0" accepts connections from other machines' in done.stdout + done.stderr
