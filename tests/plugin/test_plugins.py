"""Plugin loading: registries, safe loading, strict mode, trigger isolation."""

import json
import os
import subprocess
import sys

import pytest

from patrol import hookimpl
from patrol.plugin.events import Event
from patrol.plugin.keepalive import KeepAlive
from patrol.plugin.loader import PluginLoadError, Plugins
from patrol.plugin.registry import Registry, RegistrationError
from patrol.plugin.service import ServiceBackend
from patrol.plugin.transport import Transport


class Alpha(KeepAlive):
    name = "alpha"
    aliases = (7,)


class AlphaAgain(KeepAlive):
    name = "alpha"


class Systemctl(ServiceBackend):
    name = "systemctl"

    def command(self, action, parameter):
        return ["systemctl", parameter, self.service.service]


class Null(Transport):
    name = "null"

    async def start(self):
        pass

    async def stop(self):
        pass


class KeepalivePlugin:
    @hookimpl
    def patrol_register_keepalives(self, register):
        register(Alpha)


def kernel(*plugins, strict=False):
    return Plugins(entry_points=False, strict=strict, plugins=plugins, defaults={})


def test_hook_patrol_register_keepalives_by_name_and_alias():
    p = kernel(KeepalivePlugin())
    assert p.keepalives.resolve("alpha") == "alpha"
    assert p.keepalives.resolve(7) == "alpha"
    assert p.keepalives.get("alpha") is Alpha
    assert p.keepalives.resolve("beta") is None


def test_hook_patrol_register_services():
    class Plugin:
        @hookimpl
        def patrol_register_services(self, register):
            register(Systemctl)

    p = kernel(Plugin())
    assert p.services.get("systemctl") is Systemctl


def test_hook_patrol_register_transports():
    class Plugin:
        @hookimpl
        def patrol_register_transports(self, register):
            register(Null)

    assert dict(kernel(Plugin()).transports) == {"null": Null}


def test_duplicate_name_fails_the_second_plugin_and_names_both():
    class Second:
        @hookimpl
        def patrol_register_keepalives(self, register):
            register(AlphaAgain)

    p = kernel(KeepalivePlugin(), Second())
    assert p.keepalives.get("alpha") is Alpha
    assert len(p.failed) == 1
    assert "already registered by" in p.failed[0].error and "KeepalivePlugin" in p.failed[0].error


def test_duplicate_in_strict_mode_raises():
    class Second:
        @hookimpl
        def patrol_register_keepalives(self, register):
            register(AlphaAgain)

    with pytest.raises(PluginLoadError, match="already registered"):
        kernel(KeepalivePlugin(), Second(), strict=True)


def test_half_registered_plugin_is_rolled_back():
    class Half:
        @hookimpl
        def patrol_register_keepalives(self, register):
            register(Alpha)
            raise RuntimeError("boom after registering")

    p = kernel(Half())
    assert p.keepalives.names() == []
    assert p.failed and "boom" in p.failed[0].error
    assert p.pm.get_plugins() == set()


def test_unknown_hook_is_refused_not_fatal():
    class Typo:
        @hookimpl
        def patrol_register_keepalive(self, register):  # missing "s"
            pass

    p = kernel(Typo())
    assert p.failed and "patrol_register_keepalive" in p.failed[0].error


def test_class_without_name_is_refused():
    class Nameless(KeepAlive):
        pass

    registry: Registry = Registry("keepalive")
    with pytest.raises(RegistrationError, match="no 'name'"):
        registry.add(Nameless, "x")


def test_missing_hint_names_the_package():
    registry: Registry = Registry("keepalive")
    assert registry.missing_hint(4) == "keepalive 4 needs: pip install patrol-keepalive-udp"
    assert registry.missing_hint("pid-app") == "keepalive 'pid-app' needs: pip install patrol-keepalive-pid"
    assert "unknown keepalive 'nope'" in registry.missing_hint("nope")


def test_hook_patrol_trigger_isolates_a_raising_observer():
    seen = []

    class First:
        @hookimpl
        def patrol_trigger(self, event):
            seen.append(("first", event.name))

    class Broken:
        @hookimpl
        def patrol_trigger(self, patrol, event):
            raise RuntimeError("observer bug")

    class Last:
        @hookimpl
        def patrol_trigger(self, patrol, event):
            seen.append(("last", event.name, patrol))

    p = kernel(First(), Broken(), Last())
    p.trigger("the-patrol", Event("patrol.tick"))
    assert ("first", "patrol.tick") in seen and ("last", "patrol.tick", "the-patrol") in seen


def test_installed_plugins_are_listed():
    out = subprocess.run([sys.executable, "-m", "patrol", "plugins"], capture_output=True, text=True, check=True)
    for name in ("keepalive_pid", "keepalive_http", "keepalive_udp", "service_initd", "service_service"):
        assert name in out.stdout
    assert "FAILED" not in out.stdout


def broken_site(tmp_path):
    """A fake installed distribution whose plugin raises on import."""
    site = tmp_path / "site"
    dist = site / "patrol_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: patrol-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[patrol]\nbroken = patrol_broken\n")
    (site / "patrol_broken.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    return site


def test_broken_plugin_is_listed_as_failed_and_patrol_still_works(tmp_path, monkeypatch):
    env = {"PYTHONPATH": str(broken_site(tmp_path)), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "patrol", "plugins"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "broken" in out.stdout and "FAILED" in out.stdout and "broken on purpose" in out.stdout
    assert "keepalive_pid" in out.stdout


def test_broken_plugin_in_strict_mode_is_an_error(tmp_path):
    env = {"PYTHONPATH": str(broken_site(tmp_path)), "PATROL_STRICT_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "patrol", "plugins"], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "broken on purpose" in out.stderr


def test_disabled_plugins_are_not_loaded(monkeypatch):
    monkeypatch.setenv("PATROL_DISABLE_PLUGINS", "keepalive_udp")
    p = Plugins(strict=True)
    assert p.keepalives.resolve(4) is None and "udp" not in dict(p.transports)
    assert p.keepalives.resolve(1) == "pid-patrol"


# -- two installed plugins registering the same name (P2) ---------------------------------------------

TWIN = '''from patrol import hookimpl
from patrol import KeepAlive


class Twin(KeepAlive):
    name = "twin"


class Own(KeepAlive):
    name = "only-{n}"


@hookimpl
def patrol_register_keepalives(register):
    register(Own)
    register(Twin)
'''


def twin_site(tmp_path):
    """Two fake installed distributions whose plugins both register keepalive "twin"."""
    site = tmp_path / "site"
    for n in ("one", "two"):
        dist = site / f"patrol_twin_{n}-0.1.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: patrol-twin-{n}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[patrol]\ntwin_{n} = patrol_twin_{n}\n")
        (site / f"patrol_twin_{n}.py").write_text(TWIN.replace("{n}", n))
    return site


def patrol_cli(tmp_path, *args, strict=False):
    env = {k: v for k, v in os.environ.items() if k != "PATROL_STRICT_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(twin_site(tmp_path)), env.get("PYTHONPATH")]))
    if strict:
        env["PATROL_STRICT_PLUGINS"] = "1"
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def twin_config(tmp_path, keepalive):
    (tmp_path / "app").write_text("#!/bin/sh\n")
    (tmp_path / "app").chmod(0o755)
    app = {"keepalive": keepalive, "name": "A", "binary": "app", "working-directory": str(tmp_path),
           "log-directory": "logs"}
    path = tmp_path / f"{keepalive}.json"
    path.write_text(json.dumps({"apps": {"a": app}}))
    return path


def test_two_plugins_registering_one_name_the_second_fails_naming_both(tmp_path):
    out = patrol_cli(tmp_path, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert "twin_one" in {p["name"] for p in listing["loaded"]}
    (failed,) = [f for f in listing["failed"] if f["name"] == "twin_two"]
    assert "keepalive 'twin'" in failed["error"] and "twin_one" in failed["error"] and "twin_two" in failed["error"]


def test_a_config_using_a_name_two_plugins_registered_fails_check_naming_the_conflict(tmp_path):
    """Before: the plugin whose entry point sorts first won silently and check said ok."""
    path = twin_config(tmp_path, "twin")
    out = patrol_cli(tmp_path, "check", str(path))
    assert out.returncode == 1, out.stdout + out.stderr
    assert (f"{path}: apps.a.keepalive: keepalive 'twin' is registered by two plugins, twin_one and twin_two"
            in out.stderr), out.stderr
    assert "ok" not in out.stdout
    upper = twin_config(tmp_path, "TWIN")  # names match case-insensitively: the same conflict
    assert "registered by two plugins, twin_one and twin_two" in patrol_cli(tmp_path, "check", str(upper)).stderr
    # the first plugin's other method is untouched; the refused plugin's is gone, and said why
    assert patrol_cli(tmp_path, "check", str(twin_config(tmp_path, "only-one"))).returncode == 0
    refused = patrol_cli(tmp_path, "check", str(twin_config(tmp_path, "only-two")))
    assert refused.returncode == 1 and "note: plugin twin_two failed to load" in refused.stderr
    strict = patrol_cli(tmp_path, "check", str(path), strict=True)
    assert strict.returncode == 1 and "twin_one" in strict.stderr and "twin_two" in strict.stderr


def test_a_conflict_on_an_alias_makes_only_the_alias_unusable():
    class First(KeepAlive):
        name = "first"
        aliases = (42,)

    class Second(KeepAlive):
        name = "second"
        aliases = (42,)

    class A:
        @hookimpl
        def patrol_register_keepalives(self, register):
            register(First)

    class B:
        @hookimpl
        def patrol_register_keepalives(self, register):
            register(Second)

    p = kernel(A(), B())
    assert p.keepalives.resolve("first") == "first" and p.keepalives.resolve(42) is None
    assert "registered by two plugins" in p.keepalives.missing_hint(42)


def test_a_plugin_registering_one_name_twice_is_refused_and_the_name_says_so():
    class Twice:
        @hookimpl
        def patrol_register_keepalives(self, register):
            register(Alpha)
            register(AlphaAgain)

    p = kernel(Twice())
    assert p.failed and p.keepalives.resolve("alpha") is None
    assert "registered twice by the plugin" in p.keepalives.missing_hint("alpha")


def test_hook_patrol_register_probes_by_name_and_alias():
    from patrol import Probe, ProbeResult

    class Always(Probe):
        name = "always"
        aliases = ("yes",)

        async def check(self):
            return ProbeResult(True, "always")

    class Plugin:
        @hookimpl
        def patrol_register_probes(self, register):
            register(Always)

    p = kernel(Plugin())
    assert p.probes.get("always") is Always
    assert p.probes.resolve("yes") == "always"
    assert p.probes.resolve("never") is None
