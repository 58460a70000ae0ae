"""Child processes that stop when the process that started them is gone.

The runner starts its workers, the local twin and the rehearsal's pods each in a session of
their own, so Ctrl-C in the terminal reaches only the runner, which then stops them in order.
The price: when the runner dies without that chance (SIGKILL, the OOM killer, a terminal
closed on a runner that could not handle SIGHUP), nothing would tell them, and a fleet would
serve and workers would load the target with nobody listening. So every such child holds a
lifeline to its parent:

- the parent passes its pid in ``QWEN_STRESS_PARENT_PID`` (``child_env``); the child calls
  ``hold()`` first thing, which checks the parent is still there and then watches
  ``os.getppid()`` every half second (a dead parent's children are re-parented), on every POSIX
  system;
- on Linux, also ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel signals the child the moment
  its parent dies. The kernel ties that signal to the *thread* that forked the child, so the
  parent asks for it (``QWEN_STRESS_PARENT_DEATH_SIGNAL``) only when it spawns from its main OS
  thread, which lives as long as the process; a child spawned from a worker thread relies on the
  watch alone.

Either way the child gets SIGTERM (its own graceful stop runs), and if it is still there
``GRACE_S`` later it exits without further ceremony. Pure standard library: the twin, the
Locust workers and the pods all call it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping

PARENT_ENV = "QWEN_STRESS_PARENT_PID"
DEATH_SIGNAL_ENV = "QWEN_STRESS_PARENT_DEATH_SIGNAL"
POLL_S = 0.5
GRACE_S = 10.0
"""After the SIGTERM, how long a child may take to stop on its own (a fleet drains, a worker
ships its last records) before it exits at once."""
EXIT_PARENT_GONE = 75
"""Exit code of a child that had to be stopped because its parent was gone (``EX_TEMPFAIL``)."""
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _on_main_thread() -> bool:
    """Whether the calling OS thread is the process's first one (it lives as long as the process).

    Compared by native id, not ``threading.main_thread()``: under gevent's monkey-patching every
    greenlet runs on the main OS thread, and that is what the kernel sees.
    """
    return threading.get_native_id() == os.getpid()


def child_env() -> dict[str, str]:
    """Variables to add to a child's environment so that its ``hold()`` watches this process."""
    env = {PARENT_ENV: str(os.getpid())}
    if sys.platform == "linux" and _on_main_thread():
        env[DEATH_SIGNAL_ENV] = "1"
    return env


def _arm_death_signal(sig: signal.Signals) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; whether the kernel accepted it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def _watch(parent: int, armed: bool, on_lost: Callable[[], None], grace_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    if not armed:  # an armed death signal has already delivered the SIGTERM
        on_lost()
    time.sleep(grace_s)
    os._exit(EXIT_PARENT_GONE)


def hold(
    environ: Mapping[str, str] | None = None,
    *,
    on_lost: Callable[[], None] = _terminate_self,
    grace_s: float = GRACE_S,
) -> bool:
    """Stop this process when the parent named in the environment is gone; whether one was named.

    Call it before the work starts (a parent that died while this process was starting is
    noticed at once), but after gevent's monkey-patching, if any (importing Locust patches):
    patching with a real thread already running deadlocks. ``on_lost`` runs when the parent is
    gone (default: SIGTERM to self).
    """
    env = os.environ if environ is None else environ
    text = env.get(PARENT_ENV, "")
    if not text.isdigit():
        return False
    parent = int(text)
    armed = env.get(DEATH_SIGNAL_ENV) == "1" and _arm_death_signal(signal.SIGTERM)
    # The parent may have died before the death signal was armed: then nobody else will say so.
    if os.getppid() != parent:
        armed = False
    watcher = threading.Thread(
        target=_watch, args=(parent, armed, on_lost, grace_s), name="lifeline", daemon=True
    )
    watcher.start()
    return True
