"""Apps with the same environment share one tuple of it (memory: thousands of apps often
share their environment, and each tuple the decoder's lists became was ~56 B per app).
What each app's config says is unchanged, and an environment of its own stays its own."""

from __future__ import annotations

import json

from patrol.testing import load_document


def app(*env: str) -> dict[str, object]:
    return {"keepalive": 1, "name": "n", "binary": "/bin/true", "working-directory": "/tmp", "log-directory": "logs",
            "pid-path": "p.pid", "env": list(env)}


def test_apps_with_the_same_env_share_one_tuple_and_read_the_same() -> None:
    # decoded from text, as a config file is: every list is a new one, every string too
    document = json.loads(json.dumps({"apps": {"a": app("A=1", "PATH=/bin"), "b": app("A=1", "PATH=/bin"),
                                               "c": app("A=2")}}))
    apps = load_document(document).apps
    assert apps["a"].env == apps["b"].env == ("A=1", "PATH=/bin") and apps["c"].env == ("A=2",)
    assert apps["a"].env is apps["b"].env
    assert apps["c"].env is not apps["a"].env
