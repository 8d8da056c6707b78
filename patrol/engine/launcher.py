"""The launcher: the few steps between Patrol's spawn and an app's program, in the child.

An app with ``user``, ``limits`` or ``nice`` is started through this program (Patrol
runs ``python -I -S -c BOOT program args...``; :mod:`patrol.engine.spawn` builds it),
which sets everything and then ``exec``\\ s the app's program in the same process, so
the program never runs a single instruction without its limits, priority and user.

Why not in Patrol: doing these steps between ``fork`` and ``exec`` in Patrol's own
child (``preexec_fn``, or ``subprocess``'s ``user=``/``group=``) makes ``subprocess``
fork instead of vfork, which copies Patrol's page tables and blocks the loop (measured:
0.2 -> 19 ms per spawn with a 400 MB heap). And not after the spawn (``prlimit`` on the
child's pid): the program would run its first instructions with Patrol's limits, long
enough to fork or allocate past an ``nproc`` or ``as`` limit. The launcher costs the
child some 10 ms of its own start and Patrol nothing.

The order: limits whose hard value must be raised, ``nproc`` and the nice value first,
while the process may still do so (root); then the user's groups, group and user;
then the env file, read *as that user* (a path the app's user can plant a symlink at
must not let it read what only root may); then every limit as configured, last, so
the launcher itself is not bound by ``nofile`` or ``as``; then ``exec``. A failing
step writes its reason to the status pipe Patrol handed over (closed by the ``exec``
when all went well) and exits 127.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any, NoReturn

from patrol.util.dotenv import EnvFileError, read_env_file

#: the environment variable carrying the launch's settings (removed before the exec)
SPEC_VARIABLE = "PATROL_LAUNCH"
#: the launcher's exit status when a step failed (as a shell's "cannot execute")
FAILED = 127


def main() -> NoReturn:
    spec: dict[str, Any] = json.loads(os.environ.pop(SPEC_VARIABLE))
    status = int(spec["status"])
    os.set_inheritable(status, False)  # the exec closes it: end of file means success
    step = "start"
    try:
        limits = {getattr(resource, name): (_rlim(soft), _rlim(hard)) for name, (soft, hard) in spec["limits"].items()}
        step = "raise the resource limits"
        for number, (soft, hard) in limits.items():
            _, current = resource.getrlimit(number)
            if number == resource.RLIMIT_NPROC:
                resource.setrlimit(number, (soft, hard))  # before the user switch, which checks it
            elif _above(hard, current):
                resource.setrlimit(number, (min(resource.getrlimit(number)[0], hard), hard))
        if spec.get("nice") is not None:
            step = f"set the nice value {spec['nice']}"
            os.setpriority(os.PRIO_PROCESS, 0, int(spec["nice"]))
        if spec.get("uid") is not None:
            step = f"switch to uid {spec['uid']} gid {spec['gid']}"
            os.setgroups([int(g) for g in spec["groups"]])
            os.setgid(int(spec["gid"]))
            os.setuid(int(spec["uid"]))
        env = dict(os.environ)
        if spec.get("env_file"):
            keep = set(spec.get("keep", ()))
            env.update((k, v) for k, v in read_env_file(spec["env_file"]).items() if k not in keep)
        step = "set the resource limits"
        for number, (soft, hard) in limits.items():
            resource.setrlimit(number, (soft, hard))
        step = f"execute {sys.argv[1]}"
        os.execve(sys.argv[1], sys.argv[1:], env)
    except EnvFileError as exc:
        _fail(status, str(exc))
    except (OSError, ValueError) as exc:
        _fail(status, f"cannot {step}: {getattr(exc, 'strerror', None) or exc}")
    _fail(status, "cannot execute: exec returned")


def _rlim(value: int) -> int:
    return resource.RLIM_INFINITY if value < 0 else value


def _above(new: int, current: int) -> bool:
    """Is limit ``new`` higher than ``current`` (either may be RLIM_INFINITY)?"""
    if current == resource.RLIM_INFINITY:
        return False
    return new == resource.RLIM_INFINITY or new > current


def _fail(status: int, message: str) -> NoReturn:
    try:
        os.write(status, message.encode(errors="replace")[:4000])
    except OSError:
        pass
    os._exit(FAILED)
