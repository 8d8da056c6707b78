"""What an exit asks for (a restart) runs at the end of the reap a SIGCHLD ran, ahead of
what the exit merely queued on the loop (the state file's commit, log pipes' end of file).

Real children of a fresh interpreter (it plays Patrol: ``waitpid(-1)`` would also collect
the test process's own children), real SIGCHLD through Patrol's signal router.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from patrol.testing import PatrolProcess

SCENARIO = r"""
import asyncio, json, os, signal, subprocess
from patrol.engine.reaper import Reaper
from patrol.engine.signals import SignalRouter

async def scenario():
    loop = asyncio.get_running_loop()
    reaper = Reaper(loop, SignalRouter(loop))
    reaper.install()
    order = []
    ended = loop.create_future()

    def job(name):
        def run():
            order.append(name)
            if name == "queued by the exit" and not ended.done():
                ended.set_result(None)
        return run

    def exited_on_signal(status):
        loop.call_soon(job("queued by the exit"))  # as the state file's commit is
        reaper.soon(job("restart"))
        order.append("reported")

    # 1. the reap a SIGCHLD runs: the restart comes before what the exit queued
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    reaper.watch(child.pid, exited_on_signal, owner="test")
    child.kill()
    await asyncio.wait_for(ended, 30)
    signalled = list(order)

    # 2. a reap someone else calls (a keepalive reporting a death): its caller is still
    #    on the stack when the reap ends, so the restart waits for the loop's next turn
    order.clear()
    inside_caller = []

    def exited_in_caller(status):
        reaper.soon(job("restart"))
        order.append("reported")

    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    reaper.uninstall()  # so that only the direct reap below reports it
    reaper.watch(other.pid, exited_in_caller, owner="test")
    other.kill()
    os.waitid(os.P_PID, other.pid, os.WEXITED | os.WNOWAIT)  # a zombie now, not reaped
    reaper.reap()
    inside_caller = list(order)
    for _ in range(3):
        await asyncio.sleep(0)
    return {"signalled": signalled, "inside_caller": inside_caller, "after": list(order)}

print(json.dumps(asyncio.run(scenario())))
"""


def _run() -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def test_a_restart_an_exit_asks_for_runs_before_what_the_exit_queued() -> None:
    result = _run()
    assert result["signalled"] == ["reported", "restart", "queued by the exit"]
    # outside the SIGCHLD's reap nothing changes: the job is the loop's, after the caller returned
    assert result["inside_caller"] == ["reported"], "the restart ran under the caller of reap()"
    assert result["after"] == ["reported", "restart"]


#: Two children exited before the SIGCHLD's reap runs: the first one's restart is done,
#: then what its exit queued, and only then is the second exit looked for.
TWO_EXITS = r"""
import asyncio, json, os, signal, subprocess
from patrol.engine.reaper import Reaper
from patrol.engine.signals import SignalRouter

async def scenario():
    loop = asyncio.get_running_loop()
    reaper = Reaper(loop, SignalRouter(loop))
    reaper.install()
    order, children = [], [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(2)]
    ended = loop.create_future()

    def exited(name):
        def report(status):
            order.append(f"reported {name}")
            def queued():
                order.append(f"queued by {name}")
                if len(order) == 6 and not ended.done():
                    ended.set_result(None)
            loop.call_soon(queued)
            reaper.soon(lambda: order.append(f"restart {name}"))
        return report

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # one SIGCHLD for both, one reap
    for name, child in zip("ab", children):
        reaper.watch(child.pid, exited(name), owner=name)
        child.kill()
    for child in children:  # both are zombies before the loop runs the SIGCHLD's reap
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    await asyncio.wait_for(ended, 30)
    return order

print(json.dumps(asyncio.run(scenario())))
"""


def test_a_reap_that_restarted_leaves_its_next_look_to_the_loop() -> None:
    """Apps crashing as fast as they start must not keep one reap (and the loop) busy:
    after a restart the reap ends, and the next exit is reported at a later turn."""
    done = subprocess.run([sys.executable, "-c", TWO_EXITS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    order = json.loads(done.stdout)
    first, second = (order[0][-1], order[3][-1])
    assert {first, second} == {"a", "b"}, order
    assert order == [f"reported {first}", f"restart {first}", f"queued by {first}",
                     f"reported {second}", f"restart {second}", f"queued by {second}"]

#: ``patrol run`` in this Python, each ``waitpid(-1)`` (a walk of every child) and each
#: spawn written to $LOOKS_FILE as it happens; only recorded, never replaced.
COUNTING_PATROL = r"""
import os, runpy, subprocess, sys

out = os.open(os.environ["LOOKS_FILE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
real_waitpid = os.waitpid
real_execute = subprocess.Popen._execute_child

def waitpid(pid, options):
    try:
        found = real_waitpid(pid, options)
    except ChildProcessError:  # no child at all: a look too
        found = (0, 0)
        if pid == -1:
            os.write(out, b"look 0\n")
        raise
    if pid == -1:
        os.write(out, b"look %d\n" % found[0])
    return found

def execute_child(self, *args, **kwargs):
    real_execute(self, *args, **kwargs)
    # runs in the spawn thread, whose descriptor table has no ``out``: open it there
    spawned = os.open(os.environ["LOOKS_FILE"], os.O_WRONLY | os.O_APPEND)
    os.write(spawned, b"spawn %d\n" % self.pid)
    os.close(spawned)

os.waitpid = waitpid
subprocess.Popen._execute_child = execute_child
sys.argv = ["patrol", *sys.argv[1:]]
runpy.run_module("patrol", run_name="__main__", alter_sys=True)
"""


def test_a_crashed_app_is_started_again_before_the_reaper_looks_for_more_exits(patrol, tmp_path) -> None:
    """Between the look that reaped the crashed run and the new run's spawn there is no
    look that finds nothing (each walks every child of Patrol: ~0.9 ms at 5,000 apps):
    the reaper's next look comes after the spawn, and the death report does not look
    again for a status the reaper handed it."""
    wrapper, looks = tmp_path / "counting_patrol.py", tmp_path / "looks"
    wrapper.write_text(COUNTING_PATROL)
    process = PatrolProcess(tmp_path, patrol.config(apps={"a": patrol.app(1)}), patrol.marker,
                            env={"LOOKS_FILE": str(looks)}, command=[sys.executable, str(wrapper)])
    patrol.processes.append(process)  # cleaned up by the fixture, by pid
    process.start()
    old = process.running_pid("a", ready=True)
    os.kill(old, signal.SIGKILL)
    new = process.running_pid("a", other_than=old)
    events = looks.read_text().split("\n")
    reaped = events.index(f"look {old}")
    spawned = events.index(f"spawn {new}")
    assert reaped < spawned, events
    between = events[reaped + 1:spawned]
    assert between == [], f"looks between the reap of {old} and the spawn of {new}: {between}"
