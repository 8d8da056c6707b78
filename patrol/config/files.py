"""What a config promises about files on this machine, looked at by ``patrol check``.

Loading a config never looks at the machine (the same file may be checked on one host
and run on another); ``patrol check`` does, for what an operator would want to hear
about before the first start. Only warnings: a binary may be installed after ``patrol check`` ran, and an app that
cannot start is a supervised failure (shown with its reason), not a reason to refuse the
whole config. Only ``stat`` and ``access`` are used, which never block on what they find
(a FIFO or a device is never opened).
"""

from __future__ import annotations

import os
import stat
from patrol.plugin.model import PatrolConfig
from patrol.config.reader import Report, child


def machine_warnings(config: PatrolConfig, source: str) -> list[str]:
    """Every app whose program does not exist or cannot be executed, one line each."""
    report = Report(source)
    for app in config.apps.values():
        problem = program_problem(app.program)
        if problem:
            report.warn(child(child("apps", app.id), "binary"), f"{problem}: the app cannot start")
    return report.warnings


def program_problem(path: str) -> str | None:
    """Why ``path`` cannot be executed, or None when it can (as far as ``stat`` tells)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    except NotADirectoryError:
        return f"{path} does not exist (a part of the path is not a directory)"
    except OSError as exc:
        return f"{path} cannot be looked at ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return f"{path} is a directory, not a program"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable (chmod +x?)"
    return None
