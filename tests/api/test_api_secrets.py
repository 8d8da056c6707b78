"""Secrets never leave Patrol: not in any response, log line, status or GUI page.

Every way a secret can reach Patrol is exercised (POST, GET query, UDP; right, wrong,
in malformed bodies), then everything Patrol wrote or served is searched for it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from typing import Any

from patrol.testing import TESTAPP, pids_with_marker, wait_for

SECRET = f"s3cr3t-{uuid.uuid4().hex}"
WRONG = SECRET.upper()


def test_the_secret_appears_in_no_response_log_or_page(patrol):
    apps = {"vault": patrol.app(4, secret=SECRET), "web": patrol.app(3, secret=SECRET),
            "plain": patrol.app(1, secret=SECRET)}
    config = patrol.config(apps=apps, **{"ping-timeout": 180})
    p = patrol.start(config)
    seen: list[str] = []

    def keep(answer: Any) -> Any:
        seen.append(json.dumps(answer) if not isinstance(answer, str) else answer)
        return answer

    for secret in (SECRET, WRONG, ""):
        for app_id in apps:
            keep(p.api(id=app_id, group="app", secret=secret, keyvalue={"k": 1}, toggle=1))
            keep(p.api_get(id=app_id, group="app", secret=secret))
            keep(p.udp_request({"id": app_id, "group": "app", "secret": secret}, timeout=0.3))
    keep(p.api(id="vault", group="app", secret=SECRET, ping=True))  # a ping over the wrong transport
    keep(p.api(id="web", group="app", secret=SECRET, ping=True, pid=-1))  # a bad pid beside the secret
    keep(p.api(id="web", group="app", secret=SECRET, toggle=999))
    keep(p.api(id="nosuch", group="app", secret=SECRET))
    keep(p.request("POST", "/api/", raw=f'{{"id": "web", "secret": "{SECRET}"'.encode()))  # truncated JSON
    keep(p.request("POST", "/api/", raw=f'{{"secret": "{SECRET}", "id": 1}}'.encode()))
    keep(p.request("POST", "/api/", raw=f'{{"secret": ["{SECRET}"]}}'.encode()))
    keep(p.request("GET", f"/api/?id=web&group=app&secret={SECRET}&toggle=x"))
    keep(p.request("GET", f"/api/?id=web&group=app&secret={SECRET}&secret={SECRET}"))
    keep(p.udp_request(None, raw=f'{{"id": "vault", "secret": "{SECRET}"'.encode(), timeout=0.3))
    status, body = p.api(id="web", group="app", secret=SECRET)
    assert status == 200 and body["keyvalue"] == {"k": 1}  # the right secret did work
    wait_for(lambda: p.app("plain").get("started"), 10, "the enabled app to run")

    keep(p.status())
    pages = crawl(p)
    assert len(pages) > 1  # the GUI has pages to search
    for page in pages:
        keep(page)
    p.terminate()
    everything = "\n".join(seen) + p.log()
    assert SECRET not in everything and WRONG not in everything
    assert "Secret Invalid" in everything and '"secret": true' in everything  # it did see them


# -- with http.auth: the token too, children, the service's commands, the state file ----------

TOKEN = f"tok-{uuid.uuid4().hex}"
WRONG_TOKEN = TOKEN.upper()
ITEM_SECRETS = {name: f"{name}-{uuid.uuid4().hex}" for name in ("plain", "holder", "daemon", "svc")}
DUMP_INITD = """#!/bin/sh
# a fake init script that keeps what Patrol gave it: its command line and environment
cat /proc/$$/cmdline > "$(dirname "$0")/dump-$1-cmdline"
cat /proc/$$/environ > "$(dirname "$0")/dump-$1-environ"
case "$1" in status) exit 0 ;; esac
"""


def test_no_secret_or_token_reaches_children_responses_logs_or_the_state_file(patrol):
    """Only the ``env`` of the config may hand a secret to a child, and only to that child."""
    token_file = patrol.tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    initd = patrol.tmp_path / "initd"
    initd.mkdir()
    (initd / "svc").write_text(DUMP_INITD)
    (initd / "svc").chmod(0o755)
    s = ITEM_SECRETS
    apps = {
        "plain": patrol.app(1, secret=s["plain"], args=["--flag"]),
        "holder": patrol.app(1, secret=s["holder"], env=[f"PATROL_SECRET={s['holder']}"], **{"pid-path": "h.pid"}),
        "daemon": patrol.app(2, secret=s["daemon"], env=["TESTAPP_CHILDREN=2"],  # children ignore SIGTERM
                             **{"pid-path": "daemon.pid", "stop-timeout": 0.5}),
    }
    services = {"svc": {"name": "Dump", "service": "svc", "management": "initd", "initd-directory": str(initd),
                        "secret": s["svc"]}}
    config = patrol.config(apps=apps, services=services)
    config["http"]["auth"] = {"token-file": str(token_file)}
    p = patrol.start(config)
    p.headers = {"Authorization": f"Bearer {TOKEN}"}
    seen: list[str] = []

    def keep(answer: Any) -> Any:
        seen.append(json.dumps(answer) if not isinstance(answer, str) else answer)
        return answer

    wait_for(lambda: all(p.app(a).get("pid") for a in apps), 15, "every app running")
    wait_for(lambda: (initd / "dump-status-environ").exists(), 10, "the service's status command")
    for token in (TOKEN, WRONG_TOKEN):
        keep(p.request("GET", "/status/", headers={"Authorization": f"Bearer {token}"}))
        keep(p.request("GET", "/", headers={"Authorization": f"Basic {token}"}))
        keep(p.request("POST", "/login", raw=f"token={token}".encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"}))
    for name in apps:
        keep(p.api(id=name, group="app", secret=s[name], toggle=1))
        keep(p.api(id=name, group="app", secret=WRONG_TOKEN))
        keep(p.request("POST", "/api/", {"id": name, "group": "app", "ping": True, "secret": s[name]},
                       headers={"Authorization": ""}))
    keep(p.api(id="svc", group="service", secret=s["svc"], keyvalue={"k": 1}))
    keep(p.request("GET", "/openapi.json"))
    keep(p.request("GET", "/gui/state.json"))
    pages = crawl(p, depth=2)
    # the detail pages of the apps and svc, and the apps' log pages (the dashboard links them)
    assert sum('action="/unlock"' in page for page in pages) == 7
    for name in apps:  # the logs, opened with the secret in the URL as the original's links did
        for path in (f"/app/{name}/log/stdout?secret={s[name]}", f"/app/{name}/logs/?secret={s[name]}",
                     f"/stdout/?group=app&id={name}&secret={s[name]}", f"/app/{name}?secret={s[name]}"):
            status, page = keep(p.request("GET", path))
            assert status in (200, 400, 404), (path, status)
    for page in pages:
        keep(page)

    children = {pid: (read(pid, "cmdline"), read(pid, "environ")) for pid in pids_with_marker(patrol.marker)
                if pid != p.pid}
    assert len(children) >= 5  # plain, holder, daemon and its two children
    dumps = {f.name: f.read_bytes() for f in initd.glob("dump-*")}
    assert set(dumps) >= {"dump-status-cmdline", "dump-status-environ"}
    state = b"".join(f.read_bytes() for f in patrol.tmp_path.glob("*.state*"))
    assert state  # the state file was written
    p.terminate()
    text = "\n".join(seen) + p.log()
    for secret in (TOKEN, WRONG_TOKEN, *s.values()):
        assert secret not in text, text[max(0, text.find(secret) - 300):text.find(secret) + 60]
        assert secret.encode() not in state, secret
        assert not any(secret.encode() in blob for blob in dumps.values()), secret
        for pid, (cmdline, environ) in children.items():
            allowed = secret == s["holder"] and b"PATROL_ID=holder\0" in environ
            assert secret.encode() not in cmdline, (pid, secret)
            assert (secret.encode() in environ) == allowed, (pid, secret)
    # where the config put it, it is: the check above reads real environments
    assert sum(s["holder"].encode() in environ for _, environ in children.values()) == 1


def read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def crawl(p: Any, limit: int = 40, depth: int = 1) -> list[str]:
    """Every page of the GUI reachable from ``/`` by links on this host, ``depth`` levels deep
    (beyond the first, only links without a query: not every sort order of the dashboard again)."""
    status, home = p.request("GET", "/")
    pages = [home if isinstance(home, str) else json.dumps(home)]
    visited = {"/"}
    frontier = [pages[0]]
    for _ in range(depth):
        links = sorted({link.replace("&amp;", "&") for page in frontier
                        for link in re.findall(r'href="(/[^"#]*)"', page)
                        if len(visited) == 1 or "?" not in link} - visited)[:limit]
        visited.update(links)
        frontier = [str(p.request("GET", link)[1]) for link in links]
        pages += frontier
    return pages


# -- without an item's secret, nothing private of it: every route, transport and event (F5) ------------

RECORDER = '''import json, os
from patrol import hookimpl


@hookimpl
def patrol_trigger(patrol, event):
    with open(os.environ["PATROL_TEST_EVENTS"], "a") as f:
        f.write(json.dumps({"name": event.name, "id": event.id, "snapshot": dict(event.snapshot),
                            "record": dict(event.record) if event.record else None}, default=str) + "\\n")
'''
QUIET_INITD = "#!/bin/sh\nexit 0\n"


def recorder_site(tmp_path):
    """An installed ``patrol_trigger`` observer that writes every event to a file."""
    site = tmp_path / "site"
    dist = site / "patrol_recorder-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: patrol-recorder\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[patrol]\nrecorder = patrol_recorder\n")
    (site / "patrol_recorder.py").write_text(RECORDER)
    return site


def test_without_the_secret_no_route_transport_or_event_shows_key_values_or_logs(patrol):
    """Key/values (current and in history records) and logs of items with a secret, read
    every way Patrol offers without the secret: none of them may appear. The GUI's
    detail page showed key/values to anyone, and events carried them to observers."""
    marks = {name: f"{name}-{uuid.uuid4().hex}" for name in ("kv-old", "kv-now", "svc-kv", "svc-old", "log")}
    plain_mark = f"plain-{uuid.uuid4().hex}"  # an item without a secret: shown everywhere
    leaky = patrol.tmp_path / "leaky"
    leaky.write_text(f'#!/bin/sh\necho {marks["log"]}\necho {marks["log"]} >&2\n'
                     f'exec "{sys.executable}" "{TESTAPP}" "$@"\n')
    leaky.chmod(0o755)
    initd = patrol.tmp_path / "initd"
    initd.mkdir()
    (initd / "svc").write_text(QUIET_INITD)
    (initd / "svc").chmod(0o755)
    apps = {"vault": patrol.app(1, secret=SECRET, binary="leaky", **{"log-directory": "vault-logs"}),
            "plain": patrol.app(1)}
    services = {"svc": {"name": "Svc", "service": "svc", "management": "initd", "initd-directory": str(initd),
                        "secret": SECRET}}
    events = patrol.tmp_path / "events.jsonl"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(recorder_site(patrol.tmp_path)),
                                                       os.environ.get("PYTHONPATH")])),
           "PATROL_TEST_EVENTS": str(events)}
    p = patrol.start(patrol.config(apps=apps, services=services), env=env)
    first = {a: p.running_pid(a) for a in apps}

    def with_secret(item_id, group="app", **request):
        status, body = p.api(id=item_id, group=group, secret=SECRET, history=True, **request)
        assert status == 200, body
        return body

    # private values, then a restart so that history records hold them too
    with_secret("vault", keyvalue={"k": marks["kv-old"]}, toggle=3)
    with_secret("svc", "service", keyvalue={"k": marks["svc-old"]})
    p.api(id="plain", group="app", keyvalue={"k": plain_mark}, toggle=3)
    for app_id in apps:
        p.running_pid(app_id, other_than=first[app_id])
    wait_for(lambda: with_secret("vault")["history"], 10, "vault's first history record")
    with_secret("vault", keyvalue={"k": marks["kv-now"]})
    with_secret("svc", "service", toggle=3)  # a restart of the service: a history record too
    wait_for(lambda: with_secret("svc", "service").get("history"), 20, "svc's first history record")
    with_secret("svc", "service", keyvalue={"k": marks["svc-kv"]})
    wait_for(lambda: p.app_log_has(marks["log"], "vault-logs"), 10, "vault's log line")
    wait_for(lambda: events.exists() and plain_mark in events.read_text(), 10, "an event carrying plain's values")
    log_files = sorted(str(f.relative_to(patrol.tmp_path / "vault-logs"))
                       for f in (patrol.tmp_path / "vault-logs").rglob("*.log"))
    assert log_files

    # the right secret does open them (so the searches below can fail)
    proven = with_secret("vault")
    assert proven["keyvalue"] == {"k": marks["kv-now"]}
    assert any(r.get("keyvalue") == {"k": marks["kv-old"]} for r in proven["history"])
    assert marks["svc-old"] in json.dumps(with_secret("svc", "service"))
    assert marks["kv-now"] in p.request("GET", f"/app/vault?secret={SECRET}")[1]
    assert marks["log"] in p.request("GET", f"/app/vault/log/stdout?secret={SECRET}")[1]

    seen: list[str] = []

    def keep(answer: Any) -> None:
        seen.append(answer if isinstance(answer, str) else json.dumps(answer))

    for guess in ("", WRONG):
        for group, item_id in (("app", "vault"), ("service", "svc")):
            request = {"id": item_id, "group": group, "history": True, **({"secret": guess} if guess else {})}
            keep(p.request("POST", "/api/", request))
            keep(p.api_get(**{k: v for k, v in request.items() if k != "history"}, history="1"))
            keep(p.request("POST", "/api/", {**request, "keyvalue": {"x": 1}}))  # a write is answered too
            keep(p.request("POST", "/api/", {**request, "toggle": 1, "cas": 1}))
            keep(p.udp_request({k: v for k, v in request.items() if k != "history"}, timeout=0.5))
        query = f"&secret={guess}" if guess else ""
        paths = ["/", "/gui/state.json", "/app/vault", "/service/svc", "/app/vault/log/stdout",
                 "/app/vault/log/stderr", "/app/vault/log/merged", "/app/vault/logs/", "/status/",
                 "/stdout/?group=app&id=vault", "/stderr/?group=app&id=vault", "/logs/?group=app&id=vault"]
        for name in log_files:
            paths += [f"/app/vault/logs/{name}", f"/app/vault/logs/{name}?raw=1", f"/logs/{name}?group=app&id=vault",
                      f"/app/vault/follow?file={name}&offset=0", f"/app/vault/follow?file={name}&offset=0&stream=stdout"]
        for path in paths:
            keep(p.request("GET", path + (("&" if "?" in path else "?") + query[1:] if query else ""))[1])
    keep(p.status())
    for page in crawl(p, depth=2):
        keep(page)
    status, detail = p.request("GET", "/app/vault")
    assert plain_mark in json.dumps(p.status()) and plain_mark in p.request("GET", "/app/plain")[1]
    p.terminate()
    recorded = events.read_text()
    assert plain_mark in recorded and '"app.closed"' in recorded  # the observer saw values it may see
    everything = "\n".join(seen) + recorded + p.log()
    for name, mark in marks.items():
        assert mark not in everything, (name, everything[max(0, everything.find(mark) - 400):everything.find(mark) + 80])
    assert status == 200 and "Hidden: they need the app's secret" in detail and 'action="/unlock"' in detail
