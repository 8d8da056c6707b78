"""State that survives: the state file, adoption after SIGKILL, live reload."""

import http.client
import json
import os
import signal
import sqlite3
import threading
import urllib.request

from patrol.testing import UNITTEST_ENV, pid_alive, pids_with_marker, wait_for


def restart(patrol, p):
    """Start a second ``patrol run`` on the same config (and state file)."""
    return patrol.start(p.config, env={k: v for k, v in p.env.items() if k.startswith("PATROL_UNITTEST")})


def test_toggles_keyvalues_cas_and_history_survive_a_graceful_restart(patrol):
    p = patrol.start(patrol.config(apps={"a": patrol.app(1), "b": patrol.app(1)}))
    pid = p.running_pid("a")
    p.running_pid("b")
    p.api(id="b", group="app", toggle=2)
    p.api(id="a", group="app", keyvalue={"k": "v", "n": 1})
    wait_for(lambda: p.app("b").get("state") == "disabled", 10)
    before = p.status()
    assert p.terminate() == 0
    assert not pid_alive(pid)

    q = restart(patrol, p)
    after = q.status()
    assert after["apps"]["b"]["disabled"] is True and "started" not in after["apps"]["b"]
    assert after["apps"]["a"]["keyvalue"] == {"k": "v", "n": 1}
    assert len(after["apps"]["a"]["history"]) == len(before["apps"]["a"].get("history", [])) + 1  # + shutdown
    assert after["apps"]["a"]["history"][-1]["shutdown"] is True
    assert after["apps"]["a"]["cas"] > before["apps"]["a"]["cas"]
    q.running_pid("a", other_than=pid)  # a is started again (a graceful stop stops apps)


def test_sigkill_while_clients_write_loses_no_acknowledged_change(patrol):
    p = patrol.start(patrol.config(apps={"a": patrol.app(1, disabled=True)}))
    acknowledged: list[tuple[int, int]] = []  # (n, cas in the response)
    stop = threading.Event()

    def client():
        n = 0
        while not stop.is_set():
            n += 1
            body = {"id": "a", "group": "app", "keyvalue": {f"k{n}": n}, "toggle": 4 if n % 2 else 5}
            req = urllib.request.Request(f"http://{p.http}/api/", json.dumps(body).encode(), method="POST")
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    acknowledged.append((n, json.loads(resp.read())["cas"]))
            except (OSError, http.client.HTTPException):
                return  # Patrol is gone (possibly in the middle of a response)

    thread = threading.Thread(target=client)
    thread.start()
    wait_for(lambda: len(acknowledged) >= 150, 20, "150 acknowledged writes")
    p.kill()  # SIGKILL in the middle of the stream
    stop.set()
    thread.join()

    db = sqlite3.connect(str(p.config_path.with_suffix(".state.db")))
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    q = restart(patrol, p)
    entry = q.app("a")
    for n, _ in acknowledged:
        assert entry["keyvalue"].get(f"k{n}") == n, f"acknowledged write {n} was lost"
    last_cas = acknowledged[-1][1]
    assert entry["cas"] >= last_cas + 1  # CAS continues from where it was, never backwards
    status, body = q.api(id="a", group="app", cas=entry["cas"], keyvalue={"after": 1})
    assert status == 200 and not body.get("cas-invalid")


def test_running_apps_are_adopted_after_patrol_is_killed(patrol):
    env = ["TESTAPP_PING_DELAY=0.1", "TESTAPP_PING_EVERY=0.2"]
    apps = {
        "pidapp": patrol.app(2, **{"pid-path": "pidapp.pid"}),
        "web": patrol.app(3, env=env, **{"pid-path": "web.pid"}),
        "child": patrol.app(1, **{"pid-path": "child.pid"}),
    }
    p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)  # ping-timeout 3: first start waits 6 s
    pids = {a: p.running_pid(a) for a in apps}
    wait_for(lambda: p.app("web").get("lastseen"), 10, "the http app's first ping")
    instances = {a: p.app(a)["instance-id"] for a in apps}
    p.kill()
    assert all(pid_alive(pid) for pid in pids.values())

    q = restart(patrol, p)
    for app_id, pid in pids.items():
        entry = wait_for(lambda: q.app(app_id).get("started") and q.app(app_id), 10)
        assert entry["pid"] == pid, app_id
        assert entry["instance-id"] == instances[app_id], app_id  # the same instance continues
    marked = set(pids_with_marker(patrol.marker))
    assert marked == set(pids.values()) | {q.pid}, "a second copy was started"
    os.kill(pids["child"], signal.SIGKILL)  # an adopted pid-patrol app is watched by pidfd
    q.running_pid("child", other_than=pids["child"])
    assert q.app("child")["history"][-1]["pid"] == pids["child"]
    seen = q.app("web").get("lastseen")
    wait_for(lambda: q.app("web").get("lastseen") != seen, 10, "a ping to the new Patrol")
    assert q.app("web")["instance-id"] == instances["web"]  # pings continue the same instance


def test_an_instance_gone_while_patrol_was_down_is_closed_and_restarted(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    pid = p.running_pid("t")
    p.kill()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 5)
    q = restart(patrol, p)
    new = q.running_pid("t", other_than=pid)
    record = q.app("t")["history"][-1]
    assert record["pid"] == pid and record["reason"] == "gone while Patrol was down" and new != pid


def test_a_second_patrol_on_the_same_state_file_refuses_to_start(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    p.running_pid("t")
    second = patrol.start(dict(p.config, http={"listen": "127.0.0.1:1"}), wait=False)
    assert second.proc.wait(15) == 1
    assert "in use by another Patrol" in second.log() and str(p.pid) in second.log()


def test_reload_applies_only_the_difference(patrol):
    apps = {"keep": patrol.app(1), "change": patrol.app(1), "drop": patrol.app(1)}
    p = patrol.start(patrol.config(apps=apps))
    pids = {a: p.running_pid(a) for a in apps}
    p.api(id="keep", group="app", keyvalue={"toggled": True}, toggle=4)  # a runtime change
    config = dict(p.config)
    config["apps"] = {
        "keep": apps["keep"],
        "change": dict(apps["change"], args=["--changed"]),
        "new": patrol.app(1),
    }
    p.config = config
    p.write_config()
    os.kill(p.pid, signal.SIGHUP)
    wait_for(lambda: set(p.status()["apps"]) == {"keep", "change", "new"}, 10, "the reload")
    new_pid = p.running_pid("new")
    changed = p.running_pid("change", other_than=pids["change"])
    assert p.app("keep")["pid"] == pids["keep"] and pid_alive(pids["keep"])  # untouched
    assert p.app("keep")["run-once"] is True and p.app("keep")["keyvalue"] == {"toggled": True}
    assert not pid_alive(pids["drop"]) and not pid_alive(pids["change"])
    assert p.app("change")["history"][-1]["reason"] == "config changed"
    assert new_pid and changed


def test_a_broken_config_on_reload_changes_nothing(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    pid = p.running_pid("t")
    p.config_path.write_text('{"apps": {"t": {"keepalive": 9}}}')
    os.kill(p.pid, signal.SIGHUP)
    wait_for(lambda: "reload refused" in p.log(), 10)
    assert p.app("t")["pid"] == pid and pid_alive(pid)
    assert "keepalive" in p.log()


def test_reload_through_the_client_and_the_api(patrol):
    import subprocess
    import sys

    p = patrol.start(patrol.config(apps={"a": patrol.app(1)}))
    pid = p.running_pid("a")
    p.config = dict(p.config, apps={"a": p.config["apps"]["a"], "b": patrol.app(1)})
    p.write_config()
    out = subprocess.run([sys.executable, "-m", "patrol", "reload", "--url", f"http://{p.http}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "added    app b" in out.stdout and "unchanged: 1" in out.stdout
    p.running_pid("b")
    assert p.app("a")["pid"] == pid
    p.config_path.write_text("{not json")
    status, body = p.request("POST", "/-/reload", {})
    assert status == 400 and body["errors"]
    out = subprocess.run([sys.executable, "-m", "patrol", "reload", "--url", f"http://{p.http}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "reload refused" in out.stderr
    assert p.request("GET", "/-/reload")[0] == 405
    assert p.app("a")["pid"] == pid


def test_the_state_file_is_readable_by_patrols_user_only(patrol):
    p = patrol.start(patrol.config(apps={"a": patrol.app(1, secret="s3cret-value", disabled=True)}))
    db = p.config_path.with_suffix(".state.db")
    wait_for(db.exists, 10)
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + ".lock")):
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
