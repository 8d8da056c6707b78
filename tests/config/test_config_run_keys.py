"""The keys of issue 15 as the loader reads them: who and with what an app runs,
instances, restart policies, ``exit-with``. Every problem names its key and the rule."""

from __future__ import annotations

import pwd
from typing import Any

import pytest

from patrol.config import ConfigError
from patrol.config.instances import expand
from patrol.plugin.model import UNLIMITED
from patrol.testing import item_errors, load_document, load_item
from patrol.testing.users import require_root


def app(**keys: Any) -> dict[str, Any]:
    return {"keepalive": 1, "name": "x", "binary": "/bin/sleep", "working-directory": "/srv", "log-directory": "logs",
            "pid-path": "x.pid", **keys}


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_document(document)
    return caught.value.errors


def test_umask_nice_and_limits_are_read_as_written():
    loaded = load_item("apps", app(umask="027", nice=-5, limits={"nofile": 256, "core": 0, "as": [1024, "unlimited"],
                                                                   "CPU": "unlimited"}))
    assert loaded.umask == 0o027 and loaded.nice == -5
    assert dict(loaded.limits) == {"nofile": (256, 256), "core": (0, 0), "as": (1024, UNLIMITED),
                                   "cpu": (UNLIMITED, UNLIMITED)}
    default = load_item("apps", app())
    assert (default.umask, default.nice, dict(default.limits), default.run_as) == (None, None, {}, None)


@pytest.mark.parametrize(("keys", "error"), [
    ({"umask": "99"}, 'apps.x.umask: must be an octal string such as "027", at most "0777" (got "99")'),
    ({"umask": 18}, "apps.x.umask: must be a string (got number 18)"),
    ({"nice": 20}, "apps.x.nice: must be between -20 and 19 (got 20)"),
    ({"limits": {"files": 10}}, "apps.x.limits.files: unknown resource limit (valid: nofile, nproc, core, as, "
                                "memlock, stack, cpu, fsize)"),
    ({"limits": {"nofile": [10, 5]}}, "apps.x.limits.nofile: the soft limit must not be above the hard limit "
                                      "(got [10, 5])"),
    ({"limits": {"nofile": ["unlimited", 5]}}, "apps.x.limits.nofile: the soft limit must not be above"),
    ({"limits": {"nofile": [1, 2, 3]}}, 'apps.x.limits.nofile: must be a number, "unlimited" or [soft, hard] '
                                        "(got 3 values)"),
    ({"limits": {"core": -1}}, "apps.x.limits.core: must be a number from 0 to 9223372036854775807"),
    ({"limits": {"nproc": [1, "lots"]}}, 'apps.x.limits.nproc[1]: must be a number from 0'),
    ({"limits": 5}, "apps.x.limits: must be an object (got number 5)"),
    ({"group": "root"}, 'apps.x.group: needs "user"'),
    ({"env-file": "a/../b.env"}, "apps.x.env-file: must be a clean path"),
    ({"restart": "sometimes"}, 'apps.x.restart: must be one of always, on-failure, never (got "sometimes")'),
    ({"restart": "on-failure", "success-exit-codes": [0, 256]}, "apps.x.success-exit-codes[1]: must be an exit "
                                                                "code 0..255 (got number 256)"),
    ({"instances": 0}, "apps.x.instances: must be from 1 to 1000 (got 0)"),
    ({"instances": 2, "restart-mode": "random"}, "apps.x.restart-mode: must be one of rolling, parallel"),
])
def test_each_problem_names_its_key_and_rule(keys, error):
    assert any(e.startswith(f"config: {error}") for e in item_errors("apps", app(**keys))), item_errors(
        "apps", app(**keys))


def test_restart_policies_and_success_codes():
    assert (load_item("apps", app()).restart, load_item("apps", app()).success_exit_codes) == ("always", {0})
    loaded = load_item("apps", app(restart="on-failure", **{"success-exit-codes": [0, 3]}))
    assert (loaded.restart, loaded.success_exit_codes) == ("on-failure", {0, 3})


def test_a_set_makes_copies_with_their_number_substituted():
    loaded = load_item("apps", app(instances=3, args=["--port=80{instance}"], env=["SLOT={instance}", "K{instance}=v"],
                                   **{"pid-path": "run/x-{instance}.pid", "log-directory": "logs/{instance}",
                                      "env-file": "env/{instance}.env"}), "web")
    copies = expand(loaded, 3)
    assert list(copies) == ["web-0", "web-1", "web-2"]
    two = copies["web-2"]
    assert (two.instance_of, two.instance, two.args, two.env) == ("web", 2, ("--port=802",), ("SLOT=2",
                                                                                              "K{instance}=v"))
    assert (two.pid_file, two.log_root, two.env_file_path) == ("/srv/run/x-2.pid", "/srv/logs/2", "/srv/env/2.env")
    assert expand(load_item("apps", app()), 5) == {"x": load_item("apps", app())}  # not a set: itself


def test_pid_app_sets_need_their_own_pid_files():
    assert item_errors("apps", app(keepalive=2, instances=2)) == [
        'config: apps.x.pid-path: must contain "{instance}" when "instances" is set: each copy of the app writes '
        "its own pid file, which tells it from the others"]
    load_item("apps", app(keepalive=2, instances=2, **{"pid-path": "x-{instance}.pid"}))
    load_item("apps", app(instances=2))  # pid-patrol reads no pid file


def test_a_set_id_must_leave_room_and_no_app_may_take_a_copys_id():
    assert item_errors("apps", app(instances=2), "a" * 60)[0].endswith(
        "needs an app id of at most 59 characters: the copies are named ID-0 .. ID-999 (got 60 characters)")
    assert errors_of({"apps": {"web": app(instances=2), "web-7": app()}}) == [
        'config: apps.web-7: is the id of a copy of the set "web" (instances: its copies are web-0 .. web-999); '
        "choose another id"]
    load_document({"apps": {"web": app(), "web-7": app()}})  # no set, no clash


def test_exit_with_names_one_app_of_the_config():
    assert load_document({"exit-with": "Main", "apps": {"main": app()}}).exit_with == "main"
    assert errors_of({"exit-with": "nope", "apps": {"main": app()}}) == [
        'config: exit-with: must name an app of this config (got "nope")']
    assert errors_of({"exit-with": "web", "apps": {"web": app(instances=2)}}) == [
        'config: exit-with: names the set "web" of 2 instances: it must name one app (a set has no single exit code)']
    # an app with errors of its own is not also called unknown
    assert errors_of({"exit-with": "main", "apps": {"main": app(nice=99)}}) == [
        "config: apps.main.nice: must be between -20 and 19 (got 99)"]


def test_a_user_is_looked_up_when_the_config_is_loaded():
    require_root()
    nobody = pwd.getpwnam("nobody")
    loaded = load_item("apps", app(user="nobody"))
    assert loaded.run_as is not None
    assert (loaded.run_as.uid, loaded.run_as.gid, loaded.run_as.home) == (nobody.pw_uid, nobody.pw_gid,
                                                                           nobody.pw_dir)
    assert loaded.run_as.groups[0] == nobody.pw_gid
    assert load_item("apps", app(user=str(nobody.pw_uid))).run_as == loaded.run_as
    assert item_errors("apps", app(user="no-such-user-patrol")) == [
        'config: apps.x.user: unknown user "no-such-user-patrol" (not in the password database)']
    assert item_errors("apps", app(user="nobody", group="no-such-group-patrol")) == [
        'config: apps.x.group: unknown group "no-such-group-patrol" (not in the group database)']


def test_toml_says_the_same(tmp_path):
    from patrol.config import Methods, load_config
    from patrol.testing import installed_plugins

    path = tmp_path / "patrol.toml"
    path.write_text('exit-with = "web"\n[apps.web]\nkeepalive = "pid-patrol"\nname = "w"\nbinary = "/bin/sleep"\n'
                    'working-directory = "/srv"\nlog-directory = "logs"\npid-path = "w.pid"\numask = "077"\n'
                    'restart = "on-failure"\nsuccess-exit-codes = [0, 2]\n[apps.web.limits]\nnofile = [512, 1024]\n'
                    '[apps.pool]\nkeepalive = 1\nname = "p"\nbinary = "/bin/sleep"\nworking-directory = "/srv"\n'
                    'log-directory = "logs"\npid-path = "p.pid"\ninstances = 4\nrestart-mode = "parallel"\n')
    plugins = installed_plugins()
    config, warnings = load_config(path, Methods(plugins.keepalives, plugins.services))
    web, pool = config.apps["web"], config.apps["pool"]
    assert (config.exit_with, web.umask, dict(web.limits), web.success_exit_codes) == ("web", 0o77,
                                                                                        {"nofile": (512, 1024)},
                                                                                        {0, 2})
    assert (pool.instances, pool.restart_mode) == (4, "parallel") and not warnings


def test_the_container_examples_config_is_valid():
    """examples/container/patrol.json as its image's ``patrol check`` reads it (its user
    ``app`` exists only in the image: a user of this machine stands in for it)."""
    import json
    from pathlib import Path

    require_root()
    document = json.loads((Path(__file__).parents[2] / "examples/container/patrol.json").read_text())
    for entry in document["apps"].values():
        entry["user"] = "nobody"
    config = load_document(document)
    assert config.exit_with == "web" and config.apps["worker"].instances == 2
    assert sorted(expand(config.apps["worker"], 2)) == ["worker-0", "worker-1"]


def test_depends_on_may_not_name_a_set():
    errors = errors_of({"apps": {"web": app(instances=2), "api": app(**{"depends-on": {"web": "started"}})}})
    assert errors == ['config: apps.api.depends-on: app/web: names a set of 2 instances, which has no single state '
                      "to wait for: depending on a set is not supported"], errors
    load_document({"apps": {"db": app(), "web": app(instances=2, **{"depends-on": ["db"]})}})  # a set may depend
