"""Secrets never leave Patrol: not in any response, log line, status or GUI page.

Every way a secret can reach Patrol is exercised (POST, GET query, UDP; right, wrong,
in malformed bodies), then everything Patrol wrote or served is searched for it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from patrol.testing import wait_for

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


def crawl(p: Any, limit: int = 40) -> list[str]:
    """Every page of the GUI reachable from ``/`` (links on this host, one level deep)."""
    status, home = p.request("GET", "/")
    pages = [home if isinstance(home, str) else json.dumps(home)]
    for link in sorted(set(re.findall(r'href="(/[^"#]*)"', pages[0])))[:limit]:
        pages.append(str(p.request("GET", link.replace("&amp;", "&"))[1]))
    return pages
