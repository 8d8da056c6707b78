"""Path traversal, tried every way we could think of: through the log browser, the log
follow, the original's log URLs, the static files, app ids in URLs, and service names
in the config. tests/web/test_gui_http.py and tests/web/test_gui_logs.py cover the plain
``..``, ``%2e``, ``//`` and symlink cases; these are the harder encodings and races.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import urlencode

import pytest

from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, wait_for

CANARY = "TOP-SECRET-CANARY"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatrolProcess]:
    factory = PatrolFactory(tmp_path_factory.mktemp("security-paths"))
    try:
        p = factory.start(factory.config(apps={"web": factory.app(1, name="Web")}), env=UNITTEST_ENV)
        wait_for(lambda: p.app("web").get("pid"), 10, "web running")
        root = p.workdir
        (root / "outside.txt").write_text(CANARY + "\n")
        (root / "outside-dir").mkdir()
        (root / "outside-dir" / "x.log").write_text(CANARY + "\n")
        logs = root / "logs"
        (logs / "plain.log").write_text("plain\n")
        (logs / "dir-out").symlink_to(root / "outside-dir")
        yield p
    finally:
        factory.cleanup()


def raw(p: PatrolProcess, path: str, method: str = "GET") -> tuple[int, str]:
    """Send exactly ``path``: no client normalises ``..`` or re-encodes anything."""
    host, port = p.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


ESCAPES = [
    "%252e%252e/%252e%252e/outside.txt",  # double encoding
    "%252e%252e%252f%252e%252e%252foutside.txt",
    "..%5c..%5coutside.txt", "..\\..\\outside.txt",  # backslashes
    "%c0%ae%c0%ae/%c0%ae%c0%ae/outside.txt",  # overlong UTF-8 dots
    "%ef%bc%8e%ef%bc%8e/%ef%bc%8e%ef%bc%8e/outside.txt",  # fullwidth dots
    "%2e%2e%2f%2e%2e%2foutside.txt", ".%2e/.%2e/outside.txt", "%2e./%2e./outside.txt",
    "....//....//outside.txt", "..;/..;/outside.txt", "plain.log/../../outside.txt",
    "%2f%2e%2e%2f%2e%2e%2foutside.txt", "dir-out/x.log", "dir-out/../outside.txt",
    "%00../../outside.txt", "plain.log%00.txt", "." * 5000, "a/" * 3000,
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_the_log_browser_stays_inside_whatever_the_encoding(live: PatrolProcess, escape: str) -> None:
    for path in (f"/app/web/logs/{escape}", f"/app/web/logs/{escape}?raw=1", f"/logs/{escape}?group=app&id=web"):
        status, text = raw(live, path)
        assert status in (400, 404, 308), (path, status)
        assert CANARY not in text and "root:x:0" not in text, path
        if status == 308:  # the original's /logs/ URL moves to the browser, which must refuse it too
            assert raw(live, path.replace("/logs/", "/app/web/logs/", 1).split("?")[0] + "?raw=1")[0] == 404


@pytest.mark.parametrize("file", ["/etc/passwd", "../../outside.txt", "../outside.txt", "dir-out/x.log",
                                  str(Path("/proc/self/environ")), "%2e%2e/outside.txt", "logs/../../outside.txt",
                                  "plain.log\x00", "\\..\\outside.txt"])
def test_the_log_follow_reads_only_files_inside(live: PatrolProcess, file: str) -> None:
    status, body = live.request("GET", "/app/web/follow?" + _query(file=file, offset="0"))
    assert status == 404 and CANARY not in json.dumps(body), (file, body)
    assert body["errors"][0].startswith("file: ")


def test_a_file_swapped_for_a_symlink_after_listing_is_refused(live: PatrolProcess) -> None:
    logs = live.workdir / "logs"
    victim = logs / "swap.log"
    victim.write_text("harmless\n")
    assert live.request("GET", "/app/web/logs/swap.log?raw=1")[1] == "harmless\n"
    assert live.request("GET", "/app/web/follow?" + _query(file="swap.log", offset="0"))[0] == 200
    victim.unlink()
    victim.symlink_to(live.workdir / "outside.txt")  # the race a log browser must survive
    for path in ("/app/web/logs/swap.log?raw=1", "/app/web/logs/swap.log",
                 "/app/web/follow?" + _query(file="swap.log", offset="0")):
        status, body = live.request("GET", path)
        assert status == 404 and CANARY not in str(body), path


@pytest.mark.parametrize("item_id", ["..%2F..%2Fetc", "web%2F..%2F..", "%2e%2e", "web%00", "WEB%2F", "-web",
                                     "web.", "w" * 500, "%ef%bc%8e%ef%bc%8e"])
def test_app_ids_in_urls_never_become_paths(live: PatrolProcess, item_id: str) -> None:
    for path in (f"/app/{item_id}", f"/app/{item_id}/logs/", f"/app/{item_id}/log/stdout",
                 f"/app/{item_id}/follow?file=plain.log&offset=0", f"/stdout/?group=app&id={item_id}",
                 f"/service/{item_id}"):
        status, text = raw(live, path)
        assert status in (400, 404, 307), (path, status)  # 307: Starlette's redirect of a trailing slash
        assert CANARY not in text


def test_static_files_stay_in_their_directory(live: PatrolProcess) -> None:
    for path in ("/static/../outside.txt", "/static/%2e%2e/%2e%2e/outside.txt", "/static/..%2f..%2foutside.txt",
                 "/static/%2e%2e%2f__init__.py", "/static//etc/passwd", "/static/..%5c__init__.py"):
        status, text = raw(live, path)
        assert status == 404 and CANARY not in text and "import" not in text, path


def test_services_are_found_by_id_never_by_path(live: PatrolProcess) -> None:
    for item_id in ("../../bin/sh", "/etc/init.d/cron", "..", "svc/../x"):
        status, body = live.api(id=item_id, group="service", toggle=1)
        assert (status, body) == (400, {"errors": ["Unknown Service"]})


@pytest.mark.parametrize("name,rule", [
    ("../evil", 'must not contain "/"'), ("sub/evil", 'must not contain "/"'), ("..", 'must not be "." or ".."'),
    ("-evil", 'must not start with "-"'), ("evil;rm", 'may only contain 0-9, A-Z, a-z, "-", ".", "_" and "@"'),
])
def test_service_names_that_would_leave_the_init_directory_are_config_errors(tmp_path: Path, name: str,
                                                                             rule: str) -> None:
    """Refused by ``patrol check`` and ``patrol run`` alike, and nothing is ever run."""
    initd = tmp_path / "initd"
    initd.mkdir()
    ran = tmp_path / "ran"
    evil = tmp_path / "evil"
    evil.write_text(f"#!/bin/sh\ntouch {ran}\n")
    evil.chmod(0o755)
    config = {"services": {"svc": {"name": "Evil", "service": name, "management": "initd",
                                   "initd-directory": str(initd)}},
              "http": {"listen": "127.0.0.1:0"}, "udp": {"listen": "127.0.0.1:0"}}
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps(config))
    for command in (["check", str(path)], ["run", str(path), "--log-format", "json"]):
        done = subprocess.run([sys.executable, "-m", "patrol", *command], capture_output=True, text=True,
                              timeout=30, cwd=tmp_path)
        assert done.returncode == 1, done
        assert f"services.svc.service: {rule}" in done.stdout + done.stderr
    assert not ran.exists()


def _query(**params: str) -> str:
    return urlencode(params)
