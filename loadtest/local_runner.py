"""A local run: the target and the workers as processes on loopback, the plan on a local master.

``LocalRun`` is the process-spawning half: it starts the target (the autoscaling twin, or a
test server) and ``local_workers.LocalWorkers``, and hands the plan to ``plan_run.PlanRun``,
the half shared with the master pod and the rehearsal (plan driver, sampler, collector, run
files). Whatever happens once the target starts, the workers and the target are stopped and
the files closed.

This module imports Locust (through ``plan_run``): import it only from the ``run`` command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtest.llm_user import UserSettings
from loadtest.local_workers import LocalWorkers
from loadtest.plan_run import PlanRun, RunError
from loadtest.run_spec import RunSpec
from loadtest.targets import free_port

__all__ = ["LocalRun", "RunError", "RunOutcome"]


@dataclass
class RunOutcome:
    """How the run ended, for the exit code and the last lines printed."""

    run_dir: Path
    interrupted: bool
    stop_reason: str
    error: str | None = None
    """What failed, when the runner itself did (a crashed plan driver or sampler)."""


class LocalRun:
    """One run on this machine: target, workers, then ``PlanRun``."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.dir = spec.out_dir
        settings = UserSettings(
            workload=spec.workload, model=spec.model, api_key_env=spec.api_key_env
        )
        self.workers = LocalWorkers(spec.workers, settings, self.dir / "logs")
        self.plan = PlanRun(spec, self.workers, port=free_port())

    def run(self) -> RunOutcome:
        """Run the plan end to end; the run directory is complete when this returns."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # checked by the CLI; something changed since
            raise RunError(f"cannot create the run directory {self.dir}: {err.strerror}") from None
        stop = self.plan.stop
        with self.plan.signals():
            try:
                self.spec.target.start()
                if not stop.event.is_set():
                    self.plan.run()
            finally:
                self.spec.target.stop()
        return RunOutcome(self.dir, stop.interrupted, stop.reason, self.plan.error)
