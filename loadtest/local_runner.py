"""Run a load plan with a real Locust master (in this process) and worker processes on loopback.

The master runs here as a library (``MasterRunner``), so the plan driver reads live verdicts
and worker vitals directly; workers are separate processes (``loadtest.worker``), each in its
own session so Ctrl-C reaches only this process, which then stops them in order and still
writes the report. Everything the run learns goes to the run directory as it happens.

This module imports Locust, which monkey-patches the standard library for gevent: import it
only from the ``run`` command, never from code that the emulator or reports share.
"""

from __future__ import annotations

import logging
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import gevent
from gevent.event import Event
from locust import __version__ as locust_version
from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner

from loadtest import live, run_files
from loadtest.collector import Collector
from loadtest.llm_user import ArrivalUser, LLMUser, UserSettings
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
from loadtest.targets import free_port
from loadtest.worker import RATE_MESSAGE, RECORDS_MESSAGE

WORKER_CONNECT_TIMEOUT_S = 90.0
DRAIN_S = 30.0
"""When load goes down or the run ends, users finish the request they are in (up to this long)
instead of being killed mid-stream: nothing sent is lost from the records."""
VERDICT_GRACE_S = 1.0
"""Wait this long after a step before judging it, so the batches in flight are counted."""


class RunError(RuntimeError):
    """The run could not start (workers never connected, target refused to start...)."""


@dataclass
class RunOutcome:
    """How the run ended, for the exit code and the last lines printed."""

    run_dir: Path
    interrupted: bool
    stop_reason: str
    error: str | None = None
    """What failed, when the runner itself did (a crashed plan driver or sampler)."""


class _Stop:
    """Why the run is stopping (set once, by the plan's end, Ctrl-C or a lost fleet)."""

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


class LocalRun:
    """One run: target, master, workers, plan driver, sampler, then the analysis."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.dir = spec.out_dir
        self.t0 = 0.0
        self.stop = _Stop()
        self.events: run_files.JsonlWriter | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._lost: set[int] = set()
        self._expected_exit = False
        self.step_index = -1
        self.step: Step | None = None
        self.step_started = 0.0
        self.last_sample: TimelineSample | None = None
        self.redact = Redactor.from_env(spec.api_key_env)
        """For text the target sends back into the run's files (a poll's error)."""
        self.error: str | None = None

    # -- small helpers -------------------------------------------------------------------
    def now_s(self) -> float:
        """Seconds since the run started (the clock of every file in the run directory)."""
        return time.time() - self.t0

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

    # -- set-up -----------------------------------------------------------------------------
    def _config(self) -> RunConfig:
        spec = self.spec
        return RunConfig(
            run_id=self.dir.name,
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
                qwen_stress=_package_version(),
                locust=locust_version,
                python=platform.python_version(),
            ),
            options=spec.options,
            loadgen=spec.loadgen,
        )

    def _start_workers(self, port: int, user_class: str) -> None:
        spec = self.spec
        settings = UserSettings(
            workload=spec.workload, model=spec.model, api_key_env=spec.api_key_env
        )
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        for i in range(spec.workers):
            log = (logs / f"worker-{i}.log").open("wb")
            self._logs.append(log)
            command = [sys.executable, "-m", "loadtest.worker", "--master-host", "127.0.0.1"]
            command += ["--master-port", str(port), "--user-class", user_class]
            self.processes.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        # On standard input, not in the environment: a workload can be megabytes. Written once
        # every worker is starting, so a large one is read by all of them in parallel.
        payload = settings.model_dump_json().encode()
        for process in self.processes:
            assert process.stdin is not None
            try:
                process.stdin.write(payload)
                process.stdin.close()
            except BrokenPipeError:
                pass  # it died at start: _wait_for_workers reports its exit code and log

    def _wait_for_workers(self, runner: MasterRunner) -> None:
        deadline = time.monotonic() + WORKER_CONNECT_TIMEOUT_S
        while len(runner.clients.ready) < self.spec.workers:
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise RunError(
                    f"a Locust worker exited before connecting (code {dead[0].returncode}); "
                    f"see {self.dir / 'logs'}"
                )
            if self.stop.event.is_set():
                return
            if time.monotonic() > deadline:
                raise RunError(
                    f"only {len(runner.clients.ready)} of {self.spec.workers} Locust workers "
                    f"connected within {WORKER_CONNECT_TIMEOUT_S:.0f} s; see {self.dir / 'logs'}"
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
        for process in self.processes:
            code = process.poll()
            if code is None or self._expected_exit:
                continue
            index = collector.worker_of_pid(process.pid)
            key = index if index is not None else -process.pid
            if key in self._lost:
                continue
            self._lost.add(key)
            if index is not None:
                collector.forget(index)
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self.event(
                WorkerLost(t=self.t(), worker=index, pid=process.pid, detail=f"process {how}")
            )
            live.note(f"worker {index} (pid {process.pid}) {how}; its users move to the others")
        for client_id, node in list(runner.clients.items()):
            index = runner.worker_indexes.get(client_id)
            if node.state == STATE_MISSING and index is not None and index not in self._lost:
                self._lost.add(index)
                collector.forget(index)
                self.event(WorkerLost(t=self.t(), worker=index, detail="missed its heartbeats"))
        alive = [p for p in self.processes if p.poll() is None]
        if not alive and not self._expected_exit:
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
        """Stop the users (they finish their requests), then end the worker processes.

        A worker ships its last records before it reports "stopped" to the master, so once the
        master has seen every worker stop, nothing is left to lose and the processes can go.
        (Locust's own quit would wait out the worker's post-stop pause of ``stop_timeout``.)
        """
        self._expected_exit = True
        stopper = gevent.spawn(runner.stop)
        stopper.join(timeout=DRAIN_S + 10)
        stopper.kill()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 5
        for process in self.processes:
            while process.poll() is None and time.monotonic() < deadline:
                gevent.sleep(0.05)
            if process.poll() is None:
                process.kill()
                process.wait()
        runner.quit()
        for log in self._logs:
            log.close()

    def _on_signal(self) -> None:
        if self.stop.event.is_set():
            live.note("second interrupt: stopping without waiting for workers")
            for process in self.processes:
                if process.poll() is None:
                    process.kill()
            return
        live.note(
            "interrupted: stopping the workers and writing the report (Ctrl-C again to force)"
        )
        self.stop.set("interrupted (Ctrl-C or SIGTERM)", interrupted=True)

    def run(self) -> RunOutcome:
        """Run the plan end to end; the run directory is complete when this returns.

        Whatever happens after the target starts (Ctrl-C, a worker that never connects, an
        error), the workers and the target are stopped and the files closed.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # checked by the CLI; something changed since
            raise RunError(f"cannot create the run directory {self.dir}: {err.strerror}") from None
        logging.getLogger("locust").setLevel(logging.WARNING)
        handlers = [
            gevent.signal_handler(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
        ]
        try:
            self.spec.target.start()
            if not self.stop.event.is_set():
                self._run_started_target()
        finally:
            self.spec.target.stop()
            for handler in handlers:
                handler.cancel()
        return RunOutcome(self.dir, self.stop.interrupted, self.stop.reason, self.error)

    def _run_started_target(self) -> None:
        spec = self.spec
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
        port = free_port()
        runner = env.create_master_runner("127.0.0.1", port)
        assert isinstance(runner, MasterRunner)
        runner.register_message(RECORDS_MESSAGE, collector.on_message)
        sampler = None
        display = live.LiveLine(self, enabled=spec.show_live)
        try:
            self._start_workers(port, user_class.__name__)
            self._wait_for_workers(runner)
            if self.stop.event.is_set():
                return
            self.event(WorkersReady(t=self.t(), workers=spec.workers))
            sampler = gevent.spawn(
                self._guarded, "sampler", self._sampler, runner, collector, timeline
            )
            display.start()
            driver = gevent.spawn(self._guarded, "plan driver", self._drive, runner, collector)
            self.stop.event.wait()
            driver.kill()
        finally:
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


def _package_version() -> str:
    try:
        return version("qwen-stress")
    except PackageNotFoundError:
        return "unknown"
