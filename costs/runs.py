"""What cost tracking reads from a run directory, through one adapter.

``read_run`` is the only place that knows the shapes of ``summary.json`` and ``config.json``;
everything else in ``costs`` takes a ``Run``. The run's cost is read typed, as
``domain.run_cost.RunCost`` (the model ``qwen-stress run`` writes it with); the few other
fields are read as plain JSON, since ``costs`` may not import ``loadtest``. A summary written
before costs had parts reads as one GPU part, billed as EC2 compute, as it was estimated then.
``cost-actuals.json`` is this package's own file (``costs.actuals``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from domain.run_cost import CostPart, RunCost
from domain.stack_config import stack_name

SUMMARY = "summary.json"
CONFIG = "config.json"
ACTUALS = "cost-actuals.json"


class RunReadError(ValueError):
    """A run directory cannot be read; the message names the file and what to do."""


@dataclass(frozen=True)
class Run:
    """One run as cost tracking sees it."""

    run_dir: Path
    run_id: str
    started_at: datetime
    duration_s: float
    """Wall time of the load (the plan's steps), in seconds."""
    plan: str
    target_kind: str
    """``url`` (an endpoint someone runs), ``fleet`` (the local twin), or what later runners add."""
    target: str
    """What the run loaded, for people: the stack it rehearsed or ran on, else the target."""
    stack: str | None
    """The platform stack (``Pulumi.<stack>.yaml``) the run names, if any."""
    capacity_users: int | None
    capacity_rps: float | None
    limit_found: bool
    gpu_hours: float | None
    estimated_usd: float | None
    estimate_basis: str
    output_tokens: float
    """Output tokens of the plan at time scale 1 (a time-scaled rehearsal stands for more)."""
    good_requests: float | None = None
    """Requests within the SLOs, of the plan the cost is for (None: an older summary)."""
    estimate_by_service: dict[str, float] = field(default_factory=dict)
    """The estimate split by Cost Explorer ``SERVICE``, for the reconciliation."""
    estimate_parts: tuple[CostPart, ...] = ()
    """The estimate's parts (GPU nodes, load generators, control plane, NAT), each billed by
    one service (``CostPart.service``; None: priced by the user, no service known)."""
    prices: str | None = None
    """The price table the estimate used (``us-east-1 prices of 2026-11-28 (bundled)``)."""

    @property
    def ended_at(self) -> datetime:
        """When the load ended (the start plus the plan's wall time)."""
        return self.started_at + timedelta(seconds=self.duration_s)

    @property
    def local(self) -> bool:
        """Whether the run loaded the local twin, where nothing is billed."""
        return self.target_kind == "fleet"


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fix = (
            f"rebuild it with `qwen-stress report {path.parent}`"
            if path.name == SUMMARY
            else "is it a qwen-stress run directory?"
        )
        raise RunReadError(f"{path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunReadError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise RunReadError(f"{path} is not a JSON object: not a qwen-stress run file")
    return data


def _stack_of(config: dict[str, Any], target: dict[str, Any]) -> str | None:
    """The stack a run names: its target's platform, ``config.stack``, else ``--config``."""
    platform = target.get("platform")
    if isinstance(platform, dict) and isinstance(platform.get("stack"), str):
        return str(platform["stack"])
    if isinstance(config.get("stack"), str):
        return str(config["stack"])
    command = [str(a) for a in config.get("command") or []]
    for flag, value in itertools.pairwise(command):
        if flag == "--config" and (stack := stack_name(Path(value))):
            return stack
    return None


def _cost(run_dir: Path, summary: dict[str, Any]) -> RunCost:
    data = summary.get("cost")
    try:
        return RunCost.model_validate(data if data is not None else {"basis": "no estimate"})
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(map(str, ("cost", *first["loc"])))
        raise RunReadError(
            f"{run_dir}: summary.json's {where} cannot be read ({first['msg'].lower()}); "
            f"rebuild it with `qwen-stress report {run_dir}`"
        ) from None


def _target_text(target: dict[str, Any], stack: str | None) -> str:
    kind = target.get("kind")
    if kind == "fleet":
        where = stack or target.get("instance_type") or target.get("gpu") or "?"
        return f"{where} (local twin)"
    if stack:
        return stack
    return str(target.get("url") or target.get("description") or kind or "?")


def read_run(run_dir: Path) -> Run:
    """The adapter: a run directory's ``summary.json`` and ``config.json`` as a ``Run``."""
    if not run_dir.is_dir():
        raise RunReadError(f"{run_dir} is not a directory; pass a run directory (runs/<id>)")
    summary = _json(run_dir / SUMMARY)
    config = _json(run_dir / CONFIG)
    try:
        run_id = str(summary["run_id"])
        started = datetime.fromtimestamp(float(config["started_at"]), UTC)
        target = dict(summary.get("target") or config["target"])
        capacity = dict(summary.get("capacity") or {})
        overall = dict(summary["overall"])
        duration = float(summary["duration_s"])
        time_scale = float(summary.get("time_scale") or 1.0)
        plan = str(summary["plan"])
    except (KeyError, TypeError, ValueError) as err:
        raise RunReadError(
            f"{run_dir}: summary.json or config.json lacks {err}; rebuild it with "
            f"`qwen-stress report {run_dir}`"
        ) from None
    stack = _stack_of(config, target)
    cost = _cost(run_dir, summary)
    if cost.output_tokens is not None:
        tokens = float(cost.output_tokens)
    else:  # written before the cost counted them: the rate over the load, unscaled
        tokens = float(overall.get("output_tokens_per_s") or 0.0) * duration / time_scale
    parts = tuple(cost.priced_parts())
    return Run(
        run_dir=run_dir,
        run_id=run_id,
        started_at=started,
        duration_s=duration,
        plan=plan,
        target_kind=str(target.get("kind", "url")),
        target=_target_text(target, stack),
        stack=stack,
        capacity_users=capacity.get("max_users_within_slo"),
        capacity_rps=capacity.get("max_rps_within_slo"),
        limit_found=bool(capacity.get("limit_found")),
        gpu_hours=cost.gpu_hours,
        estimated_usd=cost.usd,
        estimate_basis=cost.basis,
        output_tokens=tokens,
        good_requests=None if cost.good_requests is None else float(cost.good_requests),
        estimate_by_service=cost.by_service(),
        estimate_parts=parts,
        prices=cost.prices.label() if cost.prices else None,
    )


def read_actuals(run_dir: Path) -> dict[str, Any] | None:
    """``cost-actuals.json`` if ``qwen-stress cost actuals`` wrote one, else None."""
    path = run_dir / ACTUALS
    if not path.exists():
        return None
    return _json(path)


def write_actuals(run_dir: Path, data: dict[str, Any]) -> Path:
    """Write ``cost-actuals.json`` atomically (a half-written file must never be read)."""
    path = run_dir / ACTUALS
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
