"""Stored data can never break a GUI page (F14, the GUI half).

The API now refuses strings that are not Unicode text (lone UTF-16 surrogates), but data
already stored (an older state file, a config, an app's log) may hold them. A page that
shows such a value must still be served to everyone, with the bad character replaced.
"""

from __future__ import annotations

import json
import sqlite3

from patrol.testing import wait_for

ODD = "odd \ud800 one"  # a lone surrogate: no UTF-8 encoding exists for it
REPLACED = "odd \ufffd one"


def state_file(patrol) -> str:
    (path,) = [p for p in patrol.tmp_path.glob("*.state.db")]
    return str(path)


def test_values_that_are_not_unicode_text_in_the_state_file_and_config_render_replaced(patrol):
    app = patrol.app(1, name=ODD, env=["TESTAPP_EXIT=3"], **{"start-limit": 1, "backoff-reset": 60})
    config = patrol.config(apps={"odd": app, "plain": patrol.app(1, disabled=True)})
    p = patrol.start(config)
    wait_for(lambda: p.app("odd").get("state") == "given-up", 10, "odd to give up (one history record)")
    p.terminate()

    db = sqlite3.connect(state_file(patrol))
    with db:
        (row,) = db.execute("SELECT state FROM item WHERE grp = 'app' AND id = 'odd'").fetchall()
        state = json.loads(row[0])
        state["keyvalue"] = {ODD: ODD, "nested": [ODD, {"k": ODD}]}
        db.execute("UPDATE item SET state = ? WHERE grp = 'app' AND id = 'odd'", (json.dumps(state),))
        records = db.execute("SELECT seq, record FROM history WHERE grp = 'app' AND id = 'odd'").fetchall()
        assert records
        for seq, text in records:
            record = {**json.loads(text), "reason": ODD, "keyvalue": {ODD: ODD}}
            db.execute("UPDATE history SET record = ? WHERE grp = 'app' AND id = 'odd' AND seq = ?",
                       (json.dumps(record), seq))
    db.close()
    log = next(f for f in patrol.tmp_path.joinpath("logs").rglob("*.stdout.log") if not f.is_symlink())
    with open(log, "ab") as f:
        f.write(b"bad bytes \xff\xfe and an encoded surrogate \xed\xa0\x80 end\n")

    p = patrol.start(config)
    for path in ("/", "/?q=odd", "/app/odd", "/app/plain", "/gui/state.json", "/app/odd/log/stdout",
                 "/app/odd/logs/", f"/app/odd/logs/{log.relative_to(patrol.tmp_path / 'logs')}",
                 f"/app/odd/follow?file={log.relative_to(patrol.tmp_path / 'logs')}&offset=0"):
        status, body = p.request("GET", path)
        assert status == 200, (path, status, str(body)[:300])
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        if path in ("/", "/app/odd"):
            assert REPLACED in text, path
    detail = p.request("GET", "/app/odd")[1]
    assert detail.count(REPLACED) >= 4  # name, key, value, history reason
    assert "and an encoded surrogate" in p.request("GET", f"/app/odd/logs/{log.relative_to(patrol.tmp_path / 'logs')}")[1]
    assert p.request("GET", "/status/")[0] == 200 and p.request("GET", "/api/?group=app&id=odd&history")[0] == 200
