"""The master's side of a run: drive the plan, sample, collect, write the run directory.

A ``PlanRun`` runs a Locust master in this process (as a library, so the plan driver reads live
verdicts and worker vitals directly), waits for the workers, drives the plan step by step,
samples the client and the target every few seconds, receives every record batch, and writes
``config.json``, ``requests.jsonl``, ``timeline.jsonl`` and ``events.jsonl`` as it goes. The
same code runs in a local run (``local_runner.LocalRun``: workers are processes it starts), in
the load-test stack's master pod and in the rehearsal (``loadtest.pod``: workers are pods, or
the rehearsal's processes, that connect on their own). Where the workers live is a
``WorkerFleet``; nothing else differs.

This module imports Locust, which monkey-patches the standard library for gevent: import it
only from code that runs a master (the ``run`` command's local path, the master pod), never
from code that the emulator, reports or the cloud CLI share.
"""

from __future__ import annotations

import logging
import platform
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal, Protocol

import gevent
from gevent.event import Event
from locust import __version__ as locust_version
from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner

from loadtest import live, run_files
from loadtest.collector import Collector
from loadtest.llm_user import ArrivalUser, LLMUser
from loadtest.plans import Step, inflight_shares
from loadtest.redact import Redactor
from loadtest.run_spec import RunSpec
from loadtest.schema import (
    EventBase,
    Finished,
    PlanInfo,
    RunConfig,
    RunnerFailed,
    StepEnd,
    StepStart,
    TargetMetrics,
    TimelineSample,
    Versions,
    WorkerLost,
    WorkersReady,
)
from loadtest.worker import RATE_MESSAGE, RECORDS_MESSAGE

WORKER_CONNECT_TIMEOUT_S = 90.0
DRAIN_S = 30.0
"""When load goes down or the run ends, users finish the request they are in (up to this long)
instead of being killed mid-stream: nothing sent is lost from the records."""
VERDICT_GRACE_S = 1.0
"""Wait this long after a step before judging it, so the batches in flight are counted."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""A closed terminal (SIGHUP) stops a run as Ctrl-C does: the workers stop and the report is
written, instead of the runner dying with its workers still loading the target."""

State = Literal["starting", "waiting_for_workers", "running", "stopping", "finished"]


class RunError(RuntimeError):
    """The run could not start (workers never connected, target refused to start...)."""


@dataclass(frozen=True)
class ExitedWorker:
    """A worker process that ended, as its fleet saw it."""

    pid: int
    returncode: int


class WorkerFleet(Protocol):
    """Where the Locust workers run: processes started here, or pods that connect by themselves."""

    count: int
    """Workers the plan waits for."""
    log_dir: Path | None
    """Where their logs are, for messages (None: elsewhere, e.g. pod logs)."""

    def start(self, master_host: str, master_port: int, user_class: str) -> None:
        """Start the workers (a no-op for workers that start on their own)."""

    def exited(self) -> list[ExitedWorker]:
        """Worker processes that ended since the last call (none for workers seen only remotely)."""

    def any_alive(self) -> bool | None:
        """Whether a worker process is still running; None when the fleet cannot tell."""

    def stop(self) -> None:
        """End what ``start`` started (called after the users have stopped)."""

    def kill(self) -> None:
        """End the workers at once (a second Ctrl-C)."""


class _Stop:
    """Why the run is stopping (set once: the plan's end, a signal, a request, a lost fleet)."""

    def __init__(self) -> None:
        self.event = Event()
        self.reason = ""
        self.interrupted = False

    def set(self, reason: str, interrupted: bool) -> None:
        if not self.event.is_set():
            self.reason, self.interrupted = reason, interrupted
            self.event.set()


def _master_options() -> Any:
    parser = get_empty_argument_parser(add_help=False, default_config_files=[])
    setup_parser_arguments(parser)  # type: ignore[no-untyped-call]
    # Rebalancing moves a lost worker's users to the others, so the step keeps its load.
    return parser.parse_args(["--enable-rebalancing"])


def package_version() -> str:
    """The installed qwen-stress version (``unknown`` when run from an uninstalled tree)."""
    try:
        return version("qwen-stress")
    except PackageNotFoundError:
        return "unknown"


class PlanRun:
    """One plan on one Locust master: workers, plan driver, sampler, collector, run files."""

    def __init__(
        self,
        spec: RunSpec,
        workers: WorkerFleet,
        *,
        bind_host: str = "127.0.0.1",
        port: int,
        worker_connect_timeout_s: float = WORKER_CONNECT_TIMEOUT_S,
    ) -> None:
        self.spec = spec
        self.dir = spec.out_dir
        self.run_id = spec.run_id or spec.out_dir.name
        self.workers = workers
        self.bind_host = bind_host
        self.port = port
        self.worker_connect_timeout_s = worker_connect_timeout_s
        self.t0 = 0.0
        self.stop = _Stop()
        self.state: State = "starting"
        self.events: run_files.JsonlWriter | None = None
        self._lost: set[int] = set()
        self._expected_exit = False
        self.step_index = -1
        self.step: Step | None = None
        self.step_started = 0.0
        self.last_sample: TimelineSample | None = None
        self.redact = Redactor.from_env(spec.api_key_env)
        """For text the target sends back into the run's files (a poll's error)."""
        self.runner: MasterRunner | None = None
        self.signalled = False
        """A signal stopped the run (not the plan, nor a request): nobody may be waiting."""
        self.error: str | None = None
        """What failed, when the runner itself did (a crashed plan driver or sampler)."""
        self.redact = Redactor.from_env(spec.api_key_env)
        """For text the target sends back into the run's files (a poll's error, a traceback)."""

    # -- small helpers -------------------------------------------------------------------
    def now_s(self) -> float:
        """Seconds since the run started (the clock of every file in the run directory)."""
        return time.time() - self.t0 if self.t0 else 0.0

    def t(self) -> float:
        """``now_s`` as events record it (to the millisecond)."""
        return round(self.now_s(), 3)

    def event(self, event: EventBase) -> None:
        """Append one event to ``events.jsonl``."""
        if self.events is not None:
            self.events.write(event)

    def _guarded(self, where: str, body: Callable[..., None], *args: Any) -> None:
        """Run one of the run's greenlets so that an exception in it ends the run.

        Unguarded, a greenlet that raised would leave ``run`` waiting for a stop that never
        comes, with the workers still loading the target and no report.
        """
        try:
            body(*args)
        except Exception as err:
            self._failed(where, err)

    def _failed(self, where: str, err: Exception) -> None:
        """Record a failure of the runner (events, log, console) and stop the run."""
        log = self.dir / "logs" / "runner.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("a", encoding="utf-8") as f:
            f.write(f"{where} failed at {self.now_s():.1f} s\n")
            # An exception may quote what the target sent: the key stays out of the log.
            f.writelines(self.redact(line) for line in traceback.format_exception(err))
        detail = self.redact.clip(f"{type(err).__name__}: {err}", 300)
        failure = f"the {where} failed ({detail})"
        self.error = self.error or failure  # the first failure is the cause
        self.event(RunnerFailed(t=self.t(), where=where, error=detail))
        live.note(f"error: {failure}; stopping the workers and writing the report ({log})")
        self.stop.set(failure, interrupted=True)

    def request_stop(self, reason: str, *, urgent: bool = False) -> None:
        """Stop the plan (the users finish their requests); ``urgent``: end the workers now."""
        if self.stop.event.is_set() and urgent:
            live.note("stopping without waiting for workers")
            self.workers.kill()
            return
        self.stop.set(reason, interrupted=True)

    def _on_signal(self) -> None:
        self.signalled = True
        if self.stop.event.is_set():
            live.note("second interrupt: stopping without waiting for workers")
            self.workers.kill()
            return
        live.note(
            "interrupted: stopping the workers and writing the report (Ctrl-C again to force)"
        )
        self.stop.set("interrupted (Ctrl-C, SIGTERM or SIGHUP)", interrupted=True)

    @contextmanager
    def signals(self) -> Iterator[None]:
        """While inside, SIGINT, SIGTERM and SIGHUP stop the run (twice: at once)."""
        handlers = [gevent.signal_handler(s, self._on_signal) for s in STOP_SIGNALS]
        try:
            yield
        finally:
            for handler in handlers:
                handler.cancel()

    # -- set-up -----------------------------------------------------------------------------
    def _config(self) -> RunConfig:
        spec = self.spec
        return RunConfig(
            run_id=self.run_id,
            started_at=self.t0,
            started_at_iso=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.t0)),
            plan=PlanInfo(
                name=spec.plan.name,
                summary=spec.plan.summary,
                options=spec.plan_options,
                open_loop=spec.plan.open_loop,
            ),
            time_scale=spec.time_scale,
            target=spec.target.info(),
            model=spec.model,
            workload=spec.workload,
            slo=spec.slo,
            workers=spec.workers,
            api_key_env=spec.api_key_env,
            max_inflight=spec.max_inflight,
            command=spec.command,
            versions=Versions(
                qwen_stress=package_version(),
                locust=locust_version,
                python=platform.python_version(),
            ),
            options=spec.options,
            loadgen=spec.loadgen,
        )

    def _wait_for_workers(self, runner: MasterRunner) -> None:
        deadline = time.monotonic() + self.worker_connect_timeout_s
        where = f"; see {self.workers.log_dir}" if self.workers.log_dir else ""
        while len(runner.clients.ready) < self.spec.workers:
            dead = self.workers.exited()
            if dead:
                raise RunError(
                    f"a Locust worker exited before connecting (code {dead[0].returncode}){where}"
                )
            if self.stop.event.is_set():
                return
            if time.monotonic() > deadline:
                raise RunError(
                    f"only {len(runner.clients.ready)} of {self.spec.workers} Locust workers "
                    f"connected within {self.worker_connect_timeout_s:.0f} s{where}"
                )
            gevent.sleep(0.1)

    # -- while running ------------------------------------------------------------------------
    def _apply(
        self, step: Step, runner: MasterRunner, previous: gevent.Greenlet | None
    ) -> gevent.Greenlet | None:
        """Set the offered load of a step (users, or the arrival rate of the generators)."""
        if previous is not None and not previous.dead:
            previous.join(timeout=5)
            previous.kill()
        if step.rate is None:
            assert step.users is not None
            return gevent.spawn(runner.start, step.users, step.spawn_rate)
        generators = max(self.spec.workers, 1)
        greenlet = None
        if runner.target_user_count != generators:
            greenlet = gevent.spawn(runner.start, generators, float(generators))
        # Each worker process gets its own share of the cap, which its users share.
        workers = [c for c in runner.clients.all if c.state != STATE_MISSING]
        shares = inflight_shares(self.spec.max_inflight, len(workers))
        for worker, share in zip(workers, shares, strict=True):
            runner.send_message(
                RATE_MESSAGE,
                {"rate_per_user": step.rate / generators, "max_inflight": share},
                client_id=worker.id,
            )
        return greenlet

    def _check_workers(self, runner: MasterRunner, collector: Collector) -> None:
        """Report each worker that died or stopped answering, once; the run goes on."""
        for gone in self.workers.exited():
            if self._expected_exit:
                continue
            index = collector.worker_of_pid(gone.pid)
            key = index if index is not None else -gone.pid
            if key in self._lost:
                continue
            self._lost.add(key)
            if index is not None:
                collector.forget(index)
            code = gone.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self.event(WorkerLost(t=self.t(), worker=index, pid=gone.pid, detail=f"process {how}"))
            live.note(f"worker {index} (pid {gone.pid}) {how}; its users move to the others")
        connected = 0
        for client_id, node in list(runner.clients.items()):
            index = runner.worker_indexes.get(client_id)
            if node.state != STATE_MISSING:
                connected += 1
            elif index is not None and index not in self._lost:
                self._lost.add(index)
                collector.forget(index)
                self.event(WorkerLost(t=self.t(), worker=index, detail="missed its heartbeats"))
                live.note(f"worker {index} missed its heartbeats; its users move to the others")
        alive = self.workers.any_alive()
        if self._expected_exit:
            return
        if alive is False or (alive is None and connected == 0):
            self.stop.set("every Locust worker was lost", interrupted=True)

    def _sample(self, runner: MasterRunner, collector: Collector) -> TimelineSample:
        step = self.step
        try:
            target = self.spec.target.poll()
        except Exception as err:  # a flaky metrics endpoint must not end the run
            target = TargetMetrics(target_poll_error=self.redact.clip(str(err), 200))
        return TimelineSample(
            t=self.t(),
            step=self.step_index,
            phase=step.phase if step else None,
            users=runner.user_count,
            target_users=step.users if step else None,
            rate=step.rate if step else None,
            workers=len(runner.clients.ready)
            + len(runner.clients.running)
            + len(runner.clients.spawning),
            requests_total=collector.total,
            failures_total=collector.failed,
            **dict(collector.window(max(self.spec.sample_interval_s, 1.0))),
            **dict(collector.vitals()),
            **target.model_dump(exclude_none=True),
        )

    def _sampler(
        self, runner: MasterRunner, collector: Collector, timeline: run_files.JsonlWriter
    ) -> None:
        interval = self.spec.sample_interval_s
        next_at = time.monotonic() + interval
        while True:
            gevent.sleep(max(next_at - time.monotonic(), 0.05))
            next_at += interval
            self._check_workers(runner, collector)
            self.last_sample = self._sample(runner, collector)
            timeline.write(self.last_sample, exclude_none=True)

    def _step_end(self, runner: MasterRunner, passed: bool | None) -> StepEnd:
        """The step in progress ends now; with the users running, for a closed-loop step."""
        closed = self.step is not None and self.step.rate is None
        return StepEnd(
            t=self.t(),
            index=self.step_index,
            live_pass=passed,
            users_reached=runner.user_count if closed else None,
        )

    def _drive(self, runner: MasterRunner, collector: Collector) -> None:
        spec = self.spec
        plan_steps = spec.plan.steps()
        try:
            step: Step | None = next(plan_steps)
        except StopIteration:
            return
        spawn: gevent.Greenlet | None = None
        # One clock reading ends a step and starts the next: read twice, a busy machine can
        # pause this process between the two, and a request sent in that gap would be after
        # one step's end yet before the next one's start.
        boundary = self.t()
        while step is not None:
            self.step_index += 1
            self.step, self.step_started = step, boundary
            collector.begin_step(boundary)
            self.event(
                StepStart(
                    t=boundary,
                    index=self.step_index,
                    phase=step.phase,
                    users=step.users,
                    rate=step.rate,
                    planned_s=step.duration_s,
                )
            )
            live.note(
                f"step {self.step_index}: {step.phase} at {step.label} for {step.duration_s:.0f} s"
            )
            spawn = self._apply(step, runner, spawn)
            if self.stop.event.wait(timeout=step.duration_s):
                self.event(self._step_end(runner, None))
                return
            self.stop.event.wait(timeout=VERDICT_GRACE_S)
            passed = collector.step_passes(spec.slo, max(self.now_s() - self.step_started, 1e-3))
            end = self._step_end(runner, passed)
            self.event(end)
            boundary = end.t
            if self.stop.event.is_set():
                return
            try:
                step = plan_steps.send(passed)
            except StopIteration:
                step = None
        self.stop.set(spec.plan.stop_reason or "the plan finished", interrupted=False)

    def _last_sample(
        self, runner: MasterRunner, collector: Collector, timeline: run_files.JsonlWriter
    ) -> None:
        self.last_sample = self._sample(runner, collector)
        timeline.write(self.last_sample, exclude_none=True)

    # -- tear-down ----------------------------------------------------------------------------
    def _stop_workers(self, runner: MasterRunner) -> None:
        """Stop the users (they finish their requests), then end the workers.

        A worker ships its last records before it reports "stopped" to the master, so once the
        master has seen every worker stop, nothing is left to lose and the workers can go.
        (Locust's own quit would wait out the worker's post-stop pause of ``stop_timeout``.)
        """
        self._expected_exit = True
        stopper = gevent.spawn(runner.stop)
        stopper.join(timeout=DRAIN_S + 10)
        stopper.kill()
        self.workers.stop()
        runner.quit()

    def run(self) -> None:
        """Run the plan end to end; the run directory is complete when this returns.

        Whatever happens once the master listens (a stop, workers that never connect, an
        error), the workers are stopped, ``finished`` is written and the files are closed.
        """
        spec = self.spec
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # checked by the CLI; something changed since
            raise RunError(f"cannot create the run directory {self.dir}: {err.strerror}") from None
        logging.getLogger("locust").setLevel(logging.WARNING)
        self.t0 = time.time()
        run_files.write_json(self.dir / run_files.CONFIG, self._config())
        self.events = run_files.JsonlWriter(self.dir / run_files.EVENTS)
        requests = run_files.JsonlWriter(self.dir / run_files.REQUESTS)
        timeline = run_files.JsonlWriter(self.dir / run_files.TIMELINE)
        collector = Collector(requests, self.t0)
        user_class = ArrivalUser if spec.plan.open_loop else LLMUser
        env = Environment(
            user_classes=[user_class],
            host=spec.target.base_url,
            parsed_options=_master_options(),
            stop_timeout=DRAIN_S,
        )
        runner = env.create_master_runner(self.bind_host, self.port)
        assert isinstance(runner, MasterRunner)
        self.runner = runner
        runner.register_message(RECORDS_MESSAGE, collector.on_message)
        sampler = None
        display = live.LiveLine(self, enabled=spec.show_live)
        try:
            self.state = "waiting_for_workers"
            self.workers.start(self.bind_host, self.port, user_class.__name__)
            self._wait_for_workers(runner)
            if self.stop.event.is_set():
                return
            self.event(WorkersReady(t=self.t(), workers=spec.workers))
            self.state = "running"
            sampler = gevent.spawn(
                self._guarded, "sampler", self._sampler, runner, collector, timeline
            )
            display.start()
            driver = gevent.spawn(self._guarded, "plan driver", self._drive, runner, collector)
            self.stop.event.wait()
            driver.kill()
        finally:
            self.state = "stopping"
            display.stop()
            self._stop_workers(runner)
            if sampler is not None:
                sampler.kill()
                # What broke the sampler may break this one too: the files must still close.
                self._guarded(
                    "last timeline sample", self._last_sample, runner, collector, timeline
                )
            self.event(
                Finished(
                    t=self.t(),
                    interrupted=self.stop.interrupted or not self.stop.reason,
                    stop_reason=self.stop.reason or "the run failed",
                )
            )
            for writer in (requests, timeline, self.events):
                writer.close()
            self.state = "finished"
