"""Load plans, registered by name: what load to offer, step by step.

A plan is a generator of ``Step``s. After each step the runner sends back whether that step
met the SLOs, so adaptive plans (``capacity``) can decide the next step; fixed plans ignore it.
Plans know nothing about Locust: the runner turns steps into user counts or arrival rates,
locally or in the cloud, and the analysis uses the same steps to slice the records.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Phase = Literal[
    "baseline", "ramp", "settle", "soak", "cooldown", "spike", "recovery", "fixed", "rate"
]
StepGenerator = Generator["Step", bool | None, None]


def load_label(users: int | None, rate: float | None) -> str:
    """How a step's offered load reads, live and in reports: ``150 users`` or ``4 req/s``."""
    return f"{rate:g} req/s" if rate is not None else f"{users} users"


@dataclass(frozen=True)
class Step:
    """One stretch of constant offered load."""

    phase: Phase
    duration_s: float
    users: int | None = None
    """Concurrent users (closed loop); ``None`` for open-loop steps."""
    spawn_rate: float = 0.0
    rate: float | None = None
    """Arrivals per second (open loop); ``None`` for closed-loop steps."""

    @property
    def label(self) -> str:
        """How the live line and the report name the load of this step."""
        return load_label(self.users, self.rate)


class PlanOptions(BaseModel):
    """Every knob a plan may read; durations are already multiplied by the time scale."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    baseline_users: int = Field(default=50, ge=1)
    step_users: int = Field(default=50, ge=1)
    max_users: int = Field(default=500, ge=1)
    step_duration_s: float = Field(default=120.0, gt=0)
    soak_s: float = Field(default=600.0, ge=0)
    spawn_rate: float = Field(default=50.0, gt=0)
    users: int | None = Field(default=None, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    rates: list[float] = Field(default_factory=list)
    failures_to_stop: int = Field(default=2, ge=1)


class Plan:
    """A named load plan; subclasses yield steps and may read each step's SLO verdict."""

    name = ""
    open_loop = False
    summary = ""

    def __init__(self, options: PlanOptions) -> None:
        self.options = options
        self.stop_reason = ""

    def check(self) -> None:
        """Raise ``PlanError`` when an option this plan needs is missing or inconsistent."""

    def steps(self) -> StepGenerator:
        """Yield steps; the value sent back after each is True/False (SLOs met) or None."""
        raise NotImplementedError


PLANS: dict[str, type[Plan]] = {}


def register(cls: type[Plan]) -> type[Plan]:
    """Add a plan to the registry under its ``name``."""
    PLANS[cls.name] = cls
    return cls


class PlanError(ValueError):
    """A plan name or option is wrong; the message says what to pass instead."""


def create(name: str, options: PlanOptions) -> Plan:
    """Build a registered plan, checking that the options it needs are there."""
    try:
        cls = PLANS[name]
    except KeyError:
        raise PlanError(f"unknown plan {name!r}; plans: {', '.join(sorted(PLANS))}") from None
    plan = cls(options)
    plan.check()
    return plan


def _check_users(options: PlanOptions) -> None:
    if options.max_users < options.baseline_users:
        raise PlanError(
            f"--max-users {options.max_users} is below the baseline of "
            f"{options.baseline_users} users; raise --max-users"
        )


@register
class CapacityPlan(Plan):
    """Baseline, +N users a step until --max-users or two failures, settle, soak, cool-down."""

    name = "capacity"
    summary = (
        "baseline -> step ramp until SLOs fail twice -> settle and soak at the last passing "
        "level -> cool-down"
    )

    def check(self) -> None:
        """Validate the options this plan reads."""
        _check_users(self.options)

    def steps(self) -> StepGenerator:
        """Yield the capacity search, then the soak and the cool-down."""
        o = self.options
        step = o.step_duration_s
        passed = yield Step("baseline", step, o.baseline_users, o.spawn_rate)
        best = o.baseline_users if passed else None
        failures = 0 if passed else 1
        users = o.baseline_users
        while failures < o.failures_to_stop and users + o.step_users <= o.max_users:
            users += o.step_users
            passed = yield Step("ramp", step, users, o.spawn_rate)
            if passed:
                best, failures = users, 0
            else:
                failures += 1
        self.stop_reason = (
            f"SLOs failed {failures} steps in a row"
            if failures >= o.failures_to_stop
            else f"reached --max-users {o.max_users}"
        )
        if o.soak_s > 0:
            level = best if best is not None else o.baseline_users
            # Users above the level finish the request they are in and a queue built by the
            # failing steps drains: a step to settle, so the soak judges the level itself.
            yield Step("settle", step, level, o.spawn_rate)
            yield Step("soak", o.soak_s, level, o.spawn_rate)
        yield Step("cooldown", step, o.baseline_users, o.spawn_rate)


@register
class RampPlan(Plan):
    """A staircase from the baseline to --max-users, every step held --step-duration."""

    name = "ramp"
    summary = "baseline, +step users each --step-duration, up to --max-users (no early stop)"

    def check(self) -> None:
        """Validate the options this plan reads."""
        _check_users(self.options)

    def steps(self) -> StepGenerator:
        """Yield every stair."""
        o = self.options
        users = o.baseline_users
        yield Step("baseline", o.step_duration_s, users, o.spawn_rate)
        while users + o.step_users <= o.max_users:
            users += o.step_users
            yield Step("ramp", o.step_duration_s, users, o.spawn_rate)


@register
class SpikePlan(Plan):
    """Baseline, a sudden jump to --max-users, then back to baseline to watch the recovery."""

    name = "spike"
    summary = "baseline -> --max-users at once -> baseline again (recovery)"

    def check(self) -> None:
        """Validate the options this plan reads."""
        _check_users(self.options)

    def steps(self) -> StepGenerator:
        """Yield baseline, spike and recovery."""
        o = self.options
        # The spike arrives within about a second: that is what makes it a spike.
        burst = float(max(o.max_users, o.spawn_rate))
        yield Step("baseline", o.step_duration_s, o.baseline_users, o.spawn_rate)
        yield Step("spike", o.step_duration_s, o.max_users, burst)
        yield Step("recovery", o.step_duration_s, o.baseline_users, burst)


@register
class SoakPlan(Plan):
    """Constant load (--users, else the baseline) for --soak, in --step-duration windows."""

    name = "soak"
    summary = "constant --users for --soak, reported per --step-duration window (drift)"

    def check(self) -> None:
        """Validate the options this plan reads."""
        if self.options.soak_s <= 0:
            raise PlanError("the soak plan needs --soak above 0 (for example --soak 30m)")

    def steps(self) -> StepGenerator:
        """Yield equal windows at the same load until --soak has passed."""
        o = self.options
        users = o.users or o.baseline_users
        left = o.soak_s
        while left > 1e-9:
            length = min(o.step_duration_s, left)
            yield Step("soak", length, users, o.spawn_rate)
            left -= length


@register
class PoissonPlan(Plan):
    """Open loop: Poisson arrivals at each --rate for --step-duration, not waiting for answers."""

    name = "poisson"
    open_loop = True
    summary = "open-loop Poisson arrivals at each --rate R[,R2,...] for --step-duration"

    def check(self) -> None:
        """Validate the options this plan reads."""
        if not self.options.rates:
            raise PlanError("the poisson plan needs --rate R[,R2,...] (requests per second)")
        if any(r <= 0 for r in self.options.rates):
            raise PlanError(f"--rate {self.options.rates}: every rate must be above 0")

    def steps(self) -> StepGenerator:
        """Yield one open-loop step per rate."""
        for rate in self.options.rates:
            yield Step("rate", self.options.step_duration_s, rate=rate)


def inflight_shares(max_inflight: int, workers: int) -> list[int]:
    """``--max-inflight`` split over the worker processes, each share a cap on its own requests.

    The shares add up to the cap exactly (the first workers take the remainder), so the bound
    holds whatever the split; with fewer open requests allowed than workers, the last workers
    get none and drop every arrival, which the report counts.
    """
    base, extra = divmod(max_inflight, max(workers, 1))
    return [base + (1 if i < extra else 0) for i in range(workers)]


@register
class FixedPlan(Plan):
    """Fixed load: --users N at --spawn-rate R for --duration T."""

    name = "fixed"
    summary = "--users N --spawn-rate R --duration T"

    def check(self) -> None:
        """Validate the options this plan reads."""
        if self.options.users is None or self.options.duration_s is None:
            raise PlanError("fixed load needs --users N and --duration T (for example 30s)")

    def steps(self) -> StepGenerator:
        """Yield the one step."""
        o = self.options
        assert o.users is not None and o.duration_s is not None
        yield Step("fixed", o.duration_s, o.users, o.spawn_rate)


def run_offline(plan: Plan, verdict: Callable[[Step], bool | None]) -> list[Step]:
    """Walk a plan without running it (tests, ``--dry-run`` style previews)."""
    steps: list[Step] = []
    gen = plan.steps()
    try:
        step = next(gen)
        while True:
            steps.append(step)
            step = gen.send(verdict(step))
    except StopIteration:
        return steps
