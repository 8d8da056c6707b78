"""What ``patrol run`` keeps out of its memory: modules only other commands or rare paths need.

A module imported once stays for the daemon's whole life, so these are guarded against
coming back by accident (an import moved to the top of a module): the client commands
and the urllib/http.client/email stack they bring (the parser needs only their
arguments, and ``patrol run`` builds only the server commands' parser), and
``packaging`` (plugins' plain kernel ranges are judged without it), ``tomllib`` for a
JSON config and ``difflib`` until a key is misspelt (~0.3 MB of the daemon's RSS together).
Features a config does not use stay out too (services, reloads, the launcher, compression,
env files, probes).
Observed through ``python -X importtime`` (``PYTHONPROFILEIMPORTTIME``), which writes
every import of the real daemon to its stderr, not through timing.
"""

from __future__ import annotations

import re

from patrol.testing import wait_for

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", re.MULTILINE)

#: imported by ``patrol run`` before, never needed by it
KEPT_OUT = ("patrol.cli.client", "patrol.cli.remote", "patrol.cli.events", "patrol.cli.actions",
            # the client commands' arguments: `patrol run` parses with the server commands only
            "patrol.cli.client_args", "patrol.cli.address", "patrol.cli.scale",
            "urllib.request", "packaging", "packaging.requirements",
            # needed only by a TOML config, and by a config or request with an unknown key
            "tomllib", "difflib",
            # h11 serves only what llhttp cannot parse, when httptools is installed (it is here)
            "h11", "uvicorn.protocols.http.h11_impl",
            # only with services, at the first reload, for an app that needs the launcher (a user,
            # limits, nice), where logs are compressed
            "patrol.engine.service_runner", "patrol.engine.service_backends", "patrol.engine.reload",
            "patrol.engine.launcher", "patrol.engine.logcompress",
            # only with an env file, with a probe (tests/engine/test_deferred_features.py: by reload too)
            "patrol.util.dotenv", "patrol.engine.probing", "patrol.engine.probe_target")


def test_patrol_run_does_not_import_the_client_packaging_or_rare_parsers(patrol):
    p = patrol.start(patrol.config({"web": patrol.app()}), env={"PYTHONPROFILEIMPORTTIME": "1"})
    p.running_pid("web")
    imported = wait_for(lambda: set(IMPORT_LINE.findall(p.log())) or None, message="import lines")
    # the daemon's own modules are there: the lines are read, not missing
    assert {"patrol.cli.server", "patrol.plugin.versions", "patrol.daemon", "patrol.engine.health"} <= imported
    assert sorted(imported.intersection(KEPT_OUT)) == []
