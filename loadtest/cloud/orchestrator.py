"""One cloud run's stack, from creation to removal, destroyed whatever happens in between.

Order: pre-flight (nothing created if it fails) -> journal entry -> create and ``up`` the
ephemeral stack -> hand its outputs to ``follow`` (the runner: it drives the plan in the master
pod and brings the run files home) -> ``finally``: refresh and destroy (retried with backoff; a
locked stack is cancelled first), remove the stack, close the journal entry. Every step is said
on the terminal, with a heartbeat while Pulumi works, and written to ``events.jsonl``
(``stack_up``, ``stack_destroyed``...): nobody should have to wonder whether they still pay.

Signals (SIGINT, SIGTERM, SIGHUP): the first stops the plan (``follow`` sees ``stop.requested``),
lets the run files come home and destroys; a second skips the collection and destroys at once.
An ``up`` in progress is never interrupted (the CLI runs in its own session, see
``automation.py``): stopping it midway would leave resources Pulumi does not know about, so the
destroy follows as soon as it returns. A destroy in progress is never interrupted either.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from domain.topology import LOADTEST_PROJECT
from loadtest import run_files
from loadtest.cloud.journal import Journal, JournalEntry
from loadtest.cloud.teardown import destroy_stack
from loadtest.cloud.workspace import (
    CREATED_AT_TAG,
    EXPIRES_AT_TAG,
    RUN_ID_TAG,
    EphemeralStack,
    Program,
    StackRef,
    Workspace,
    ephemeral_stack_name,
)
from loadtest.schema import (
    EventBase,
    FollowFailed,
    StackCreating,
    StackDestroyed,
    StackDestroyFailed,
    StackError,
    StackUp,
)

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RETRY_DELAYS_S = (10.0, 30.0, 90.0)
"""Waits between destroy attempts (four attempts in all): AWS throttling and eventual
consistency (a node group still draining) usually clear within a couple of minutes."""
HEARTBEAT_S = 30.0
COLLECT_GRACE_S = 180.0
"""After the stack's lifetime is over, how long ``follow`` may still bring files home."""
URGENT_GRACE_S = 10.0
"""After a second signal, how long ``follow`` gets to return before the destroy starts anyway."""

EXIT_STACK_LEFT = 3
"""Exit code when a load-test stack could not be destroyed and removed (it may still cost)."""


class MasterLostError(RuntimeError):
    """``follow`` lost the Locust master for good (pod gone, port-forward beyond repair)."""


class PreflightError(RuntimeError):
    """A check before any load failed; nothing was created. The message says what to fix."""


class StopRequest:
    """What ``follow`` polls: stop the plan (``requested``); skip the collection (``urgent``)."""

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._urgent = threading.Event()
        self.reason = ""

    def request(self, reason: str, *, urgent: bool = False) -> None:
        """Ask ``follow`` to stop (the first reason is kept)."""
        if not self._requested.is_set():
            self.reason = reason
            self._requested.set()
        if urgent:
            self._urgent.set()

    @property
    def requested(self) -> bool:
        """The plan must stop; the run files may still be collected."""
        return self._requested.is_set()

    @property
    def urgent(self) -> bool:
        """Stop collecting too: the stack is about to be destroyed."""
        return self._urgent.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (or ``timeout``); whether one was."""
        return self._requested.wait(timeout)


class Follow(Protocol):
    """The runner's part: drive the plan in the master pod and bring the run directory home.

    Called once, in a worker thread, with the ephemeral stack's outputs. It returns when the
    plan is over, or soon after ``stop.requested`` (having stopped the plan and collected the
    files), or at once on ``stop.urgent``. ``MasterLostError`` says the master is gone for good;
    any other exception is reported as the run's failure. Either way the stack is destroyed.
    """

    def __call__(self, outputs: Mapping[str, Any], stop: StopRequest) -> None:
        """Follow the run until it ends or ``stop`` says so."""


@dataclass(frozen=True)
class StackRequest:
    """What the ephemeral stack of one run is made of (the runner fills it from the plan)."""

    run_id: str
    platform_stack: StackRef
    program: Program
    """The inline Pulumi program (``loadtest.cloud.stack.program(spec)``)."""
    run_dir: Path
    lifetime_s: float
    """How long the stack may live: ``up``, the plan, collection and margins. After it,
    ``follow`` is stopped and ``reap`` may destroy the stack."""
    config: Mapping[str, str] = field(default_factory=dict)
    """Plain stack config (``aws:region``...); secrets go to ``program`` in memory."""
    hourly_usd: float | None = None
    """What the stack costs per hour while it exists, when the caller knows (cost line)."""


@dataclass
class Outcome:
    """How the stack's life went; ``teardown_error`` set means it may still exist and cost."""

    stack: str
    created: bool = False
    up_s: float | None = None
    lifetime_s: float | None = None
    usd: float | None = None
    interrupted: bool = False
    stop_reason: str = ""
    error: str | None = None
    """Why the run failed (``up``, ``follow`` or a master lost); None if it did not."""
    teardown_error: str | None = None

    @property
    def exit_code(self) -> int:
        """``EXIT_STACK_LEFT`` if the stack may remain, 130 if interrupted, 1 if failed, else 0."""
        if self.teardown_error:
            return EXIT_STACK_LEFT
        if self.interrupted:
            return 130
        return 1 if self.error else 0


def say_on_stderr(text: str) -> None:
    """Print a progress line; a terminal that went away (SIGHUP) must not stop the teardown."""
    with contextlib.suppress(OSError, ValueError):
        print(f"[stack] {text}", file=sys.stderr, flush=True)


class EventLog:
    """Appends events to the run's ``events.jsonl`` (``t``: seconds since ``t0``)."""

    def __init__(self, run_dir: Path, t0: float | None = None) -> None:
        self.path = run_dir / run_files.EVENTS
        self.t0 = time.time() if t0 is None else t0

    def __call__(self, event: Callable[..., EventBase], **fields: Any) -> None:
        """Write one event now (a run directory that cannot be written is said, not fatal)."""
        now = time.time()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = run_files.JsonlWriter(self.path)
            try:
                writer.write(event(t=round(now - self.t0, 3), at=round(now, 3), **fields))
            finally:
                writer.close()
        except OSError as err:
            say_on_stderr(f"could not write {self.path}: {err}")


def finish_commands(stack: EphemeralStack | None, name: str) -> str:
    """The commands that finish a teardown by hand."""
    where = f"-C {stack.work_dir} " if stack is not None else ""
    return (
        f"pulumi {where}destroy --stack {name} --yes && pulumi {where}stack rm {name} --yes "
        f"(or: qwen-stress reap --stack {name})"
    )


class Orchestrator:
    """Creates, hands over and destroys one run's ephemeral stack."""

    def __init__(
        self,
        workspace: Workspace,
        journal: Journal,
        *,
        events: Callable[..., None],
        say: Callable[[str], None] = say_on_stderr,
        log_path: Path | None = None,
        retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
        heartbeat_s: float = HEARTBEAT_S,
        collect_grace_s: float = COLLECT_GRACE_S,
        urgent_grace_s: float = URGENT_GRACE_S,
    ) -> None:
        self.workspace = workspace
        self.journal = journal
        self.event = events
        self.say = say
        self.log_path = log_path
        self.retry_delays_s = retry_delays_s
        self.heartbeat_s = heartbeat_s
        self.collect_grace_s = collect_grace_s
        self.urgent_grace_s = urgent_grace_s
        self.stop = StopRequest()
        self.phase = "preflight"
        self._signals = 0
        self._interrupted = False
        self._wake = threading.Event()

    # -- signals --------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self._signals += 1
        self._wake.set()
        self._interrupted = True
        if self.phase == "destroying":
            self.say(
                f"{name}: the stack is being destroyed; waiting until it is gone (a kill -9 now "
                "would leave it to `qwen-stress reap`)"
            )
            return
        if self._signals == 1:
            self.stop.request(f"interrupted ({name})")
            if self.phase == "creating":
                self.say(
                    f"{name}: the load will not start. `pulumi up` finishes first (stopping it "
                    "midway would leave resources Pulumi does not know about), then the stack "
                    "is destroyed."
                )
            elif self.phase == "running":
                self.say(
                    f"{name}: stopping the plan and bringing the run files home, then destroying "
                    f"the stack ({name} again: destroy at once)"
                )
            else:
                self.say(f"{name}: stopping before anything is created")
            return
        self.stop.request(f"interrupted ({name})", urgent=True)
        self.say(f"{name} again: skipping the collection; the stack is destroyed now")

    @contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal.signal works only there; the caller's own handling stays
            return
        previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- helpers ----------------------------------------------------------------------------
    def _output(self, what: str) -> Callable[[str], None]:
        """Pulumi's lines: to the terminal (indented) and to the run's Pulumi log."""

        def on_output(line: str) -> None:
            if not line.strip():
                return
            self.say(f"  {what}: {line.rstrip()}")
            if self.log_path is not None:
                try:
                    self.log_path.parent.mkdir(parents=True, exist_ok=True)
                    with self.log_path.open("a", encoding="utf-8") as log:
                        log.write(f"{what}: {line.rstrip()}\n")
                except OSError:
                    pass

        return on_output

    def _blocking(self, what: str, work: Callable[[], T]) -> T:
        """Run ``work`` in a thread, saying every ``heartbeat_s`` that it still runs.

        The main thread stays free for the signal handlers; ``work`` is never abandoned.
        """
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = work()
            except BaseException as err:  # re-raised in the calling thread
                box["error"] = err

        started = time.monotonic()
        worker = threading.Thread(target=target, name=what, daemon=True)
        worker.start()
        next_beat = started + self.heartbeat_s
        while worker.is_alive():
            worker.join(timeout=min(1.0, self.heartbeat_s))
            if worker.is_alive() and time.monotonic() >= next_beat:
                self.say(f"still {what} ({_clock(time.monotonic() - started)})")
                next_beat += self.heartbeat_s
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value

    def _follow(
        self, follow: Follow, outputs: Mapping[str, Any], expires_at: float
    ) -> BaseException | None:
        """Run ``follow`` until it returns; past the stack's lifetime, stop it, then give up."""
        box: dict[str, BaseException] = {}

        def target() -> None:
            try:
                follow(outputs, self.stop)
            except BaseException as err:  # reported by the main thread
                box["error"] = err

        worker = threading.Thread(target=target, name="follow", daemon=True)
        worker.start()
        urgent_since: float | None = None
        while worker.is_alive():
            worker.join(timeout=0.2)
            now = time.time()
            if now >= expires_at and not self.stop.requested:
                self.say("the run outlived the stack's planned lifetime: stopping it")
                self.stop.request("the stack's lifetime is over")
            if now >= expires_at + self.collect_grace_s and not self.stop.urgent:
                self.stop.request("the stack's lifetime is over", urgent=True)
            if self.stop.urgent:
                urgent_since = urgent_since or time.monotonic()
                if time.monotonic() - urgent_since >= self.urgent_grace_s:
                    self.say(
                        f"the run did not stop within {self.urgent_grace_s:.0f} s; "
                        "destroying the stack anyway"
                    )
                    break
        return box.get("error")

    # -- the life of the stack ---------------------------------------------------------------
    def run(
        self,
        request: StackRequest,
        follow: Follow,
        preflight: Callable[[], None] | None = None,
    ) -> Outcome:
        """Pre-flight, create, follow, destroy; the outcome says what happened.

        Raises ``PreflightError`` (nothing created) and ``ValueError`` for a run id that
        cannot name a stack; everything after the journal entry ends in the teardown.
        """
        name = ephemeral_stack_name(request.platform_stack, request.run_id)
        outcome = Outcome(stack=name)
        if self.log_path is None:
            self.log_path = request.run_dir / "logs" / "pulumi.log"
        with self._signal_handlers():
            if preflight is not None:
                self.say("pre-flight: checking the platform before creating anything")
                preflight()
            if self.stop.requested:
                outcome.interrupted, outcome.stop_reason = True, self.stop.reason
                return outcome
            self._run_stack(request, name, follow, outcome)
        return outcome

    def _run_stack(
        self, request: StackRequest, name: str, follow: Follow, outcome: Outcome
    ) -> None:
        created_at = time.time()
        expires_at = created_at + request.lifetime_s
        self.journal.open(
            JournalEntry(
                stack=name,
                project=LOADTEST_PROJECT,
                run_id=request.run_id,
                platform_stack=str(request.platform_stack),
                run_dir=str(request.run_dir),
                work_dir="",
                created_at=created_at,
                expires_at=expires_at,
                pid=os.getpid(),
                host=socket.gethostname(),
            )
        )
        outcome.created = True
        stack: EphemeralStack | None = None
        try:
            self.phase = "creating"
            self.event(
                StackCreating,
                stack=name,
                project=LOADTEST_PROJECT,
                platform_stack=str(request.platform_stack),
                expires_at=round(expires_at, 3),
            )
            self.say(
                f"creating the load-test stack {name} (project {LOADTEST_PROJECT}); it is "
                "destroyed when the run ends, whatever happens"
            )
            if self.stop.wait(0):
                return  # interrupted before the stack existed: the teardown finds nothing
            stack = self.workspace.create(name, request.program)
            self.journal.update(name, "creating", work_dir=stack.work_dir)
            stack.set_tags(
                {
                    RUN_ID_TAG: request.run_id,
                    CREATED_AT_TAG: f"{created_at:.0f}",
                    EXPIRES_AT_TAG: f"{expires_at:.0f}",
                }
            )
            if request.config:
                stack.set_config(request.config)
            up_started = time.monotonic()
            outputs = self._blocking("creating the stack", lambda: stack.up(self._output("up")))
            outcome.up_s = round(time.monotonic() - up_started, 1)
            self.journal.update(name, "up")
            self.event(
                StackUp, stack=name, project=LOADTEST_PROJECT, up_s=outcome.up_s,
                outputs=sorted(outputs),
            )  # fmt: skip
            self.say(f"stack {name} is up ({_clock(outcome.up_s)})")
            if self.stop.requested:
                self.say("not starting the load: a stop was requested while the stack was made")
            else:
                self.phase = "running"
                failure = self._follow(follow, outputs, expires_at)
                if failure is not None:
                    lost = isinstance(failure, MasterLostError)
                    outcome.error = f"{'master lost' if lost else 'the run failed'}: {failure}"
                    self.event(FollowFailed, master_lost=lost, error=str(failure)[:500])
                    self.say(outcome.error)
        except Exception as err:
            outcome.error = outcome.error or f"{type(err).__name__}: {err}"
            self.event(StackError, stack=name, phase=self.phase, error=str(err)[:500])
            self.say(f"{self.phase} failed: {err}")
        finally:
            self.phase = "destroying"
            outcome.interrupted = self._interrupted
            outcome.stop_reason = self.stop.reason
            self._teardown(name, stack, request, created_at, outcome)

    def _teardown(
        self,
        name: str,
        stack: EphemeralStack | None,
        request: StackRequest,
        created_at: float,
        outcome: Outcome,
    ) -> None:
        """Destroy and remove the stack (``teardown.py``), then say and record how it went."""
        self.journal.update(name, "destroying")
        self.say(f"destroying the load-test stack {name}")
        started = time.monotonic()

        def wait(delay: float) -> None:
            self._wake.clear()  # a signal now cuts the wait short: retry at once
            self._wake.wait(delay)

        result = destroy_stack(
            self.workspace,
            name,
            stack,
            say=self.say,
            output=self._output,
            wait=wait,
            retry_delays_s=self.retry_delays_s,
            blocking=self._blocking,
        )
        lifetime = time.time() - created_at
        outcome.lifetime_s = round(lifetime, 1)
        if request.hourly_usd is not None:
            outcome.usd = round(request.hourly_usd * lifetime / 3600.0, 4)
        if result.dropped:
            self.say(
                f"pending creates dropped from the state (they may exist in AWS; find them by "
                f"the tag run-id={request.run_id}): {', '.join(result.dropped)}"
            )
        if result.gone:
            self.event(
                StackDestroyed,
                stack=name,
                lifetime_s=outcome.lifetime_s,
                destroy_s=round(time.monotonic() - started, 1),
                attempts=result.attempts,
                pending_creates_dropped=result.dropped,
                usd=outcome.usd,
                hourly_usd=request.hourly_usd,
            )
            self.journal.close(name)
            cost = f", about ${outcome.usd:.2f}" if outcome.usd is not None else ""
            self.say(
                f"stack {name} destroyed and removed: it lived {_clock(lifetime)}{cost}; "
                "nothing of it is left to pay for"
            )
            return
        commands = finish_commands(result.stack or stack, name)
        outcome.teardown_error = (
            f"the load-test stack {name} may still exist and cost money: {result.error}. "
            f"Finish the job with: {commands}"
        )
        self.journal.update(name, "destroy_failed", error=(result.error or "")[:500])
        self.event(
            StackDestroyFailed, stack=name, attempts=result.attempts,
            error=(result.error or "")[:500], command=commands, lifetime_s=outcome.lifetime_s,
        )  # fmt: skip
        self.say(outcome.teardown_error)


def _clock(seconds: float) -> str:
    """``95`` -> ``1m35s``."""
    whole = max(0, math.floor(seconds))
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
