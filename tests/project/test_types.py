"""mypy over the kernel, the first-party plugins and the example plugins, in the suite.

The settings are in pyproject.toml ([tool.mypy]: every function annotated, unused
ignores refused); every remaining ``type: ignore`` says why on its line or the line
above. Plugins are checked as a plugin author's checker sees them: through the
``patrol`` surface and its ``py.typed`` marker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def checked_files() -> list[str]:
    plugins = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("plugins/*/patrol_*.py"))
    examples = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("examples/plugins/*/patrol_*.py"))
    return ["patrol", *plugins, *examples]


def test_mypy_finds_no_error_in_patrol_and_its_plugins() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *checked_files()], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_type_ignore_says_why() -> None:
    """An ignore names its error code and has a reason: on its line after it, or in a
    comment on the line above."""
    bare = []
    for name in checked_files():
        for path in ([ROOT / name] if name.endswith(".py") else sorted((ROOT / name).rglob("*.py"))):
            lines = path.read_text().splitlines()
            for n, line in enumerate(lines):
                if "type: ignore" not in line:
                    continue
                code, _, after = line.partition("type: ignore")
                reason = after.split("]", 1)[1].strip(" #") if "]" in after else ""
                above = lines[n - 1].strip() if n else ""
                if not after.startswith("[") or not (reason or above.startswith("#")):
                    bare.append(f"{path.relative_to(ROOT)}:{n + 1}: {line.strip()}")
    assert not bare, "type: ignore without an error code or a reason:\n" + "\n".join(bare)
