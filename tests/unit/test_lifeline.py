"""Children stop when their parent is gone (``domain.lifeline``), with tiny processes.

Three generations: this test starts a *keeper* that makes itself the subreaper of what it
starts (``PR_SET_CHILD_SUBREAPER``), so an orphan comes back to it instead of to init and it
can read the orphan's exit status; the keeper starts a *parent*, which starts the *child* with
``lifeline.child_env()``; the keeper SIGKILLs the parent and times how long the child lives on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import psutil
import pytest

from domain import lifeline

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the keeper needs prctl")

CHILD = """
import signal, sys, time
from domain import lifeline
if sys.argv[1] == "stubborn":  # its own stop hangs: only the grace's end stops it
    signal.signal(signal.SIGTERM, lambda *_: None)
elif sys.argv[1] == "gevent":  # a Locust worker's situation: patched, the watch is a greenlet
    from gevent import monkey
    monkey.patch_all()
    import gevent
lifeline.hold(grace_s=1.0)
print("ready", flush=True)
while True:
    if sys.argv[1] == "gevent":
        gevent.sleep(0.1)
    else:
        time.sleep(0.1)
"""

PARENT = """
import os, subprocess, sys, threading, time
from domain import lifeline
started = []
def spawn():
    child = subprocess.Popen(
        [sys.executable, "-c", sys.argv[3], sys.argv[2]],
        env={**os.environ, **lifeline.child_env()},
        stdout=subprocess.PIPE,
    )
    child.stdout.readline()
    started.append(child.pid)
if sys.argv[1] == "thread":  # spawned from a thread that ends at once
    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join()
else:
    spawn()
print(started[0], flush=True)
time.sleep(60)
"""

KEEPER = """
import ctypes, json, os, signal, subprocess, sys, time
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
parent = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1], *sys.argv[2:]], stdout=subprocess.PIPE, text=True
)
child = int(parent.stdout.readline())
time.sleep(float(os.environ["KEEPER_SETTLE_S"]))
with open(f"/proc/{child}/stat") as stat:
    alive_before = stat.read().split()[2] != "Z"
os.kill(parent.pid, signal.SIGKILL)
parent.wait()
killed = time.monotonic()
_, status = os.waitpid(child, 0)  # the orphan is this process's child now
print(json.dumps({
    "alive_before": alive_before,
    "code": os.waitstatus_to_exitcode(status),
    "after_s": round(time.monotonic() - killed, 3),
}))
"""


def orphaned(spawn_from: str, child_mode: str, settle_s: float = 0.0) -> dict[str, Any]:
    """Kill the parent of a child started from ``spawn_from``; how and when the child ended."""
    done = subprocess.run(
        [sys.executable, "-c", KEEPER, PARENT, spawn_from, child_mode, CHILD],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "KEEPER_SETTLE_S": str(settle_s)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_child_started_from_the_main_thread_gets_sigterm_at_once() -> None:
    ended = orphaned("main", "plain")
    assert ended["code"] == -signal.SIGTERM
    assert ended["after_s"] < 0.5  # the kernel's death signal, not the half-second watch


@pytest.mark.slow
def test_a_child_started_from_a_thread_outlives_that_thread_but_not_its_process() -> None:
    # A death signal armed for the spawning thread would fire when that thread ends: the child
    # must still be there a second later, and go only when the process goes.
    ended = orphaned("thread", "plain", settle_s=1.0)
    assert ended["alive_before"] is True
    assert ended["code"] == -signal.SIGTERM
    assert ended["after_s"] < 2.0  # the watch's poll, every half second


@pytest.mark.slow
def test_a_child_whose_own_stop_hangs_exits_after_the_grace() -> None:
    ended = orphaned("main", "stubborn")
    assert ended["code"] == lifeline.EXIT_PARENT_GONE
    assert 1.0 <= ended["after_s"] < 3.0


@pytest.mark.slow
def test_a_gevent_patched_child_watching_from_a_greenlet_stops_too() -> None:
    ended = orphaned("thread", "gevent")  # no death signal: the greenlet's watch must see it
    assert ended["code"] == -signal.SIGTERM
    assert ended["after_s"] < 2.0


def test_a_parent_that_died_before_hold_is_noticed_at_once() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that is nobody's parent now
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "plain"],
        env={**os.environ, lifeline.PARENT_ENV: str(gone.pid), lifeline.DEATH_SIGNAL_ENV: "1"},
        stdout=subprocess.PIPE,
    )
    try:
        assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()


def test_hold_watches_only_a_parent_named_by_a_number() -> None:
    assert lifeline.hold({}) is False
    assert lifeline.hold({lifeline.PARENT_ENV: "not-a-pid"}) is False
    assert lifeline.hold({lifeline.PARENT_ENV: "-1"}) is False


def test_child_env_names_this_process_and_asks_for_the_signal_only_from_the_main_thread() -> None:
    env = lifeline.child_env()
    assert env[lifeline.PARENT_ENV] == str(os.getpid())
    assert env.get(lifeline.DEATH_SIGNAL_ENV) == "1"
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(1) as pool:
        from_thread = pool.submit(lifeline.child_env).result()
    assert lifeline.DEATH_SIGNAL_ENV not in from_thread
    assert psutil.Process().pid == int(from_thread[lifeline.PARENT_ENV])
