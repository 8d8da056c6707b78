"""patrol.web.llhttp overrides two methods of uvicorn's httptools protocol (its
keep-alive timer: one per connection instead of one per answer). They are copies of
uvicorn's own code as of 0.54 with that one change: if uvicorn changes them, this test
says so before a connection misbehaves (re-copy the new code, keep the change)."""

from __future__ import annotations

import inspect

import pytest

httptools_impl = pytest.importorskip("uvicorn.protocols.http.httptools_impl")

#: uvicorn 0.54's code of the methods patrol.web.llhttp.Llhttp replaces (comments and
#: blank lines left out)
COPIED = {
    "on_response_complete": [
        "def on_response_complete(self) -> None:",
        "self.server_state.total_requests += 1",
        "if self.transport.is_closing():",
        "return",
        "self._unset_keepalive_if_required()",
        "self.flow.resume_reading()",
        "if self.pipeline:",
        "cycle, app = self.pipeline.pop()",
        "self._start_asgi_task(cycle, app)",
        "else:",
        "self.timeout_keep_alive_task = self.loop.call_later(",
        "self.timeout_keep_alive, self.timeout_keep_alive_handler",
        ")",
    ],
    "_unset_keepalive_if_required": [
        "def _unset_keepalive_if_required(self) -> None:",
        "if self.timeout_keep_alive_task is not None:",
        "self.timeout_keep_alive_task.cancel()",
        "self.timeout_keep_alive_task = None",
    ],
}


def code_of(method: object) -> list[str]:
    lines = (line.strip() for line in inspect.getsource(method).splitlines())  # type: ignore[arg-type]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("name", sorted(COPIED))
def test_the_uvicorn_methods_patrol_replaces_are_still_what_it_copied(name: str) -> None:
    assert code_of(getattr(httptools_impl.HttpToolsProtocol, name)) == COPIED[name]


def test_no_other_uvicorn_code_touches_the_keep_alive_timer_patrol_replaced() -> None:
    """Only the two replaced methods and __init__ use uvicorn's own timer handle."""
    source = inspect.getsource(httptools_impl.HttpToolsProtocol)
    users = [chunk.split("(", 1)[0] for chunk in source.split("    def ")[1:] if "timeout_keep_alive_task" in chunk]
    assert sorted(users) == ["__init__", "_unset_keepalive_if_required", "on_response_complete"]
