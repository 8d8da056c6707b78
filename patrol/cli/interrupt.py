"""Ctrl-C ends the commands that run until it (``status --watch``, ``events -f``, ``logs -f``).

A process started with SIGINT ignored (from a script's ``trap '' INT``, ``nohup``, or a
parent that ignored it while starting children) inherits that, and Python then never
installs its KeyboardInterrupt handler: Ctrl-C did nothing and only SIGKILL ended the
command (a CI run met it: a test runner's worker had SIGINT ignored). As ``watch(1)``
does, these commands take SIGINT themselves.
"""

from __future__ import annotations

import signal
import threading


def stop_on_ctrl_c() -> None:
    """SIGINT raises KeyboardInterrupt from now on, whatever this process inherited."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
