"""The launcher: the few steps between Patrol's spawn and an app's program, in the child.

An app with ``user``, ``limits`` or ``nice`` is started through this file, run as a
script (``python -I -S launcher.py SETTINGS... -- program args...``;
:func:`arguments` builds that line, :mod:`patrol.engine.spawn` starts it), which sets
everything and then ``exec``\\ s the app's program in the same process, so the program
never runs a single instruction without its limits, priority and user.

Why not in Patrol: doing these steps between ``fork`` and ``exec`` in Patrol's own
child (``preexec_fn``, or ``subprocess``'s ``user=``/``group=``) makes ``subprocess``
fork instead of vfork, which copies Patrol's page tables and blocks the loop (measured:
0.2 -> 16 ms per spawn with a 400 MB heap). And not after the spawn (``prlimit`` on the
child's pid): the program would run its first instructions with Patrol's limits, long
enough to fork or allocate past an ``nproc`` or ``as`` limit. The launcher costs the
child some 10 ms of its own start (Python's start-up: this file imports only ``os``,
``resource`` and ``sys``; the env file's reader when there is one) and Patrol nothing.

The order: limits whose hard value must be raised, ``nproc`` and the nice value first,
while the process may still do so (root); then the user's groups, group and user;
then the env file, read *as that user* (a path the app's user can plant a symlink at
must not let it read what only root may); then every limit as configured, last, so
the launcher itself is not bound by ``nofile`` or ``as``; then ``exec``. A failing
step writes its reason to the status pipe Patrol handed over (closed by the ``exec``
when all went well) and exits 127.
"""

from __future__ import annotations

import os
import resource
import sys

TYPE_CHECKING = False  # typing itself costs the launcher more than all of its work
if TYPE_CHECKING:
    from typing import Callable, NoReturn, Sequence

#: the launcher's exit status when a step failed (as a shell's "cannot execute")
FAILED = 127
#: ends the launcher's settings; the program and its arguments follow
END = "--"


def arguments(status: int, *, limits: dict[str, tuple[int, int]], nice: int | None, uid: int | None = None,
              gid: int | None = None, groups: Sequence[int] = (), env_file: str = "",
              keep: Sequence[str] = ()) -> list[str]:
    """The launcher's settings as its command line (before :data:`END`): ``limits`` by
    ``RLIMIT_*`` name, a negative value for unlimited; ``keep``: variables the env file
    must not change."""
    line = [f"status={status}"]
    line += [f"limit={name}:{soft}:{hard}" for name, (soft, hard) in limits.items()]
    if nice is not None:
        line.append(f"nice={nice}")
    if uid is not None:
        line += [f"uid={uid}", f"gid={gid}", "groups=" + ",".join(str(g) for g in groups)]
    if env_file:
        line.append(f"env-file={env_file}")
    return line + [f"keep={name}" for name in keep] + [END]


def main(argv: list[str]) -> NoReturn:
    settings: dict[str, list[str]] = {}
    position = argv.index(END)
    for setting in argv[:position]:
        name, _, value = setting.partition("=")
        settings.setdefault(name, []).append(value)
    program = argv[position + 1:]
    status = int(settings["status"][0])
    os.set_inheritable(status, False)  # the exec closes it: end of file means success
    step = "start"
    try:
        limits: dict[int, tuple[int, int]] = {}
        for entry in settings.get("limit", ()):
            name, soft_text, hard_text = entry.split(":")
            limits[getattr(resource, name)] = (_rlim(int(soft_text)), _rlim(int(hard_text)))
        step = "load the env file's reader"
        # before the user switch: that user may not be able to read Python's own library
        read_env_file = _env_file_reader() if "env-file" in settings else None
        step = "raise the resource limits"
        for number, (soft, hard) in limits.items():
            _, current = resource.getrlimit(number)
            if number == resource.RLIMIT_NPROC:
                resource.setrlimit(number, (soft, hard))  # before the user switch, which checks it
            elif _above(hard, current):
                resource.setrlimit(number, (min(resource.getrlimit(number)[0], hard), hard))
        if "nice" in settings:
            step = f"set the nice value {settings['nice'][0]}"
            os.setpriority(os.PRIO_PROCESS, 0, int(settings["nice"][0]))
        if "uid" in settings:
            uid, gid = int(settings["uid"][0]), int(settings["gid"][0])
            step = f"switch to uid {uid} gid {gid}"
            os.setgroups([int(g) for g in settings["groups"][0].split(",") if g])
            os.setgid(gid)
            os.setuid(uid)
        env = dict(os.environ)
        if read_env_file is not None:
            step = "read the env file"
            keep = set(settings.get("keep", ()))
            env.update((k, v) for k, v in read_env_file(settings["env-file"][0]).items() if k not in keep)
        step = "set the resource limits"
        for number, (soft, hard) in limits.items():
            resource.setrlimit(number, (soft, hard))
        step = f"execute {program[0]}"
        os.execve(program[0], program, env)
    except (OSError, ValueError) as exc:
        _fail(status, f"cannot {step}: {getattr(exc, 'strerror', None) or exc}")
    except Exception as exc:  # noqa: BLE001 - the env file's own error names the file and the line
        _fail(status, str(exc) if type(exc).__name__ == "EnvFileError" else f"cannot {step}: {exc}")
    _fail(status, "cannot execute: exec returned")


def _env_file_reader() -> Callable[[str], dict[str, str]]:
    """Patrol's env-file reader (imported only when there is a file: it is not free)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from patrol.util.dotenv import read_env_file

    return read_env_file


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


if __name__ == "__main__":
    main(sys.argv[1:])
