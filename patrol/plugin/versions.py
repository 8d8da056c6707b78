"""Which kernel a plugin was written for, and the versions ``patrol --version`` prints.

A plugin distribution names the kernels it works with the way every Python package names
what it needs: in its dependency on ``patrol`` (``Requires-Dist: patrol>=0.2,<0.3`` in
its installed metadata). The plugin loader reads that line *before* importing the plugin
and refuses a plugin whose range does not hold the running kernel. That one line, and
not a separate "API level" the plugin would declare in its code, because:

- pip already resolves installs with it, so installer and loader agree on one statement;
- it is read from metadata, so an incompatible plugin is refused before any of its code
  runs: nothing of it is half-registered;
- every plugin already has it: third-party plugins need nothing new.

A plugin still lands beside a kernel outside its range when it was installed with
``--no-deps``, or the kernel was up- or downgraded afterwards; that is what the check is for.
:data:`patrol.PLUGIN_API` is for plugins that span several kernels and test for additions.

Only the standard library and ``packaging`` here: ``patrol --version`` must answer
without loading plugins or the web stack. ``packaging`` itself (14 modules, ~0.8 MB that
a running Patrol would keep for its whole life) is imported only for what the plain form
cannot settle: every plugin of this repository, and most in the wild, say
``patrol>=0.2,<0.3`` of a release kernel, which :func:`_plain_fit` decides with release
numbers alone; markers, extras, ``~=``, wildcards, pre-releases, a misfit's message: packaging.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib.metadata import Distribution, entry_points

from patrol import PLUGIN_API, __version__

KERNEL_DIST = "patrol"
ENTRY_POINT_GROUP = "patrol"
_LEADING_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: one clause of the plain form: a comparison with a release number (``>=0.2``, ``<0.3``)
_PLAIN_CLAUSE = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*([0-9]+(?:\.[0-9]+)*)\s*")
_PLAIN_RELEASE = re.compile(r"[0-9]+(?:\.[0-9]+)*")


class IncompatiblePlugin(Exception):
    """A plugin's declared kernel range does not hold the running kernel."""


def kernel_misfit(dist: Distribution | None, kernel: str = __version__) -> str | None:
    """Why ``dist`` cannot run on kernel version ``kernel``; None when it can.

    Every ``patrol`` requirement that applies (its environment marker holds; extras
    excluded) must contain the kernel version. Pre-releases count, so a development
    kernel (``0.3.0.dev1``) runs plugins written for its series. A distribution that
    names no ``patrol`` requirement is not judged.
    """
    if dist is None:
        return None
    lines = list(dist.requires or ())
    if all(_plain_fit(line, kernel) is True for line in lines):
        return None  # settled without packaging (the common case: every line is plain and holds)
    return _packaging_misfit(dist, lines, kernel)


def _plain_fit(line: str, kernel: str) -> bool | None:
    """Whether ``line`` holds ``kernel``, when both are in the plain form; None otherwise.

    True for a line that names another distribution (it does not judge the kernel) or a
    plain ``patrol`` range that contains ``kernel``; False for a plain range that does
    not; None when the line or the kernel is anything but plain (packaging decides).
    The plain form compares release numbers padded with zeros, as PEP 440 does for
    releases without pre-, post- or development parts.
    """
    leading = _LEADING_NAME.match(line)
    if leading is None:
        return None
    if _canonical(leading.group(1)) != KERNEL_DIST:
        return True
    if _PLAIN_RELEASE.fullmatch(kernel) is None:
        return None
    clauses = [_PLAIN_CLAUSE.fullmatch(clause) for clause in line[leading.end():].split(",")]
    if not all(clauses):
        return None
    have = _release(kernel)
    for clause in clauses:
        assert clause is not None
        op, version = clause.groups()
        want = _release(version)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        held = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]
        if not held:
            return False
    return True


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Patrol_Kernel`` == ``patrol-kernel``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _packaging_misfit(dist: Distribution, lines: list[str], kernel: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    name = f"{dist.name} {dist.version}"
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            leading = _LEADING_NAME.match(line)
            if leading and canonicalize_name(leading.group(1)) == KERNEL_DIST:
                return f"{name} declares an unreadable kernel requirement {line!r}: {exc}"
            continue
        if canonicalize_name(requirement.name) != KERNEL_DIST:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if not requirement.specifier.contains(Version(kernel), prereleases=True):
            return (
                f"{name} is written for patrol{requirement.specifier}, but this is patrol {kernel}: "
                f"install a release of {dist.name} made for patrol {_series(kernel)}"
            )
    return None


@dataclass(frozen=True)
class InstalledPlugin:
    """One entry point of the ``patrol`` group, read from metadata only (never imported)."""

    name: str
    dist: str
    version: str
    misfit: str | None


def installed_plugins() -> list[InstalledPlugin]:
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        dist = ep.dist
        found.append(InstalledPlugin(
            ep.name,
            dist.name if dist else "",
            dist.version if dist else "",
            kernel_misfit(dist),
        ))
    return found


def describe() -> str:
    """What ``patrol --version`` prints: the kernel, then each plugin with its version."""
    python = ".".join(str(n) for n in sys.version_info[:3])
    lines = [f"patrol {__version__} (plugin API {'.'.join(map(str, PLUGIN_API))}; Python {python})"]
    plugins = installed_plugins()
    if not plugins:
        lines.append("plugins: none installed")
    else:
        lines.append("plugins:")
    for plugin in plugins:
        line = f"  {plugin.name:<20} {plugin.dist} {plugin.version}".rstrip()
        if plugin.misfit:
            line += f"  (not loaded: {plugin.misfit})"
        lines.append(line)
    return "\n".join(lines)


def _series(version: str) -> str:
    from packaging.version import Version

    release = Version(version).release
    return ".".join(str(n) for n in release[:2]) + ".x"
