"""``qwen-stress run --stack`` and ``--rehearse``: from checked flags to a destroyed stack.

Both take the same path: the platform's outputs (the deployed stack's, through the Automation
API; or, for the rehearsal, those its stack file implies) -> the run's payload and the
``LoadTestSpec`` (every mistake refused here, nothing created) -> the pre-flight -> the
orchestrator (journal, ``up``, the follower bringing the run directory home, the destroy
whatever happens). The caller writes the reports from the run directory, as for a local run.

Pulumi and the Kubernetes client load only here, when a cloud run starts.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from domain.stack_config import ConfigError, StackConfig, load_stack_file
from loadtest import plans
from loadtest.cloud import delivery, preflight
from loadtest.cloud.follower import Connector, Follower
from loadtest.cloud.journal import Journal, state_dir
from loadtest.cloud.orchestrator import Orchestrator, Outcome, StackRequest
from loadtest.cloud.run_events import RunEventLog
from loadtest.cloud.sizing import Sizing, SizingError
from loadtest.cloud.spec import LoadGenOptions, LoadTestSpec, PlatformOutputs, SpecError, describe
from loadtest.cloud.stack import program
from loadtest.cloud.workspace import StackRef, Workspace, WorkspaceError
from loadtest.cluster_target import ClusterFleet
from loadtest.payload import RunPayload
from loadtest.redact import Redactor
from loadtest.run_options import RunOptions
from loadtest.workload import Workload

_RUN_ID_CHARS = re.compile(r"[^a-z0-9-]+")


MAX_PLAN_S = 7 * 86400
"""The longest plan a load-test stack runs (a week of nodes; a longer one is a mistake)."""


class CloudUsageError(ValueError):
    """A flag, the stack file or the platform stack does not allow this run; nothing was made."""


@dataclass
class CloudOutcome:
    """How the cloud run went: the orchestrator's outcome and what the stack was."""

    outcome: Outcome
    sizing: Sizing
    rehearsal: bool


def run_id_for(out: Path, plan: str, suffix: str | None = None) -> str:
    """A run id that names a stack, a namespace and labels: the run directory's, made safe.

    Lower case letters, digits and dashes, at most 40 characters, and a random suffix: two runs
    writing to directories of the same name (CI's ``$RUN_DIR``) never share a stack.
    """
    tail = suffix or secrets.token_hex(2)
    base = _RUN_ID_CHARS.sub("-", out.name.lower()).strip("-")[:34].strip("-")
    return f"{base or plan}-{tail}"


def plan_extent(options: RunOptions) -> tuple[int, float]:
    """The plan's peak concurrency and its longest length in seconds.

    Concurrency is users, or open requests for an open-loop plan; the longest length is with
    every step passing (the capacity plan then climbs to the top before its soak).
    """
    steps = plans.run_offline(options.load_plan(), lambda _step: True)
    peak = max((s.users for s in steps if s.users is not None), default=0)
    if any(s.rate is not None for s in steps):
        peak = max(peak, options.max_inflight)
    seconds = sum(s.duration_s for s in steps)
    if seconds > MAX_PLAN_S:
        raise CloudUsageError(
            f"the plan lasts {seconds / 86400:,.1f} days; a load-test stack runs at most "
            f"{MAX_PLAN_S // 86400} days (its Jobs' deadline and expiry follow the plan): "
            "shorten --step-duration, --soak or --duration, or lower --time-scale"
        )
    return max(peak, 1), seconds


def stack_file(options: RunOptions) -> tuple[Path, StackConfig]:
    """The stack file (``--config``, else ``Pulumi.<stack>.yaml`` here), read and checked."""
    if options.config is not None:
        path = options.config
    else:
        assert options.stack is not None
        path = Path(f"Pulumi.{StackRef.parse(options.stack).stack}.yaml")
        if not path.is_file():
            raise CloudUsageError(
                f"--stack {options.stack}: {path} is not in {Path.cwd()}; run from the platform "
                "project's directory, or name the stack file with --config"
            )
    try:
        return path, load_stack_file(path)
    except ConfigError as err:
        raise CloudUsageError(str(err)) from None


def loadgen_options(options: RunOptions) -> LoadGenOptions:
    """The load generators the flags ask for (unset flags keep the defaults)."""
    given: dict[str, Any] = {
        "nodes": options.loadgen_nodes,
        "instance_type": options.loadgen_instance_type,
        "capacity_type": options.loadgen_capacity,
        "workers": options.workers,
    }
    try:
        return LoadGenOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as err:
        raise CloudUsageError(
            describe(err)
            .replace("instance_type", "--loadgen-instance-type")
            .replace("capacity_type", "--loadgen-capacity")
        ) from None
    except ValueError as err:
        raise CloudUsageError(f"--loadgen-instance-type: {err}") from None


def loadgen_sizing(options: RunOptions) -> tuple[LoadGenOptions, Sizing]:
    """The load generators the flags ask for, sized for the plan's peak; checked before anything.

    ``CloudUsageError`` when the flags or the plan do not fit them (too few workers, more than
    the system nodes carry, a GPU or too small an instance type).
    """
    loadgen = loadgen_options(options)
    try:
        return loadgen, loadgen.size(plan_extent(options)[0])
    except SizingError as err:
        raise CloudUsageError(str(err)) from None


@dataclass
class Prepared:
    """A run ready to create its stack: everything below was checked."""

    ref: StackRef
    platform: PlatformOutputs
    spec: LoadTestSpec
    stack_config: StackConfig
    code_reason: str


def prepare(
    options: RunOptions,
    mix: Workload,
    out: Path,
    workspace: Workspace,
    stack_config: StackConfig,
    *,
    command: list[str],
    platform_stack: str,
    run_id: str | None = None,
    code_dir: Path,
) -> Prepared:
    """Read the platform's outputs and build the spec; ``CloudUsageError`` if it cannot be."""
    ref = StackRef.parse(platform_stack)
    try:
        raw = workspace.platform_outputs(ref)
        platform = PlatformOutputs.from_stack_outputs(
            str(ref), raw, aws_profile=stack_config.profile
        )
    except (WorkspaceError, SpecError) as err:
        raise CloudUsageError(str(err)) from None
    if platform.served_model_name != stack_config.model.served:
        raise CloudUsageError(
            f"platform stack {ref} serves {platform.served_model_name!r} but its stack file "
            f"says {stack_config.model.served!r}: run `pulumi up` on it, or pass the file it "
            "was deployed from with --config"
        )
    peak, seconds = plan_extent(options)
    loadgen, sized = loadgen_sizing(options)
    payload = RunPayload(
        options=options,
        workload=mix,
        cluster=ClusterFleet.from_stack(stack_config, ref.stack),
        loadgen=sized.info(),
        command=command,
    )
    try:
        choice = delivery.choose(
            delivery.project_version(),
            delivery.source_root(),
            code_dir,
            registry=delivery.OciRegistry(),
        )
    except delivery.DeliveryError as err:
        raise CloudUsageError(str(err)) from None
    now = datetime.now(UTC)
    try:
        spec = LoadTestSpec(
            run_id=run_id or run_id_for(out, options.plan_name),
            platform=platform,
            loadgen=loadgen,
            peak_users=peak,
            plan_seconds=seconds,
            code=choice.code,
            payload=payload.model_dump_json(),
            expires_at=LoadTestSpec.expiry(now, seconds),
        )
    except ValidationError as err:
        raise CloudUsageError(describe(err)) from None
    except SizingError as err:
        raise CloudUsageError(str(err)) from None
    return Prepared(ref, platform, spec, stack_config, choice.reason)


def describe_sizing(sizing: Sizing, workers: int) -> str:
    """One line: what the load generators are and what they cost per hour."""
    if sizing.instance is None:
        return (
            f"load generators: the master and {workers} worker pods on the system nodes "
            "(no nodes of their own)"
        )
    return (
        f"load generators: {sizing.nodes} x {sizing.instance.instance_type} "
        f"({sizing.capacity_type}), the master and {workers} worker pods, about "
        f"${sizing.hourly_usd:.2f}/h while the stack lives"
    )


@contextmanager
def code_workdir() -> Iterator[Path]:
    """Where the pods' wheel is built (removed once the spec holds its bytes)."""
    with tempfile.TemporaryDirectory(prefix="qwen-stress-wheel-") as tmp:
        yield Path(tmp)


def run_stack(
    prepared: Prepared,
    out: Path,
    workspace: Workspace,
    journal: Journal,
    connector_for: Callable[[Mapping[str, Any]], Connector],
    *,
    check: Callable[[], None] | None,
    rehearsal: bool,
    show_live: bool = True,
    say: Callable[[str], None] | None = None,
    follower_options: Mapping[str, Any] | None = None,
) -> CloudOutcome:
    """Create, follow and destroy the run's stack; the orchestrator's outcome."""
    spec = prepared.spec
    sizing = spec.sizing()
    out.mkdir(parents=True, exist_ok=True)
    events = RunEventLog(out)
    kwargs: dict[str, Any] = {} if say is None else {"say": say}
    orchestrator = Orchestrator(workspace, journal, events=events, **kwargs)
    lifetime = (spec.expires_at - datetime.now(UTC)).total_seconds()
    request = StackRequest(
        run_id=spec.run_id,
        platform_stack=prepared.ref,
        program=program(spec),
        run_dir=out,
        lifetime_s=lifetime,
        config={"aws:region": spec.platform.region},
        # A rehearsal creates nothing that costs: no figure, rather than a made-up one.
        hourly_usd=None if rehearsal else round(sizing.hourly_usd, 4),
    )
    follower = Follower(
        connector_for,
        out,
        events,
        show_live=show_live,
        redact=Redactor([prepared.platform.api_key.get_secret_value()]),
        **dict(follower_options or {}),
    )
    outcome = orchestrator.run(request, follower, preflight=check)
    return CloudOutcome(outcome, sizing, rehearsal)


def cluster_check(prepared: Prepared, probe: preflight.ClusterProbe) -> Callable[[], None]:
    """The pre-flight of ``preflight.check`` for this platform."""
    platform = preflight.Platform(
        served_name=prepared.platform.served_model_name,
        triggers=tuple(prepared.stack_config.autoscaling.triggers()),
        namespace=prepared.platform.vllm_namespace,
    )
    key = prepared.platform.api_key.get_secret_value()

    def check() -> None:
        preflight.check(probe, platform, key)

    return check


def automation_workspace(ref: StackRef) -> Workspace:
    """The user's Pulumi backend, from the platform project in this directory."""
    from loadtest.cloud.automation import AutomationWorkspace  # noqa: PLC0415

    try:
        return AutomationWorkspace(
            platform_dir=Path.cwd(), work_root=state_dir() / "work", platform_stack=ref
        )
    except WorkspaceError as err:
        raise CloudUsageError(str(err)) from None


def kube_probe(kubeconfig: str) -> preflight.ClusterProbe:
    """The pre-flight's probe of the platform's cluster."""
    from loadtest.cloud.kube_probe import KubeProbe  # noqa: PLC0415

    return KubeProbe.from_kubeconfig(kubeconfig)


def port_forward(kubeconfig: str) -> Callable[[Mapping[str, Any]], Connector]:
    """The follower's connector: a port-forward to the master pod of the run in the outputs."""
    from loadtest.cloud.port_forward import PortForwardConnector  # noqa: PLC0415

    def connect(outputs: Mapping[str, Any]) -> Connector:
        return PortForwardConnector.from_kubeconfig(kubeconfig, str(outputs["runId"]))

    return connect
