"""``depends-on`` across the whole config: every id exists, and there is no cycle.

Apps and services have separate ids, so a dependency is written as ``"db"`` when only
one item has that id, or as ``"app/db"`` / ``"service/db"``. The model stores the
explicit form. A cycle could never start, so it is refused, printed the way a person
follows it: ``a -> b -> c -> a``.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Collection, Mapping, TypeVar

from patrol.config.reader import Report, child
from patrol.plugin.model import AppConfig, ServiceConfig

GROUPS = {"app": "apps", "service": "services"}
#: conditions that need the dependency to end a run: services never do
COMPLETION = ("completed", "completed-successfully")
T = TypeVar("T", AppConfig, ServiceConfig)


def check_dependencies(report: Report, apps: Mapping[str, AppConfig], services: Mapping[str, ServiceConfig],
                       known: Mapping[str, Collection[str]]) -> tuple[Mapping[str, AppConfig], Mapping[str, ServiceConfig]]:
    """The items with their ``depends_on`` in the explicit ``group/id`` form; errors for
    unknown or ambiguous ids, services asked to complete, and cycles.

    ``known``: every id the file has, per group, also of items that had errors (a
    dependency on those is not "unknown": their own errors are reported already).
    """
    tables: dict[str, Mapping[str, AppConfig | ServiceConfig]] = {"app": apps, "service": services}
    resolved: dict[str, dict[str, dict[str, str]]] = {"app": {}, "service": {}}
    for group, table in tables.items():
        for item_id, item in table.items():
            if item.depends_on:
                resolved[group][item_id] = _resolve(report, known, group, item_id, item.depends_on)
    if any(resolved.values()):
        _report_cycles(report, tables, resolved)
    new_apps = _with(apps, resolved["app"])
    new_services = _with(services, resolved["service"])
    return new_apps, new_services


def _path(group: str, item_id: str) -> str:
    return child(child(GROUPS[group], item_id), "depends-on")


def _resolve(report: Report, tables: Mapping[str, Collection[str]], group: str, item_id: str,
             depends_on: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for written, condition in depends_on.items():
        at = child(_path(group, item_id), written)
        prefix, slash, rest = written.partition("/")
        if slash:
            if prefix not in tables:
                report.error(at, f'must be an id, "app/ID" or "service/ID" (got "{written}")')
                continue
            if rest not in tables[prefix]:
                report.error(at, f"unknown {prefix} {rest!r}")
                continue
            key = written
        else:
            owners = [g for g, table in tables.items() if written in table]
            if not owners:
                report.error(at, f"unknown id {written!r}: no app or service has it")
                continue
            if len(owners) > 1:
                report.error(at, f'is ambiguous: an app and a service are both called "{written}" '
                             f'(write "app/{written}" or "service/{written}")')
                continue
            key = f"{owners[0]}/{written}"
        if key == f"{group}/{item_id}":
            report.error(at, f"cycle: {item_id} -> {item_id} (an item cannot wait for itself)")
            continue
        if key.startswith("service/") and condition in COMPLETION:
            report.error(at, f'a service never completes: use "started" or "ready" (got "{condition}")')
            continue
        found[key] = condition
    return found


def _report_cycles(report: Report, tables: Mapping[str, Mapping[str, AppConfig | ServiceConfig]],
                   resolved: Mapping[str, Mapping[str, Mapping[str, str]]]) -> None:
    """Each cycle once, at the item where the walk found it closing."""
    graph = {f"{g}/{i}": sorted(deps) for g, items in resolved.items() for i, deps in items.items()}
    both = {i for i in tables["app"] if i in tables["service"]}

    def show(node: str) -> str:
        item_id = node.partition("/")[2]
        return node if item_id in both else item_id

    done: set[str] = set()
    seen: set[frozenset[str]] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(start, 0)]  # iterative: a long chain must not hit the recursion limit
        while stack:
            node, index = stack.pop()
            if index == 0:
                path.append(node)
                on_path.add(node)
            targets = graph.get(node, [])
            if index < len(targets):
                stack.append((node, index + 1))
                target = targets[index]
                if target in on_path:
                    cycle = path[path.index(target):]
                    if frozenset(cycle) not in seen:
                        seen.add(frozenset(cycle))
                        group, _, item_id = cycle[0].partition("/")
                        text = " -> ".join(show(n) for n in [*cycle, target])
                        report.error(_path(group, item_id), f"cycle: {text} (none of them could ever start)")
                elif target not in done:
                    stack.append((target, 0))
            else:
                path.pop()
                on_path.discard(node)
                done.add(node)


def _with(table: Mapping[str, T], resolved: Mapping[str, Mapping[str, str]]) -> Mapping[str, T]:
    if not resolved:
        return table
    items = dict(table)
    for item_id, deps in resolved.items():
        items[item_id] = dataclasses.replace(items[item_id], depends_on=MappingProxyType(dict(deps)))
    return MappingProxyType(items)
