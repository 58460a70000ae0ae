"""What one run needs, checked by the CLI before anything starts (no Locust import here).

Kept apart from the runner because the runner imports Locust, which monkey-patches the
standard library for gevent; the CLI and the tests build and check a spec without that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from domain.run_cost import LoadGenInfo
from loadtest.plans import Plan, PlanOptions
from loadtest.run_options import RunOptions
from loadtest.slo import Slo
from loadtest.targets import Target
from loadtest.workload import Workload


@dataclass
class RunSpec:
    """Everything a run needs, validated by the CLI before anything starts."""

    out_dir: Path
    plan: Plan
    plan_options: PlanOptions
    workload: Workload
    slo: Slo
    target: Target
    model: str
    options: RunOptions
    """The flags as given (``config.json`` stores them); the other fields: what they resolved to."""
    workers: int = 2
    time_scale: float = 1.0
    api_key_env: str | None = None
    max_inflight: int = 1000
    sample_interval_s: float = 2.0
    command: list[str] = field(default_factory=list)
    show_live: bool = True
    run_id: str | None = None
    """``config.json``'s run id; default: the run directory's name (a pod's is not the run's)."""
    loadgen: LoadGenInfo | None = None
    """A cloud run's load-generator nodes (``Sizing.info()``); None where Locust runs locally."""
