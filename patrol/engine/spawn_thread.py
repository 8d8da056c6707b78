"""Starting children from a thread whose descriptor table holds almost nothing.

Every ``fork``/``vfork`` copies the parent's descriptor table (the kernel takes a
reference on every open file), and the new program's ``exec`` (or ``close_fds``) drops
them all again. Patrol holds two output pipes per running app, so at 5,000 apps each
spawn copied and closed ~10,000 descriptors: measured 3.3 ms per ``Popen`` with 10,000
open pipes against 0.3 ms with a dozen, on the loop, for every start and restart.

Linux lets one thread of a process leave the table it shares with the others
(``unshare(CLONE_FILES)``: the thread gets a private copy). :class:`SpawnThread` does
that once, closes its copy of everything but what it needs, and from then on starts
each child with ``Popen`` in that small table. The child's own descriptors (its
stdin/stdout/stderr, the launcher's status pipe) are handed over for each spawn with
``SCM_RIGHTS`` on a socket pair, in the order given, and closed again in the thread
once the child has them. The child is still Patrol's child (a thread's children belong
to the whole process: the reaper waits for them as before, ``/proc/self/task/*/children``
lists them), and the loop still waits for the spawn to finish before it goes on, so the
pid is known before any exit status can be reaped.

Two hazards come with a second table, and both are closed here:

* a descriptor number means something else in each table. Python code that closes a
  descriptor by number must never run in this thread for an object the rest of Patrol
  made (a socket or file collected by the garbage collector while this thread happens
  to allocate would close the *thread's* descriptor of that number, and leak the real
  one). The thread allocates nothing while it waits, and turns the collector off while
  it serves a spawn (the loop is blocked waiting for it meanwhile);
* a signal's C handler writes to the wakeup descriptor (``signal.set_wakeup_fd``) by
  number, in whichever thread the kernel picked, and the kernel sends a child's SIGCHLD
  to the thread that started it: this one. The thread keeps its copy of the wakeup
  descriptor (:class:`patrol.engine.signals.SignalRouter` sets one, so that the loop
  wakes up), and a new one (a new loop's) makes :func:`current` start a new thread.

Where ``unshare`` is refused (a seccomp profile, as Docker's default one without
``CAP_SYS_ADMIN``) or not available, :func:`current` is ``None`` and children are
started from the loop's own thread, as before: slower with many apps, otherwise the same.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import resource
import signal
import socket
import threading
from typing import Callable, Sequence, TypeVar

import structlog

from patrol.engine import signals

log = structlog.get_logger("patrol.engine")

T = TypeVar("T")

#: ``unshare(2)`` flag: give the calling thread its own copy of the descriptor table
CLONE_FILES = 0x00000400
#: how long the thread may take to set itself up before Patrol spawns without it
READY_TIMEOUT = 5.0


class SpawnThreadGone(RuntimeError):
    """The spawn thread ended (it never should): later spawns run on the caller's thread."""


def _unshare_files() -> None:
    """Give the calling thread a private descriptor table; ``OSError`` when refused."""
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    if unshare is not None:
        unshare(CLONE_FILES)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "unshare"):
        raise OSError(errno.ENOSYS, "unshare is not available")
    if libc.unshare(CLONE_FILES) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _wakeup_fd() -> tuple[int, int]:
    """The signal wakeup descriptor set now (-1: none) and which one it is; main thread only.

    Patrol's own (a :class:`~patrol.engine.signals.SignalRouter`'s) is known without a
    look. Another (``loop.add_signal_handler``'s) is read by setting it: for the moment
    between the two calls a signal on another thread wakes nothing, but the main thread
    is running Python right then, and so runs the signal's handler at once anyway."""
    own = signals.wakeup_fd()
    if own[0] >= 0:
        return own
    fd = signal.set_wakeup_fd(-1)
    if fd >= 0:
        signal.set_wakeup_fd(fd)
    return fd, -1


class SpawnThread:
    """One daemon thread with a small descriptor table, starting children on request.

    :meth:`run` is synchronous: the caller blocks (without the GIL) until the child is
    started or the start failed, exactly as it would on a ``Popen`` of its own.
    """

    def __init__(self, *, wakeup: tuple[int, int] = (-1, -1)) -> None:
        self.pid = os.getpid()
        #: the signal wakeup descriptor it keeps a copy of (-1: none), and which one it
        #: is (:func:`patrol.engine.signals.wakeup_fd`); see :func:`current`
        self.wakeup = wakeup
        self._caller, thread_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._thread_fd = thread_end.detach()  # a number only: the thread makes its own socket of it
        self._request = threading.Lock()
        self._request.acquire()
        self._reply = threading.Lock()
        self._reply.acquire()
        self._serialize = threading.Lock()  # one spawn at a time, whoever calls
        self._job: tuple[Callable[[list[int]], object], int] | None = None
        self._outcome: tuple[bool, object] = (True, None)
        self._ready = threading.Event()
        self._setup_error: OSError | None = None
        self._alive = False
        self.thread = threading.Thread(target=self._serve, name="patrol-spawner", daemon=True)

    # -- the caller's side -------------------------------------------------------------

    def start(self) -> bool:
        """Start the thread; False (and everything closed) when it could not set up."""
        self.thread.start()
        ready = self._ready.wait(READY_TIMEOUT)
        os.close(self._thread_fd)  # the caller's copy; the thread has its own by now
        if not ready or self._setup_error is not None:
            if not ready:
                self._setup_error = OSError(errno.ETIMEDOUT, "the spawn thread did not start")
            self._caller.close()
            return False
        self._alive = True
        return True

    @property
    def native_id(self) -> int | None:
        """The thread's id (its table is ``/proc/self/task/<id>/fd``)."""
        return self.thread.native_id

    @property
    def setup_error(self) -> OSError | None:
        return self._setup_error

    def run(self, make: Callable[[list[int]], T], fds: Sequence[int]) -> T:
        """``make(copies)`` in the thread, where ``copies`` are the thread's own
        descriptors for ``fds`` (same order, close-on-exec, closed after ``make``).

        What ``make`` raises is raised here. :class:`SpawnThreadGone` when the thread
        is not running (``make`` did not run: the caller may start the child itself).
        """
        with self._serialize:
            if not self._alive or not self.thread.is_alive():
                self._alive = False
                raise SpawnThreadGone("the spawn thread is not running")
            self._job = (make, len(fds))
            try:
                if fds:
                    socket.send_fds(self._caller, [b"s"], list(fds))
                else:
                    self._caller.send(b"s")
            except OSError:
                self._job = None
                raise
            self._request.release()
            self._await_reply()
            ok, value = self._outcome
            self._outcome = (True, None)
            if not ok:
                assert isinstance(value, BaseException)
                raise value
            return value  # type: ignore[return-value]  # what make() returned: a T

    def _await_reply(self) -> None:
        while not self._reply.acquire(timeout=1.0):
            if not self.thread.is_alive():  # it died mid-spawn (it never should): do not wait forever
                self._alive = False
                raise OSError(errno.EIO, "the spawn thread ended during a spawn")

    def stop(self) -> None:
        """End the thread (tests; a running Patrol keeps it until it exits)."""
        with self._serialize:
            if not self._alive:
                return
            self._alive = False
            self._job = None
            self._request.release()
            self.thread.join(READY_TIMEOUT)
            self._caller.close()

    # -- the thread's side -------------------------------------------------------------

    def _serve(self) -> None:
        collecting = gc.isenabled()
        gc.disable()  # as while serving (see _loop); the caller waits for _ready meanwhile
        try:
            _unshare_files()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM, fileno=self._thread_fd)
            self._close_inherited(sock.fileno())
        except OSError as exc:
            self._setup_error = exc
            return
        finally:
            self._ready.set()  # allocates: still with the collector off
            if collecting:
                gc.enable()
        try:
            self._loop(sock)
        finally:
            sock.close()  # here, in this thread's table

    def _close_inherited(self, own: int) -> None:
        """Close the thread's copies of Patrol's descriptors, but 0-2, ``own`` and the
        ones to keep (the signal wakeup descriptor)."""
        keep = sorted({0, 1, 2, own, *(self.wakeup[:1] if self.wakeup[0] >= 0 else ())})
        top = max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], keep[-1] + 1)
        for low, high in zip(keep, [*keep[1:], top]):
            if high > low + 1:
                os.closerange(low + 1, high)

    def _loop(self, sock: socket.socket) -> None:
        # Waiting allocates nothing the collector tracks, and serving runs with the
        # collector off: no finalizer of an object made elsewhere can run in this table.
        while True:
            self._request.acquire()
            collecting = gc.isenabled()
            gc.disable()
            try:
                job = self._job
                if job is None:
                    return
                self._job = None
                self._outcome = self._serve_one(sock, *job)
            finally:
                if collecting:
                    gc.enable()
                self._reply.release()

    @staticmethod
    def _serve_one(sock: socket.socket, make: Callable[[list[int]], object], count: int) -> tuple[bool, object]:
        copies: list[int] = []
        try:
            _, copies, flags, _ = socket.recv_fds(sock, 16, max(count, 1), socket.MSG_CMSG_CLOEXEC)
            if len(copies) != count or flags & socket.MSG_CTRUNC:
                raise OSError(errno.EMFILE, "the child's descriptors did not all arrive")
            return True, make(copies)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            return False, exc
        finally:
            for fd in copies:
                try:
                    os.close(fd)
                except OSError:
                    pass


_current: SpawnThread | None = None
_refused: tuple[int, str] | None = None  # (pid, why) once the thread could not be set up


def current() -> SpawnThread | None:
    """This process's spawn thread, started on first use from the main thread; None
    where it cannot run (spawn on the caller's thread then)."""
    global _current, _refused
    pid = os.getpid()
    if _refused is not None and _refused[0] == pid:
        return None
    if os.environ.get("PATROL_SPAWN_THREAD", "1") == "0":
        _refused = (pid, "PATROL_SPAWN_THREAD=0")
        return None
    if threading.current_thread() is not threading.main_thread():
        return None  # the wakeup descriptor can only be read from the main thread
    wakeup = _wakeup_fd()
    if _current is not None and _current.pid == pid and _current.thread.is_alive():
        if _current.wakeup == wakeup:
            return _current
        _current.stop()  # a new wakeup descriptor (a new loop's): the thread's copy is the old one
    spawner = SpawnThread(wakeup=wakeup)
    if not spawner.start():
        _refused = (pid, str(spawner.setup_error))
        log.info("children are started from the loop's thread (a separate descriptor table for spawning "
                 "is not available)", error=str(spawner.setup_error))
        _current = None
        return None
    _current = spawner
    return spawner
