"""Reading files that a live Patrol changes underneath the test."""

from __future__ import annotations

from pathlib import Path


def files_contain(directory: Path, pattern: str, text: str) -> bool:
    """Does any file under ``directory`` matching ``pattern`` contain ``text``?

    Patrol rotates, prunes and relinks log files while a test reads them: a file gone
    between the listing and the read, and a current-log link being made (a dot-name
    renamed over the link at once), are skipped.
    """
    for path in directory.rglob(pattern):
        if path.name.startswith("."):
            continue
        try:
            if text in path.read_text(errors="replace"):
                return True
        except (FileNotFoundError, IsADirectoryError):
            continue
    return False
