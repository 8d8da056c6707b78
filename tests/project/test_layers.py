"""The package's shape is enforced: layers import downwards only, no import cycles, the
plugins use the one surface, and no module or class grows past its size.

Every import counts: module-level, inside functions, and under ``TYPE_CHECKING`` (a
type-only import is still a dependency a reader has to follow). docs/architecture.md
explains the layers; this test is their definition.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "patrol"

#: layer -> the layers it may import (itself included)
ALLOWED = {
    "util": {"util"},
    "plugin": {"plugin", "util"},
    "config": {"config", "plugin", "util"},
    "engine": {"engine", "config", "plugin", "util"},
    "api": {"api", "engine", "config", "plugin", "util"},
    "web": {"web", "api", "engine", "config", "plugin", "util"},
    "daemon": {"api", "engine", "config", "plugin", "util"},
    "cli": {"cli", "daemon", "api", "engine", "config", "plugin", "util"},
    "testing": {"testing", "daemon", "api", "engine", "config", "plugin", "util"},
    "main": {"cli"},
}
#: what any module may import from the package root itself (constants; the root's
#: other names are the plugin surface, for plugins)
ROOT_NAMES = {"__version__", "PLUGIN_API"}
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """``patrol.engine.supervisor`` -> ``engine``; the root is ``surface``."""
    parts = module.split(".")
    if parts == ["patrol"]:
        return "surface"
    return {"__main__": "main"}.get(parts[1], parts[1])


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, names imported from it) of every import in ``path``,
    relative imports resolved."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            yield node.lineno, base, [alias.name for alias in node.names]


def kernel_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def resolve(module: str, names: list[str]) -> list[str]:
    """The kernel modules an import statement depends on (``from patrol.engine import
    procfs`` depends on ``patrol.engine.procfs``)."""
    found = []
    for name in names:
        candidate = f"{module}.{name}"
        if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                (ROOT / Path(*candidate.split(".")) / "__init__.py").exists():
            found.append(candidate)
    return found or [module]


def layer_violations() -> list[str]:
    problems = []
    for path in kernel_modules():
        source = layer_of(module_name(path))
        if source == "surface":
            continue  # the plugin surface names everything, lazily
        for line, module, names in imports(path):
            if module != "patrol" and not module.startswith("patrol."):
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "patrol":
                extra = sorted(set(names) - ROOT_NAMES)
                if extra or not names:
                    problems.append(f"{where}: imports {', '.join(extra) or 'patrol'} from the plugin surface "
                                    f"(inside the kernel, import the module that defines it)")
                continue
            target = layer_of(module)
            if target not in ALLOWED[source]:
                problems.append(f"{where}: imports {module} ({source} may import only: "
                                f"{', '.join(sorted(ALLOWED[source]))})")
    return problems


def cycles() -> list[list[str]]:
    """Strongly connected groups of kernel modules (Tarjan), the root left out: it only
    holds constants and lazy names, and imports nothing at run time."""
    graph: dict[str, set[str]] = {}
    for path in kernel_modules():
        name = module_name(path)
        if name == "patrol":
            continue
        edges = graph.setdefault(name, set())
        for _, module, names in imports(path):
            if module.startswith("patrol."):
                edges.update(m for m in resolve(module, names) if m != name)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_layers_import_only_downwards() -> None:
    problems = layer_violations()
    assert not problems, "layer violations:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles()
    assert not found, "import cycles (each group imports itself through the others):\n" + "\n".join(
        " <-> ".join(group) for group in found)


def test_the_root_imports_nothing_at_run_time() -> None:
    """``import patrol`` loads no other module: the surface is lazy (client commands
    start without pluggy or the web stack)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    eager = [node.lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
             and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
             and not (isinstance(node, ast.Import) and node.names[0].name == "importlib")
             and not (isinstance(node, ast.ImportFrom) and node.module == "typing")]
    assert not eager, f"patrol/__init__.py imports at module level on lines {eager}"


def test_the_top_level_holds_only_layers_the_wiring_and_the_entry_points() -> None:
    loose = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py")
    assert loose == ["__init__.py", "__main__.py", "daemon.py"], loose
    layers = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert layers == ["api", "cli", "config", "engine", "plugin", "testing", "util", "web"], layers
    for layer in layers:
        assert ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text())), \
            f"patrol/{layer}/__init__.py must say what the layer owns and may import"


def plugin_modules() -> list[Path]:
    return sorted([*ROOT.glob("plugins/*/patrol_*.py"), *ROOT.glob("examples/plugins/*/patrol_*.py")])


def test_plugins_import_only_the_surface() -> None:
    """First-party and example plugins import ``patrol`` only (their tests also
    ``patrol.testing``), and only names the surface offers."""
    import patrol

    problems = []
    tests = sorted([*ROOT.glob("plugins/*/tests/*.py"), *ROOT.glob("examples/plugins/*/tests/*.py")])
    for path in [*plugin_modules(), *tests]:
        allowed = {"patrol"} | ({"patrol.testing"} if "tests" in path.parts else set())
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [(node.module or "", [a.name for a in node.names])]
            for module, names in modules:
                if module.split(".")[0] != "patrol":
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if module not in allowed:
                    problems.append(f"{where}: imports {module} (plugins import only from patrol)")
                elif module == "patrol":
                    problems += [f"{where}: patrol has no {n!r}" for n in names if not hasattr(patrol, n)]
    assert not problems, "\n".join(problems)


def test_no_module_over_400_lines_and_no_class_over_300() -> None:
    too_big = []
    for path in [*kernel_modules(), *plugin_modules()]:
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_big.append(f"{path.relative_to(ROOT)}:{node.lineno}: class {node.name} has {size} lines "
                                   f"(at most {MAX_CLASS_LINES})")
    assert not too_big, "\n".join(too_big)
