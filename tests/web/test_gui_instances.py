"""The GUI shows each copy of a set of instances as an item of its own, marked with
the set it belongs to (the set's id is what ``patrol restart``/``scale`` take)."""

from __future__ import annotations

import re

import httpx

from patrol.testing import PatrolFactory, wait_for


def test_each_copy_is_a_row_and_a_page_marked_with_its_set(patrol: PatrolFactory) -> None:
    p = patrol.start(patrol.config(apps={"web": patrol.app(1, instances=2), "single": patrol.app(1)}))
    wait_for(lambda: all(p.app(f"web-{k}").get("pid") for k in (0, 1)), 15, "both copies")
    with httpx.Client(base_url=f"http://{p.http}", timeout=10) as c:
        html = c.get("/").text
        for k in (0, 1):
            row = re.search(rf'<tr data-key="app/web-{k}".*?</tr>', html, re.S)
            assert row is not None and f">copy {k} of web</span>" in row.group(0)
        single = re.search(r'<tr data-key="app/single".*?</tr>', html, re.S)
        assert single is not None and "copy " not in single.group(0)
        assert ">copy 1 of web</span>" in c.get("/app/web-1").text
