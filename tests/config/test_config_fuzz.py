"""Config fuzzing: any document either loads or fails with errors that name a key.

Generated documents mix the real keys of the format with junk keys and values of
every JSON type; the loader must never raise anything but ConfigError, and every
error line must name the file and where in the document the problem is.
"""

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patrol.config import ConfigError, Methods, parse_config
from patrol.plugin.loader import Plugins

PLUGINS = Plugins(strict=True)
METHODS = Methods(keepalives=PLUGINS.keepalives, services=PLUGINS.services)
EXAMPLES = int(os.environ.get("PATROL_FUZZ_EXAMPLES", "300"))

APP_KEYS = ["keepalive", "name", "binary", "working-directory", "log-directory", "pid-path", "pid-verify",
            "disabled", "keyvalue", "keyvalue-clear", "secret", "execute-timeout", "args", "env", "env-parent",
            "std-merge", "x", "stop-signal", "restart-signal", "stop-timeout", "backoff-base", "backoff-factor",
            "backoff-max", "backoff-reset", "start-limit", "log-max-bytes", "log-max-files",
            "log-max-total-bytes", "pid-grace"]
SERVICE_KEYS = ["management", "management-start", "management-status", "management-stop", "management-restart",
                "management-start-parameter", "name", "service", "ignore-exit-codes-start",
                "ignore-exit-codes-status", "disabled", "keyvalue", "secret", "status-timeout",
                "command-timeout", "stop-on-shutdown", "initd-directory", "service-command"]
TOP_KEYS = ["tick-every", "history", "json-timestamp", "ping-timeout", "listen-http", "listen-udp", "http", "udp",
            "x", "state-file"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=80),
    st.sampled_from(["/srv", "~/app", "a/..", "..", "/", "app.pid", "SIGTERM", "RFC3339", "1", "2", "pid-app",
                     "service", "initd", "http", "udp", "x" * 300, "a\x00b", "-a", "Web", "../../etc"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                           max_size=4), max_leaves=8)
ids = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True), st.text(max_size=70))


def item(keys):
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=12)), values, max_size=len(keys) // 2)


documents = st.one_of(
    values,
    st.fixed_dictionaries(
        {},
        optional={
            "apps": st.one_of(values, st.dictionaries(ids, st.one_of(item(APP_KEYS), values), max_size=3)),
            "services": st.one_of(values, st.dictionaries(ids, st.one_of(item(SERVICE_KEYS), values), max_size=3)),
            **{k: values for k in TOP_KEYS},
        },
    ),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_document_loads_or_names_the_problem(document):
    json.dumps(document)  # only JSON-representable documents
    try:
        parse_config(document, METHODS, source="fuzz.json")
    except ConfigError as exc:
        assert exc.errors, "a ConfigError must say what is wrong"
        for line in exc.errors:
            assert line.startswith("fuzz.json: "), line
            assert len(line) > len("fuzz.json: ") + 5, line
