"""What a caller may see of an item: one rule for every transport, page and event.

An item with a ``secret`` has **private parts**: its key/values, the key/values kept in
its history records, and its logs (the current instance's files, older ones, the log
directory and the list of its runs). They are shown only to a caller that proved the
secret: an API request carrying it, a GUI page opened with ``?secret=`` or with the
unlock cookie a correct secret sets. Everyone else -- ``/status/``, API and UDP
requests without it, GUI pages without it, every event delivered to ``patrol_trigger``
(observers often forward events to other systems) -- sees the rest: state, pid, times,
restarts, history records without their key/values, and the configuration with its
secrets masked. An item without a secret has nothing private.

Every renderer asks :func:`sees_private` (through :func:`visible_keyvalue` where it
shows key/values), so the rule cannot drift between the API, the status page, the GUI
and the events; ``tests/api/test_api_secrets.py`` reads every one of them without the
secret and searches what came back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView

#: what is private, for messages and pages
PRIVATE_PARTS = "key/values and logs"


def sees_private(runner: "ItemView", *, proven: bool) -> bool:
    """May a caller see ``runner``'s private parts? ``proven``: it showed the secret."""
    return proven or not runner.config.secret


def visible_keyvalue(runner: "ItemView", values: Mapping[str, Any], *, proven: bool) -> dict[str, Any] | None:
    """``values`` (the item's, or a history record's) as this caller may see them:
    a copy, or None when they are private to it."""
    return dict(values) if sees_private(runner, proven=proven) else None
