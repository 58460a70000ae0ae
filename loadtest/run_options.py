"""The ``run`` command's options: ``RunOptions``, one field per flag, checked once.

``config.json`` stores them (``loadtest.schema.RunConfig.options``), so a run can be read back
and repeated; the checks here need no file, variable or network, and every error names the
flag. Pure pydantic, like the run files' models: the CLI imports it before anything heavy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from domain.durations import TIME_SCALES, DurationError, parse_duration
from loadtest import plans, slo
from loadtest.workload import Endpoint

LOCAL_TIME_SCALE = 0.1
"""Local rehearsals run the plan ten times faster unless told otherwise."""

LOCAL_WORKERS = 2
"""Worker processes of a local run or a run against ``--url`` when ``--workers`` is not given."""
MAX_USERS_PER_WORKER = 1000
"""Concurrent users one worker process may run: each holds a connection, and a process may open
1,024 files by default; its timing degrades well before (see ``make bench``)."""
MAX_WORKERS = 64
"""Worker processes (or pods) one run may have (``--workers``, and a cloud run's own sizing)."""
CLOUD_USERS_PER_WORKER = 128
"""Users one worker pod carries when a cloud run sizes itself (``make bench``: timing holds)."""
MAX_RATE_PER_WORKER = 1000.0
"""Open-loop arrivals per second one worker process may be asked for: one core sends about a
thousand requests a second at most, and an arrival loop that falls behind never yields."""

_USAGE = "usage"
"""Error type of a validator whose message is already a whole sentence naming the flag."""


def flag(field: str) -> str:
    """The flag of a ``RunOptions`` field (``step_duration`` -> ``--step-duration``)."""
    return "--" + field.replace("_", "-")


def _usage(message: str) -> PydanticCustomError:
    # The message goes in the context, not the template: user text may hold braces.
    return PydanticCustomError(_USAGE, "{message}", {"message": message})


def _seconds(value: Any, info: ValidationInfo) -> Any:
    """A duration flag: text as people write it (``90``, ``2m``, ``1h30m``) or seconds."""
    if not isinstance(value, str):
        return value
    try:
        return parse_duration(value)
    except DurationError:
        name = flag(info.field_name or "")
        raise _usage(f"{name} {value!r}: write a duration like 30s, 2m or 1h30m") from None


def _rates(value: Any) -> Any:
    """``--rate 1,2,4`` (or a list, as ``config.json`` stores it)."""
    if not isinstance(value, str):
        return value
    try:
        return [float(r) for r in value.split(",") if r.strip()]
    except ValueError:
        raise _usage(f"--rate {value!r}: write requests per second, like 2 or 1,2,4") from None


Seconds = Annotated[float, BeforeValidator(_seconds)]


class OptionsError(ValueError):
    """A flag of ``run`` is wrong; the message names it (printed as one line, exit code 2)."""


STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,2}")
"""A stack as Pulumi names it: ``dev``, ``project/dev``, ``org/project/dev``."""

_PLANS_OF = {"--users": ("fixed", "soak"), "--duration": ("fixed",), "--rate": ("poisson",)}
"""Flags that only some plans read: given to another plan they would be silently ignored."""


class RunOptions(BaseModel):
    """The flags of ``qwen-stress run``, one field each, as ``config.json`` stores them.

    Field names are the flags' names (``--step-duration`` is ``step_duration``), so an error
    names the flag. Durations are seconds (the flags take ``2m``), unscaled. Everything that
    needs no file, variable or network is checked here, once: ranges, the plan's name and the
    flags it reads, the SLO text, the flags that only the local target takes.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str | None = None
    api_key_env: str | None = None
    model: str | None = None
    gpu: str | None = None
    config: Path | None = None
    plan: str | None = None
    users: int | None = Field(default=None, ge=1)
    spawn_rate: float = Field(default=50.0, gt=0)
    duration: Seconds | None = Field(default=None, gt=0)
    rate: Annotated[list[float], BeforeValidator(_rates)] | None = None
    step_duration: Seconds = Field(default=120.0, gt=0)
    baseline_users: int = Field(default=50, ge=1)
    step_users: int = Field(default=50, ge=1)
    max_users: int = Field(default=500, ge=1)
    soak: Seconds = Field(default=600.0, ge=0)
    time_scale: float | None = Field(default=None, ge=TIME_SCALES[0], le=TIME_SCALES[1])
    workers: int | None = Field(default=None, ge=1, le=MAX_WORKERS)
    """None: ``LOCAL_WORKERS`` locally; in the cloud, a worker in every slot of the
    load-generator nodes."""
    workload: Path | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    endpoint: Endpoint | None = None
    slo: str | None = None
    fail_on_slo: bool = False
    max_inflight: int = Field(default=1000, ge=1)
    out: Path | None = None
    prometheus: str | None = None
    stack: str | None = None
    """The platform stack, as Pulumi names it: the run happens in its cluster."""
    rehearse: bool = False
    """Render the load-test stack of ``config`` and run its pods as local processes."""
    loadgen_nodes: Literal["new", "existing"] | None = None
    loadgen_instance_type: str | None = None
    loadgen_capacity: Literal["spot", "on-demand"] | None = None
    hourly_usd: float | None = Field(default=None, gt=0, le=1_000_000)

    @field_validator("plan")
    @classmethod
    def _known_plan(cls, name: str | None) -> str | None:
        if name is not None and name not in plans.PLANS:
            known = ", ".join(sorted(plans.PLANS))
            raise _usage(f"--plan {name!r}: unknown plan; plans: {known}")
        return name

    @field_validator("slo")
    @classmethod
    def _objectives(cls, text: str | None) -> str | None:
        try:
            slo.parse(text)
        except slo.SloError as err:
            raise _usage(str(err)) from None
        return text

    @model_validator(mode="after")
    def _consistent(self) -> RunOptions:
        self._cloud_flags()
        if self.prometheus is not None and self.url is None:
            raise _usage(
                "--prometheus reads a cluster's Prometheus: use it with --url (the local twin "
                "reports its fleet itself)"
            )
        if self.prometheus is not None and self.config is None:
            raise _usage(
                "--prometheus needs --config Pulumi.<stack>.yaml: the stack's model, GPU "
                "instance and autoscaling settings say what to query and how to read it"
            )
        if self.hourly_usd is not None and self.url is None:
            raise _usage(
                "--hourly-usd prices an endpoint someone else runs: use it with --url (the "
                "local twin is priced from its GPU instance and the price table)"
            )
        if self.url is not None and (self.gpu or (self.config and self.prometheus is None)):
            raise _usage(
                "--gpu and --config describe the local target; drop them with --url (--config "
                "goes with --prometheus, to name the stack whose cluster it reads)"
            )
        self._within_the_workers()
        name = self.plan_name
        given = {"--users": self.users, "--duration": self.duration, "--rate": self.rate}
        for option, readers in _PLANS_OF.items():
            if given[option] is not None and name not in readers:
                raise _usage(
                    f"{option} is read by the {' and '.join(readers)} plan"
                    f"{'s' if len(readers) > 1 else ''} only, not by {name}; drop it or pass "
                    f"--plan {readers[0]}"
                )
        try:
            self.load_plan()
        except plans.PlanError as err:
            raise _usage(str(err)) from None
        return self

    def _cloud_flags(self) -> None:
        """``--stack``/``--rehearse`` take the target from the stack; ``--loadgen-*`` need one."""
        if self.stack is not None and self.rehearse:
            raise _usage(
                "--rehearse runs a stack file's load-test stack locally and --stack runs it in "
                "the deployed stack's cluster: pass one of them"
            )
        mode = "--stack" if self.stack is not None else "--rehearse" if self.rehearse else None
        if mode is None:
            given = [
                flag(name)
                for name in ("loadgen_nodes", "loadgen_instance_type", "loadgen_capacity")
                if getattr(self, name) is not None
            ]
            if given:
                raise _usage(
                    f"{', '.join(given)} describe the load generators of a cloud run: use "
                    "them with --stack (or --rehearse)"
                )
            return
        if self.stack is not None and not STACK_NAME.fullmatch(self.stack.strip()):
            raise _usage(
                f"--stack {self.stack!r}: write it as Pulumi names it, like dev or "
                "org/qwen-stress/dev (letters, digits, '.', '_' and '-')"
            )
        if self.rehearse and self.config is None:
            raise _usage(
                "--rehearse needs --config Pulumi.<stack>.yaml: the stack whose load-test stack "
                "is rendered and run here"
            )
        for name in ("url", "prometheus", "gpu", "model", "api_key_env"):
            if getattr(self, name) is not None:
                raise _usage(
                    f"{flag(name)} does not go with {mode}: the run loads the stack's vLLM, "
                    "with its served model and API key, and reads its Prometheus"
                )
        if self.loadgen_nodes == "existing" and (
            self.loadgen_instance_type is not None or self.loadgen_capacity is not None
        ):
            raise _usage(
                "--loadgen-instance-type and --loadgen-capacity describe new load-generator "
                "nodes; drop them or use --loadgen-nodes new"
            )

    def _within_the_workers(self) -> None:
        """Refuse load the workers cannot offer (a billion users would be reported as tried).

        A cloud run or rehearsal without ``--workers`` is sized for its plan
        (``loadtest.cloud.sizing``), but never beyond ``MAX_WORKERS`` worker pods of
        ``CLOUD_USERS_PER_WORKER`` users: a bigger plan would not even be laid out in memory.
        """
        counts = {
            "--users": self.users,
            "--max-users": self.max_users,
            "--baseline-users": self.baseline_users,
            "--step-users": self.step_users,
        }
        if self.workers is None and self.cloud:
            most, why = (
                MAX_WORKERS * CLOUD_USERS_PER_WORKER,
                (
                    f"in a cloud run or rehearsal ({MAX_WORKERS} worker pods of up to "
                    f"{CLOUD_USERS_PER_WORKER} users);"
                ),
            )
            fastest, pace = MAX_WORKERS * MAX_RATE_PER_WORKER, f"{MAX_WORKERS} worker pods;"
        else:
            workers = self.workers or LOCAL_WORKERS
            most, why = (
                workers * MAX_USERS_PER_WORKER,
                (
                    f"with --workers {workers} (each worker process runs up to "
                    f"{MAX_USERS_PER_WORKER:,}, one connection each); add --workers (up to "
                    f"{MAX_WORKERS}) or"
                ),
            )
            fastest, pace = (
                workers * MAX_RATE_PER_WORKER,
                f"--workers {workers}; add --workers (up to {MAX_WORKERS}) or",
            )
        for option, value in counts.items():
            if value is not None and value > most:
                raise _usage(f"{option} {value}: at most {most:,} users {why} lower {option}")
        for rate in self.rate or []:
            if rate > fastest:
                raise _usage(
                    f"--rate {rate:g}: at most {fastest:g} requests/s with {pace} lower --rate "
                    f"(one worker process sends up to {MAX_RATE_PER_WORKER:g} a second)"
                )

    @classmethod
    def from_flags(cls, **flags: Any) -> RunOptions:
        """Check the flags as typed; ``OptionsError`` names the first wrong one."""
        try:
            return cls.model_validate(flags)
        except ValidationError as err:
            raise OptionsError(options_error(err, flags)) from None

    @property
    def local(self) -> bool:
        """Without ``--url`` or ``--stack`` the run starts the local autoscaling twin."""
        return self.url is None and self.stack is None

    @property
    def cloud(self) -> bool:
        """The run goes through a load-test stack (``--stack``, or its rehearsal)."""
        return self.stack is not None or self.rehearse

    @property
    def plan_name(self) -> str:
        """``--plan``, else the plan the load flags imply."""
        if self.plan is not None:
            return self.plan
        if self.rate:
            return "poisson"
        if self.users is not None or self.duration is not None:
            return "fixed"
        return "capacity"

    @property
    def effective_time_scale(self) -> float:
        """``--time-scale``, else 1 in a cluster or at a URL, ``LOCAL_TIME_SCALE`` at the twin."""
        if self.time_scale is not None:
            return self.time_scale
        return LOCAL_TIME_SCALE if self.local else 1.0

    def plan_options(self) -> plans.PlanOptions:
        """What the plan reads, durations multiplied by the time scale."""
        scale = self.effective_time_scale
        try:
            return plans.PlanOptions(
                baseline_users=self.baseline_users,
                step_users=self.step_users,
                max_users=self.max_users,
                step_duration_s=self.step_duration * scale,
                soak_s=self.soak * scale,
                spawn_rate=self.spawn_rate,
                users=self.users,
                duration_s=None if self.duration is None else self.duration * scale,
                rates=self.rate or [],
            )
        except ValidationError:
            raise plans.PlanError(
                f"--time-scale {scale:g}: the plan's durations come out of range at that scale"
            ) from None

    def load_plan(self) -> plans.Plan:
        """The plan these flags describe, checked (``PlanError`` names what is missing)."""
        return plans.create(self.plan_name, self.plan_options())


def options_error(err: ValidationError, given: Mapping[str, Any]) -> str:
    """One line for the first error: the flag, the value as given, and what is wrong."""
    first = err.errors(include_url=False)[0]
    if first["type"] == _USAGE or not first["loc"]:
        return str(first["ctx"]["message"] if first["type"] == _USAGE else first["msg"])
    field = str(first["loc"][0])
    if first["type"] == "extra_forbidden":
        return f"{flag(field)}: not a flag of run"
    value = given.get(field, first.get("input"))
    shown = repr(value) if isinstance(value, str) else str(value)
    return f"{flag(field)} {shown}: {first['msg'][:1].lower()}{first['msg'][1:]}"
