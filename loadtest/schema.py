"""The run files' models: ``config.json``, ``timeline.jsonl``, ``events.jsonl``, ``summary.json``.

Every module that writes or reads a run directory goes through these models, so a field has one
name and one type everywhere, and a run directory written by another version of qwen-stress is
read for what it holds rather than crashing on what it lacks. ``requests.jsonl`` is the
exception: its records are a dataclass (``loadtest.records``) because workers write thousands a
second. ``config.json`` stores the ``run`` command's flags as
``loadtest.run_options.RunOptions``.

Pure pydantic (no Locust, no plotly), so the CLI, the reports and any reader of run files can
import it cheaply. Floats that reach a file refuse NaN and infinity: the files stay valid JSON.

Readers ignore keys they do not know (a newer version may add some); ``schema_version`` says
which shape a file has (absent: written before versions existed, read as 0).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from domain.catalog import CapacityType
from domain.run_cost import LoadGenInfo, PlatformInfo, RunCost
from loadtest import plans, slo
from loadtest.run_options import RunOptions
from loadtest.workload import Workload

SCHEMA_VERSION = 1
"""The shape of the run files this version writes.

Raise it when a reader of the previous shape would misread the files (a field renamed, removed
or given another meaning); a new optional field needs no new version, older readers skip it.
0 is the shape written before the files carried a version (read in full by this version).
"""


class FileModel(BaseModel):
    """Base of every model written to a run file: finite floats, unknown keys skipped on read."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)


UNVERSIONED = 0
"""The ``schema_version`` of a file that carries none: written before files had versions."""


class Versioned(FileModel):
    """A file that carries ``schema_version`` (this version's, when written here)."""

    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_file(cls, data: Mapping[str, object]) -> Self:
        """Read a file's object; one without ``schema_version`` is read as ``UNVERSIONED``."""
        return cls.model_validate({"schema_version": UNVERSIONED, **data})


# -- what the target says about itself (config.json "target") ---------------------------------


class AutoscalingTrigger(FileModel):
    """One scaling trigger: the vLLM metric and its target per replica."""

    metric: str
    target_per_replica: float


class ColdStart(FileModel):
    """Seconds a new replica waits, phase by phase (node boot, image pull, pod start)."""

    node_boot: float
    image_pull: float
    pod_start: float


class AutoscalingInfo(FileModel):
    """How a scaling target scales: bounds, triggers and its cold start.

    ``max_replicas`` and ``triggers`` drive the autoscaling figures; the rest is for people.
    """

    max_replicas: int
    triggers: dict[str, AutoscalingTrigger]
    min_replicas: int | None = None
    model: str | None = None
    served_name: str | None = None
    """The name the fleet serves the model under (vLLM's ``--served-model-name``)."""
    gpu: str | None = None
    instance_type: str | None = None
    gpus_per_node: int | None = None
    gpus_per_replica: int | None = None
    min_nodes: int | None = None
    max_nodes: int | None = None
    cold_start_s: ColdStart | None = None


class TargetBase(FileModel):
    """What every kind of target records; the pricing fields where the target knows them."""

    kind: str
    url: str = ""
    description: str = ""
    gpu: str | None = None
    """The GPU that serves the model (prices the run); None: unknown, no cost figure."""
    instance_type: str | None = None
    replicas: int | None = None
    """Replicas serving at the start (a constant fleet's size when no timeline says more)."""
    gpus_per_replica: int | None = None
    capacity_type: CapacityType | None = None
    """The GPU nodes' capacity type (prices them; None: on-demand)."""
    platform: PlatformInfo | None = None
    """The platform stack it runs on or rehearses: region, NAT gateways (the run's share)."""
    autoscaling: AutoscalingInfo | None = None
    """Present for a target that scales: drives the autoscaling figures."""

    @property
    def label(self) -> str:
        """How reports name the target."""
        return self.description or self.url or f"the {self.kind} target"

    @model_serializer(mode="wrap")
    def _known_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Leave out what the target does not know (an endpoint's GPU): absent, not null."""
        data: dict[str, object] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class UrlTargetInfo(TargetBase):
    """An endpoint someone else runs (``--url``)."""

    kind: Literal["url"] = "url"
    url: str
    metrics: str | None = None
    """What its ``pod_*`` timeline fields are (one pod's, not the fleet's)."""


class FleetTargetInfo(TargetBase):
    """The local autoscaling twin: its model, GPU, instance and autoscaling settings."""

    kind: Literal["fleet"] = "fleet"
    url: str
    model: str
    gpu: str
    instance_type: str
    replicas: int
    gpus_per_replica: int
    time_scale: float
    autoscaling: AutoscalingInfo


class FleetMetricsInfo(FileModel):
    """Where a cluster target's fleet fields come from: the PromQL sent for each."""

    source: str = "prometheus"
    url: str
    queries: dict[str, str]
    """Timeline field -> expression (``{window_ms}``: the run's age, in the hours' windows)."""


class ClusterTargetInfo(TargetBase):
    """An endpoint whose fleet is read from its cluster's Prometheus (``--prometheus``)."""

    kind: Literal["cluster"] = "cluster"
    url: str
    model: str
    fleet_metrics: FleetMetricsInfo


class OtherTarget(TargetBase):
    """A kind this version does not know (a newer one, or an old one since removed).

    Only its name and address are read: its other fields may not mean what they mean here.
    """

    @model_validator(mode="before")
    @classmethod
    def _names_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: data[k] for k in ("kind", "url", "description") if k in data}
        return data


def _kind(value: Any) -> str | None:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if isinstance(kind, str) else None


def _tags(union: Any) -> frozenset[str]:
    """The tags of an ``Annotated[A | B, Discriminator]`` union's members."""
    members = typing.get_args(typing.get_args(union)[0])
    return frozenset(
        m.tag for member in members for m in typing.get_args(member)[1:] if isinstance(m, Tag)
    )


def _target_tag(value: Any) -> str:
    kind = _kind(value)
    return kind if kind in _TARGET_KINDS else "other"


TargetInfo = Annotated[
    Annotated[UrlTargetInfo, Tag("url")]
    | Annotated[FleetTargetInfo, Tag("fleet")]
    | Annotated[ClusterTargetInfo, Tag("cluster")]
    | Annotated[OtherTarget, Tag("other")],
    Discriminator(_target_tag),
]
"""``config.json``'s ``target``, by ``kind``; a kind not listed reads as ``OtherTarget``.

A new kind: a ``TargetBase`` subclass with a ``Literal`` kind (filling ``gpu``,
``instance_type``, ``replicas``, ``gpus_per_replica``, ``capacity_type``, ``platform`` and
``autoscaling`` where it knows them: cost and the autoscaling figures read those), and a tagged
member here."""
_TARGET_KINDS = _tags(TargetInfo) - {"other"}


# -- timeline.jsonl --------------------------------------------------------------------------


class TargetMetrics(FileModel):
    """What a target reports of itself each sample (``Target.poll``); None: not reported.

    ``vLLM``'s gauges for any endpoint that serves ``/metrics``; a fleet adds its replicas by
    state, nodes, GPUs and the hours so far (the twin fills them; a cloud runner reading the
    cluster's Prometheus fills the same).
    """

    replicas: int | None = None
    desired_replicas: int | None = None
    ready_replicas: int | None = None
    pending_replicas: int | None = None
    terminating_replicas: int | None = None
    nodes: int | None = None
    ready_nodes: int | None = None
    gpus: int | None = None
    queue: float | None = None
    """Requests waiting, summed over the replicas."""
    running: float | None = None
    """Requests running, summed over the replicas."""
    kv_usage: float | None = None
    """KV cache usage (0-1), mean over the replicas."""
    kv_usage_by_replica: dict[str, float] | None = None
    gpu_hours: float | None = None
    """The target's own running count of GPU-hours (cluster time)."""
    replica_hours: float | None = None
    target_cpu: float | None = None
    """Share of one core the local target used (a busy target emits tokens late)."""
    pod_queue: float | None = None
    """``--url`` without Prometheus: requests waiting in whichever pod answered ``/metrics``."""
    pod_running: float | None = None
    pod_kv_usage: float | None = None
    target_poll_error: str | None = None


class ClientWindow(FileModel):
    """The client's view over the last few seconds: completions, errors, TTFT percentiles."""

    rps: float | None = None
    error_rate: float | None = None
    output_tokens_per_s: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p90_ms: float | None = None
    ttft_p99_ms: float | None = None


class LoadCounters(FileModel):
    """The workers' side: open requests, CPU per live worker, open-loop arrival counters."""

    inflight: int | None = None
    worker_cpu: dict[str, float] = Field(default_factory=dict)
    """Percent of one core, per live worker (by Locust worker index)."""
    arrivals: int | None = None
    dropped: int | None = None
    late: int | None = None


class SampleHead(FileModel):
    """When a sample was taken, in which step, and the load the runner offered then."""

    t: float
    """Seconds since the run started."""
    step: int | None = None
    phase: str | None = None
    users: int | None = None
    target_users: int | None = None
    rate: float | None = None
    workers: int | None = None
    requests_total: int | None = None
    failures_total: int | None = None


class TimelineSample(TargetMetrics, LoadCounters, ClientWindow, SampleHead):
    """One line of ``timeline.jsonl``: the run's state every few seconds, client and target.

    Written flat, in this order: ``SampleHead``, ``ClientWindow``, ``LoadCounters``,
    ``TargetMetrics``.
    """


# -- events.jsonl ----------------------------------------------------------------------------


class EventBase(FileModel):
    """What every event has: when (seconds since the start) and which kind."""

    t: float
    kind: str


class StepStart(EventBase):
    """A load step began."""

    kind: Literal["step_start"] = "step_start"
    index: int
    phase: str
    users: int | None = None
    rate: float | None = None
    planned_s: float | None = None


class StepEnd(EventBase):
    """A load step ended, with the live verdict (None when the run stopped during it)."""

    kind: Literal["step_end"] = "step_end"
    index: int
    live_pass: bool | None = None
    users_reached: int | None = None
    """Users running when it ended (closed loop; absent for open-loop steps and in files
    written before it was recorded): a step whose users were still starting (a spawn rate too
    slow for its length, workers too busy) offered less load than planned."""


class WorkersReady(EventBase):
    """Every Locust worker connected."""

    kind: Literal["workers_ready"] = "workers_ready"
    workers: int


class WorkerLost(EventBase):
    """A worker died or stopped answering; its users moved to the others."""

    kind: Literal["worker_lost"] = "worker_lost"
    worker: int | None = None
    pid: int | None = None
    detail: str = ""


class Finished(EventBase):
    """The run ended, and why."""

    kind: Literal["finished"] = "finished"
    interrupted: bool
    stop_reason: str


class RunnerFailed(EventBase):
    """The runner itself failed (its plan driver or sampler); the run stopped there."""

    kind: Literal["run_error"] = "run_error"
    where: str
    error: str


class StackEvent(EventBase):
    """Something that happened to a cloud run's load-test stack (``loadtest.cloud``)."""

    stack: str
    at: float | None = None
    """Unix time (the stack lives before and after the run's own clock starts)."""


class StackCreating(StackEvent):
    """The journal entry is written; the stack is about to be created."""

    kind: Literal["stack_creating"] = "stack_creating"
    project: str
    platform_stack: str
    expires_at: float


class StackUp(StackEvent):
    """``pulumi up`` finished: how long it took and which outputs it gave (names only)."""

    kind: Literal["stack_up"] = "stack_up"
    project: str
    up_s: float
    outputs: list[str] = Field(default_factory=list)


class StackError(StackEvent):
    """Creating the stack, or the run on it, failed (the destroy follows)."""

    kind: Literal["stack_error"] = "stack_error"
    phase: str
    error: str


class FollowFailed(EventBase):
    """Following the run in the cluster failed; ``master_lost``: the master is gone for good."""

    kind: Literal["follow_failed"] = "follow_failed"
    master_lost: bool
    error: str
    at: float | None = None


class StackDestroyed(StackEvent):
    """The stack is destroyed and removed: how long it lived and, when known, what it cost."""

    kind: Literal["stack_destroyed"] = "stack_destroyed"
    lifetime_s: float
    destroy_s: float
    attempts: int
    pending_creates_dropped: list[str] = Field(default_factory=list)
    """URNs whose create never finished: they may exist in AWS (their ``run-id`` tag finds them)."""
    usd: float | None = None
    hourly_usd: float | None = None


class StackDestroyFailed(StackEvent):
    """The stack could not be destroyed: it may still cost; ``command`` finishes the job."""

    kind: Literal["stack_destroy_failed"] = "stack_destroy_failed"
    attempts: int
    error: str
    command: str
    lifetime_s: float


class OtherEvent(EventBase):
    """A kind this version does not know (e.g. a newer runner's); kept with all its fields."""

    model_config = ConfigDict(extra="allow")


def _event_tag(value: Any) -> str:
    kind = _kind(value)
    return kind if kind in _EVENT_KINDS else "other"


RunEvent = Annotated[
    Annotated[StepStart, Tag("step_start")]
    | Annotated[StepEnd, Tag("step_end")]
    | Annotated[WorkersReady, Tag("workers_ready")]
    | Annotated[WorkerLost, Tag("worker_lost")]
    | Annotated[Finished, Tag("finished")]
    | Annotated[RunnerFailed, Tag("run_error")]
    | Annotated[StackCreating, Tag("stack_creating")]
    | Annotated[StackUp, Tag("stack_up")]
    | Annotated[StackError, Tag("stack_error")]
    | Annotated[FollowFailed, Tag("follow_failed")]
    | Annotated[StackDestroyed, Tag("stack_destroyed")]
    | Annotated[StackDestroyFailed, Tag("stack_destroy_failed")]
    | Annotated[OtherEvent, Tag("other")],
    Discriminator(_event_tag),
]
"""One line of ``events.jsonl``, by ``kind``. A new kind: a model with a ``Literal`` kind, and
a tagged member here; a reader that does not know it keeps it as an ``OtherEvent``."""
_EVENT_KINDS = _tags(RunEvent) - {"other"}


# -- config.json -----------------------------------------------------------------------------


def _objectives(value: Any) -> slo.Slo:
    if isinstance(value, slo.Slo):
        return value
    if not isinstance(value, dict):
        raise ValueError("write the objectives as an object of limits")
    try:
        return slo.Slo.from_json(value)
    except (slo.SloError, ValueError, TypeError) as err:
        raise ValueError(str(err)) from None


Objectives = Annotated[
    slo.Slo, PlainValidator(_objectives), PlainSerializer(lambda s: s.to_json(), return_type=dict)
]
"""The SLOs, written flat as ``{"success_rate": 0.99, "ttft_p99_ms": 2000.0, ...}``."""


class PlanInfo(FileModel):
    """The plan as run: its name, what it does, and the options it read (scaled)."""

    name: str
    summary: str = ""
    options: plans.PlanOptions | None = None
    open_loop: bool = False


class Versions(FileModel):
    """What wrote the run."""

    qwen_stress: str = "unknown"
    locust: str = "unknown"
    python: str = "unknown"


class RunConfig(Versioned):
    """``config.json``: everything to reproduce the run, and what its analysis reads.

    ``options`` holds the flags as given; the fields next to it what they resolved to (the
    target, the model asked for, the plan, the time scale, the workload mix, the SLOs).
    """

    run_id: str
    started_at: float
    """Epoch seconds of the start: the zero of every ``t`` in the run's files."""
    started_at_iso: str = ""
    plan: PlanInfo
    time_scale: float = Field(default=1.0, gt=0)
    target: TargetInfo = Field(default_factory=lambda: OtherTarget(kind="unknown"))
    model: str = ""
    workload: Workload | None = None
    slo: Objectives
    workers: int | None = None
    api_key_env: str | None = None
    """The name of the variable holding the key, never its value."""
    max_inflight: int | None = None
    command: list[str] = Field(default_factory=list)
    versions: Versions | None = None
    options: RunOptions | None = None
    """The flags of ``run`` (absent in files written before version 1)."""
    loadgen: LoadGenInfo | None = None
    """A cloud run's load-generator nodes (``loadtest.cloud.sizing.Sizing.info``): priced from
    the load-test stack's creation to its destruction."""


# -- summary.json ----------------------------------------------------------------------------


class Distribution(FileModel):
    """Mean and percentiles of a latency (ms), exact over every request."""

    avg: float
    p50: float
    p90: float
    p95: float
    p99: float

    def stat(self, name: str) -> float:
        """A statistic by its SLO name (``mean``, ``p50`` ... ``p99``)."""
        return {
            "mean": self.avg,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
        }[name]


class Stats(FileModel):
    """One window of records (a step, or the whole run): counts, rates and latencies."""

    requests: int
    failures: int
    failures_by_reason: dict[str, int] = Field(default_factory=dict)
    success_rate: float | None = None
    rps: float
    attempted_rps: float = 0.0
    output_tokens_per_s: float = 0.0
    goodput_rps: float = 0.0
    ttft_ms: Distribution | None = None
    itl_ms: Distribution | None = None
    tpot_ms: Distribution | None = None
    e2e_ms: Distribution | None = None
    prompt_tokens_avg: float | None = None
    output_tokens_avg: float | None = None
    usage_missing: int = 0
    output_tokens: int | None = None
    """Output tokens of the successful requests (None: written before it was counted)."""
    good_requests: int | None = None
    """Successful requests within the SLOs' per-request limits: the goodput's count."""
    late_ms: Distribution | None = None
    """Open-loop plans: how late arrivals were sent."""

    def latency(self, metric: str) -> Distribution | None:
        """The distribution of ``ttft``, ``itl``, ``tpot`` or ``e2e``."""
        return {
            "ttft": self.ttft_ms,
            "itl": self.itl_ms,
            "tpot": self.tpot_ms,
            "e2e": self.e2e_ms,
        }[metric]


class SloCheck(FileModel):
    """One objective against one step's stats."""

    key: str
    limit: float
    value: float | None
    passed: bool = Field(alias="pass")


class StepStats(Stats):
    """A load step as it ran, with its SLO verdict and the busiest worker's CPU."""

    index: int
    phase: str
    users: int | None = None
    """The users planned (closed loop)."""
    users_reached: int | None = None
    """The users running when the step ended (None: not recorded, or open loop)."""
    load_reached: bool = True
    """False: fewer users ran than planned; the figures are for less load, and the step
    cannot be the capacity."""
    rate: float | None = None
    start_s: float
    end_s: float
    slo_pass: bool
    slo_checks: list[SloCheck] = Field(default_factory=list)
    worker_cpu_pct: float | None = None
    cpu_flag: bool = False


class OverallStats(Stats):
    """Every request sent during a step, with the first failure of each reason."""

    slo_pass: bool
    failure_examples: dict[str, str] = Field(default_factory=dict)


class Capacity(FileModel):
    """The highest load that met the SLOs (and was reached), and whether a heavier one failed."""

    max_users_within_slo: int | None
    max_rps_within_slo: float | None
    step: int | None
    limit_found: bool = True
    """False: no heavier step failed, the figure is a lower bound (older summaries lack it;
    they were written when only a failure ended a ramp)."""


class Verdict(FileModel):
    """The CI verdict behind ``--fail-on-slo``."""

    passed: bool = Field(alias="pass")
    rule: str
    failed_steps: list[int] = Field(default_factory=list)


class CpuFigures(FileModel):
    """The load generator's CPU: steps in which a worker was too busy to measure well."""

    threshold_pct: float
    max_worker_pct: float | None = None
    flagged_steps: list[int] = Field(default_factory=list)


Cost = RunCost
"""``summary.json``'s ``cost``: lives in ``domain.run_cost`` so ``costs`` reads it typed too."""


class ScaleOut(FileModel):
    """One scale-out: the metric above target until a new replica served (or not)."""

    start_s: float
    end_s: float
    from_replicas: int
    to_replicas: int
    outcome: str
    """``served``, ``metric fell back`` or ``run ended``."""
    lag_s: float | None
    """Cluster seconds from the crossing to the new replica serving (served only)."""
    violation_s: float
    """Cluster seconds inside the scale-out whose requests failed the SLOs."""


class ScaleUpLag(FileModel):
    """Scale-up lags of the scale-outs that were served (cluster seconds)."""

    count: int
    median: float | None
    max: float | None


class ReplicaRange(FileModel):
    """Ready replicas seen, and the most the HPA asked for."""

    min: int
    max: int
    max_desired: int


class NodeRange(FileModel):
    """GPU nodes seen."""

    min: int
    max: int


class Autoscaling(FileModel):
    """How the fleet scaled, in cluster time (run seconds divided by the time scale)."""

    time_scale: float
    scale_outs: list[ScaleOut]
    scale_up_lag_s: ScaleUpLag
    scale_out_s: float
    slo_violation_during_scale_out_s: float
    replica_hours: float
    gpu_hours: float
    replicas: ReplicaRange
    nodes: NodeRange


class OpenLoop(FileModel):
    """Open-loop counters at the end: arrivals drawn, sent late, dropped at the in-flight cap."""

    arrivals: int
    late: int
    dropped: int


class Analysis(FileModel):
    """What the records and steps say: stats, verdicts, capacity (part of the summary)."""

    plan: str
    overall: OverallStats
    steps: list[StepStats]
    capacity: Capacity
    verdict: Verdict
    cpu: CpuFigures


class Summary(Versioned):
    """``summary.json``: the analysis of a run directory, from its files alone."""

    run_id: str
    plan: str
    plan_summary: str = ""
    target: TargetInfo
    slo: Objectives
    overall: OverallStats
    steps: list[StepStats]
    capacity: Capacity
    verdict: Verdict
    cpu: CpuFigures
    cost: Cost
    autoscaling: Autoscaling | None = None
    target_cpu_max: float | None = None
    duration_s: float
    time_scale: float = 1.0
    workers: int | None = None
    interrupted: bool
    stop_reason: str
    events: list[RunEvent] = Field(default_factory=list)
    """Events other than steps starting and ending and the run finishing."""
    open_loop: OpenLoop | None = None
    unread: list[str] = Field(default_factory=list)
    """What the run directory's files did not let the analysis read, and what that leaves out."""
