"""``qwen-stress run`` and ``qwen-stress report``: parse and check every flag, then hand over.

Every mistake (a bad workload file, an unknown plan, a missing API-key variable, an ``--out``
that already holds a run) is reported before a process starts or a request is sent.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from domain.durations import TIME_SCALES
from domain.run_cost import PlatformInfo
from domain.stack_config import load_stack_file, stack_name
from domain.vllm_args import API_KEY_ENV, api_key_problem
from loadtest import plans, run_files, slo, workload
from loadtest.cloud.sizing import (
    DEFAULT_INSTANCE_TYPE,
    EXISTING_MAX_WORKERS,
)
from loadtest.redact import Redactor
from loadtest.run_options import (
    CLOUD_USERS_PER_WORKER,
    LOCAL_TIME_SCALE,
    LOCAL_WORKERS,
    MAX_RATE_PER_WORKER,
    MAX_USERS_PER_WORKER,
    OptionsError,
    RunOptions,
)
from loadtest.run_spec import RunSpec
from loadtest.schema import AutoscalingInfo, Summary
from loadtest.targets import (
    POD_METRICS_NOTE,
    FleetTarget,
    Target,
    TargetError,
    UrlTarget,
    list_models,
)

if TYPE_CHECKING:  # the runner imports Locust: loaded only once a run starts
    from loadtest.cluster_target import ClusterTarget
    from loadtest.local_runner import RunOutcome

EXIT_SLO_FAILED = 1
EXIT_RUN_FAILED = 1
"""The runner failed mid-run (its plan driver or sampler); the report of what ran is written."""
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_GPU = "A10G"


class UsageError(ValueError):
    """A flag is wrong; printed as one line, exit code 2."""


def fail(message: str) -> typer.Exit:
    """Print a user mistake as one red line; the caller raises the exit (code 2)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def out_dir(out: Path | None, plan: str) -> Path:
    """The run directory to create: new or empty, and creatable here (nothing is left made)."""
    given = out is not None
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{plan}"
    name = f"--out {out}" if given else f"the run directory {out} (--out's default)"
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{name} is not a directory; name a new directory with --out")
        try:
            held = any(out.iterdir())
        except OSError as err:
            raise UsageError(f"{name} cannot be read ({err.strerror}); choose another") from None
        if held:
            raise UsageError(f"{name} already holds files; choose a new directory")
        place = out
    else:
        place = next(p for p in out.absolute().parents if p.exists())
        if not place.is_dir():
            raise UsageError(f"{name}: {place} is a file, not a directory; choose another --out")
    # Tried, not predicted from permission bits: root passes every access() check, and a
    # read-only or virtual file system (/proc) refuses anyway. The trial leaves nothing behind.
    try:
        tempfile.TemporaryDirectory(dir=place, prefix=".qwen-stress-").cleanup()
    except OSError as err:
        raise UsageError(
            f"{name}: cannot create a directory in {place} ({err.strerror}); choose a "
            "directory you can write to"
        ) from None
    return out


def local_target(
    model: str | None,
    gpu: str | None,
    config: Path | None,
    out: Path,
    *,
    api_key: str,
    time_scale: float,
) -> FleetTarget:
    """The autoscaling twin of a stack file, or of a model on a GPU type, checked before start."""
    # The twin's modules load only for local runs: a run against --url never needs them.
    from twin.fleet.cli import FleetUsageError, fleet_spec  # noqa: PLC0415

    if config is None:
        model, gpu = model or DEFAULT_MODEL, gpu or DEFAULT_GPU
    try:
        spec = fleet_spec(model, gpu, config)
    except FleetUsageError as err:
        raise UsageError(str(err)) from None
    source = ["--config", str(config)] if config else ["--model", spec.model, "--gpu", spec.gpu]
    fleet = AutoscalingInfo.model_validate(spec.describe())
    log = out / "logs" / "target.log"
    if config is None:
        return FleetTarget(fleet, source, time_scale, log, api_key)
    # fleet_spec read the file already: it is valid, and its GPU group prices the rehearsal
    stack = load_stack_file(config)
    return FleetTarget(
        fleet,
        source,
        time_scale,
        log,
        api_key,
        capacity_type=stack.gpu.capacity_type,
        platform=PlatformInfo.of_stack(stack, stack_name(config)),
    )


def run(  # noqa: PLR0917 - typer maps each parameter to a flag
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            show_default="local twin",
            help="OpenAI-compatible endpoint to load: its base URL, with or without /v1 (not an "
            "endpoint's own path); without it, the local autoscaling twin (an emulated vLLM "
            "fleet) is started on 127.0.0.1.",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            metavar="VAR",
            help="Environment variable holding the API key, sent as Authorization: Bearer; the "
            "key is never written anywhere (echoed back by the target, it is redacted).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="M",
            show_default=f"first of /v1/models; locally {DEFAULT_MODEL}",
            help="Model to request, or to emulate locally.",
        ),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            metavar="G", show_default=DEFAULT_GPU, help="GPU to emulate (local target only)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Pulumi.<stack>.yaml whose model, vLLM settings, GPU node group and autoscaling "
            "the local twin rehearses; with --url and --prometheus, the stack whose cluster "
            "Prometheus is read; with --rehearse, the stack whose load-test stack is rendered "
            "and run here; with --stack, the stack file when it is not Pulumi.<stack>.yaml in "
            "this directory.",
        ),
    ] = None,
    plan: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            show_default="capacity (fixed with --users or --duration, poisson with --rate)",
            help=f"Load plan: {', '.join(sorted(plans.PLANS))}. A flag the plan does not read "
            "(--duration but for fixed, --rate but for poisson, --users but for fixed and soak) "
            "is refused.",
        ),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Fixed load: concurrent users (with --duration); the soak plan's level. "
            f"Every user count: at most {MAX_USERS_PER_WORKER:,} per worker.",
        ),
    ] = None,
    spawn_rate: Annotated[
        float, typer.Option(metavar="R", help="Users started per second.")
    ] = 50.0,
    duration: Annotated[
        str | None,
        typer.Option(metavar="T", help="Fixed load: how long (30s, 5m, 1h30m)."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            metavar="R[,R2,...]",
            help="poisson plan: arrivals per second, one step per rate (at most "
            f"{MAX_RATE_PER_WORKER:,.0f} per worker).",
        ),
    ] = None,
    step_duration: Annotated[
        str, typer.Option(metavar="T", help="How long each load step is held.")
    ] = "2m",
    baseline_users: Annotated[
        int, typer.Option(metavar="N", help="Users of the baseline and cool-down steps.")
    ] = 50,
    step_users: Annotated[int, typer.Option(metavar="N", help="Users added per ramp step.")] = 50,
    max_users: Annotated[
        int,
        typer.Option(metavar="N", help="Ramp ceiling (capacity, ramp) and spike height."),
    ] = 500,
    soak: Annotated[
        str,
        typer.Option(metavar="T", help="Soak length (capacity's peak soak, the soak plan)."),
    ] = "10m",
    time_scale: Annotated[
        float | None,
        typer.Option(
            metavar="F",
            show_default=f"1 with --url or --stack, {LOCAL_TIME_SCALE:g} locally",
            help=f"Multiplies every plan duration, {TIME_SCALES[0]:g} to {TIME_SCALES[1]:g}; "
            "locally also every delay and window of the twin's control plane.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            metavar="K",
            show_default=f"{LOCAL_WORKERS}; with --stack or --rehearse, one per slot of the "
            "load-generator nodes",
            help="Locust worker processes (1-64); in a cloud run, worker pods (each carries at "
            f"most {CLOUD_USERS_PER_WORKER} users).",
        ),
    ] = None,
    workload_file: Annotated[
        Path | None,
        typer.Option(
            "--workload",
            metavar="FILE",
            show_default="built-in mix",
            help="Workload mix (YAML, see the README's Workload file).",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(metavar="N", show_default="per task", help="Fix every task's max_tokens."),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            metavar="E",
            show_default="from the workload",
            help="chat, completions or generate (overrides the workload file).",
        ),
    ] = None,
    slo_text: Annotated[
        str | None,
        typer.Option(
            "--slo",
            metavar="KEY=VALUE,...",
            show_default="see SLOs",
            help="Change or add objectives, e.g. success_rate=99.5%,ttft_p99_ms=1500,"
            "itl_p50_ms=off (KEY=off removes an objective, success_rate too).",
        ),
    ] = None,
    fail_on_slo: Annotated[
        bool,
        typer.Option("--fail-on-slo", help="Exit 1 when the SLO verdict fails (a CI gate)."),
    ] = False,
    max_inflight: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="poisson plan: open requests at most, over all workers (each takes its share; "
            "with fewer than --workers, some get none); later arrivals are dropped and counted.",
        ),
    ] = 1000,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            show_default="runs/<timestamp>-<plan>",
            help="The run directory to create.",
        ),
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="With --url and --config Pulumi.<stack>.yaml: the stack's Prometheus; every "
            "timeline sample gets the fleet's replicas, nodes, GPUs, queue, KV usage per "
            "replica and GPU-/replica-hours from it (else only one pod's /metrics).",
        ),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option(
            metavar="STACK",
            help="Run in this platform stack's cluster (dev, org/qwen-stress/dev, as pulumi "
            "names it): Locust's master and workers as a load-test stack of their own, "
            "destroyed after the run. Takes no --url, --prometheus, --model, --gpu or "
            "--api-key-env: the stack's own.",
        ),
    ] = None,
    rehearse: Annotated[
        bool,
        typer.Option(
            "--rehearse",
            help="With --config Pulumi.<stack>.yaml: render that stack's load-test stack into "
            "the run directory's cluster/ and run its master and worker pods as local "
            "processes against the local twin.",
        ),
    ] = False,
    loadgen_nodes: Annotated[
        str | None,
        typer.Option(
            metavar="new|existing",
            show_default="new",
            help="With --stack: load-generator nodes of the run's own, or the system nodes "
            f"(at most {EXISTING_MAX_WORKERS} workers).",
        ),
    ] = None,
    loadgen_instance_type: Annotated[
        str | None,
        typer.Option(
            metavar="TYPE",
            show_default=DEFAULT_INSTANCE_TYPE,
            help="With --stack: instance type of new load-generator nodes (from the catalog: no "
            "GPU, at least 2 vCPUs).",
        ),
    ] = None,
    loadgen_capacity: Annotated[
        str | None,
        typer.Option(
            metavar="spot|on-demand",
            show_default="spot",
            help="With --stack: capacity type of new load-generator nodes.",
        ),
    ] = None,
    hourly_usd: Annotated[
        float | None,
        typer.Option(
            metavar="USD",
            help="With --url: what the endpoint costs per hour, per replica when the target "
            "reports its replicas (with --prometheus), else for the whole endpoint; prices the "
            "run when its GPU is not known.",
        ),
    ] = None,
) -> None:
    """Run a load plan with distributed Locust and write the run directory and reports."""
    try:
        options = RunOptions.from_flags(
            url=url,
            api_key_env=api_key_env,
            model=model,
            gpu=gpu,
            config=config,
            plan=plan,
            users=users,
            spawn_rate=spawn_rate,
            duration=duration,
            rate=rate,
            step_duration=step_duration,
            baseline_users=baseline_users,
            step_users=step_users,
            max_users=max_users,
            soak=soak,
            time_scale=time_scale,
            workers=workers,
            workload=workload_file,
            max_tokens=max_tokens,
            endpoint=endpoint,
            slo=slo_text,
            fail_on_slo=fail_on_slo,
            max_inflight=max_inflight,
            out=out,
            prometheus=prometheus,
            stack=stack,
            rehearse=rehearse,
            loadgen_nodes=loadgen_nodes,
            loadgen_instance_type=loadgen_instance_type,
            loadgen_capacity=loadgen_capacity,
            hourly_usd=hourly_usd,
        )
        if options.cloud:
            _cloud(options)
            return
        spec = _spec(options)
    except (OptionsError, UsageError, workload.WorkloadError, plans.PlanError, TargetError) as err:
        raise fail(str(err)) from None
    if isinstance(spec.target, UrlTarget):
        typer.secho(f"note: {POD_METRICS_NOTE}", fg=typer.colors.YELLOW, err=True)
    summary, outcome = _execute(spec)
    if outcome.error:
        typer.secho(
            f"error: {outcome.error}; the report covers what ran, the traceback is in "
            f"{outcome.run_dir / 'logs' / 'runner.log'}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(EXIT_RUN_FAILED)
    if outcome.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if options.fail_on_slo and not summary.verdict.passed:
        raise typer.Exit(EXIT_SLO_FAILED)


def _cloud(options: RunOptions) -> None:
    """``--stack`` and ``--rehearse``: Pulumi and the Kubernetes client load only now."""
    from loadtest.cloud.run_command import run_cloud  # noqa: PLC0415

    run_cloud(options)


def _execute(spec: RunSpec) -> tuple[Summary, RunOutcome]:
    """Run, analyse, print; only here is Locust imported (it patches the stdlib for gevent)."""
    from loadtest.local_runner import LocalRun, RunError  # noqa: PLC0415
    from loadtest.summary import write  # noqa: PLC0415

    redact = Redactor.from_env(spec.api_key_env)
    try:
        outcome = LocalRun(spec).run()
    except (TargetError, RunError) as err:
        # The message may quote the target's log or answer: no key in what is printed.
        typer.secho(f"error: {redact(str(err))}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if not (outcome.run_dir / run_files.CONFIG).exists():
        typer.echo("interrupted before the load started: nothing to report")
        raise typer.Exit(EXIT_INTERRUPTED)
    try:
        summary = write(outcome.run_dir)
    except run_files.RunDirError as err:
        raise fail(str(err)) from None
    print_result(outcome.run_dir, summary)
    return summary, outcome


def _spec(options: RunOptions) -> RunSpec:
    """Resolve the checked flags: read the workload file, start nothing, ask the endpoint once."""
    mix = (
        workload.load(options.workload)
        .with_max_tokens(options.max_tokens)
        .with_endpoint(options.endpoint)
    )
    key_env = options.api_key_env
    if key_env is not None:
        key = os.environ.get(key_env)
        if not key:
            raise UsageError(
                f"--api-key-env {key_env}: that environment variable is not set or empty"
            )
        problem = api_key_problem(key)
        if problem is not None:
            # Never the value: the message is printed, and may be pasted into a ticket.
            raise UsageError(
                f"--api-key-env {key_env}: the key in ${key_env} {problem}, which an "
                "Authorization header cannot carry; set the variable to the key alone"
            )
    out = out_dir(options.out, options.plan_name)
    target: Target
    model_name = options.model
    if options.url is None:
        # The twin's replicas check a key like vLLM's --api-key does, so the run exercises auth:
        # the caller's key if one was named, else a fresh one the workers inherit by name.
        if key_env is None:
            key_env = API_KEY_ENV
            os.environ[key_env] = secrets.token_hex(16)
        target = local_target(
            options.model,
            options.gpu,
            options.config,
            out,
            api_key=os.environ[key_env],
            time_scale=options.effective_time_scale,
        )
        model_name = target.model
    else:
        target = UrlTarget(options.url)
        if options.prometheus is not None:
            assert options.config is not None  # RunOptions asks for it with --prometheus
            cluster = _cluster_target(target, options.prometheus, options.config)
            model_name = model_name or cluster.queries.served_name
            target = cluster
        if mix.endpoint != "generate":
            model_name = _check_endpoint(target.base_url, key_env, model_name)
    return RunSpec(
        out_dir=out,
        plan=options.load_plan(),
        plan_options=options.plan_options(),
        workload=mix,
        slo=slo.parse(options.slo),
        target=target,
        model=model_name or "",
        options=options,
        workers=options.workers or LOCAL_WORKERS,
        time_scale=options.effective_time_scale,
        api_key_env=key_env,
        max_inflight=options.max_inflight,
        command=sys.argv[1:],
    )


def _cluster_target(base: Target, prometheus: str, config: Path) -> ClusterTarget:
    """The endpoint, with its fleet read from the stack's Prometheus; checked once now."""
    from domain.stack_config import ConfigError  # noqa: PLC0415
    from loadtest.cluster_target import ClusterTarget, PrometheusError  # noqa: PLC0415

    try:
        target = ClusterTarget.for_stack(
            base, prometheus, load_stack_file(config), stack_name(config)
        )
    except ConfigError as err:
        raise UsageError(str(err)) from None
    try:
        target.prometheus.query(target.queries.instant["ready_replicas"], time.time())
    except PrometheusError as err:
        raise UsageError(f"--prometheus {prometheus}: {err}") from None
    return target


def _check_endpoint(base_url: str, key_env: str | None, model: str | None) -> str | None:
    """Ask ``/v1/models`` once: a refused key stops here, and it names the model if none was given.

    Without this, a wrong key is a run of instant 401s; a target that does not answer is left
    to the run itself, which counts the failures and reports them.
    """
    status, found = list_models(base_url, os.environ.get(key_env) if key_env else None)
    url = f"{base_url}/v1/models"
    if status in (401, 403):
        fix = (
            f"check the key in ${key_env} (--api-key-env)"
            if key_env
            else "name the variable holding the key with --api-key-env"
        )
        raise UsageError(f"{url} answered HTTP {status}, the API key was refused: {fix}")
    if model is not None:
        return model
    if not found:
        answer = "nothing answered" if status == 0 else f"HTTP {status}"
        raise UsageError(f"cannot list the models at {url} ({answer}); pass --model")
    return found[0]


def print_result(run_dir: Path, summary: Summary) -> None:
    """The headline, warnings, SLO verdict and where the reports are."""
    from loadtest.metric_text import headline, warnings  # noqa: PLC0415

    typer.echo(headline(summary))
    for warning in warnings(summary):
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW)
    verdict = summary.verdict
    failed = ", ".join(map(str, verdict.failed_steps))
    typer.echo(
        f"SLO verdict: {'pass' if verdict.passed else 'fail'} (rule: {verdict.rule}"
        + (f"; failed steps: {failed})" if failed else ")")
    )
    typer.echo(f"report: {run_dir / run_files.REPORT_HTML}")
    typer.echo(f"        {run_dir / run_files.REPORT_MD}")


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `qwen-stress run`.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a summary.json that counts more requests or steps than the files now "
            "give (a file went missing or lines became unreadable).",
        ),
    ] = False,
) -> None:
    """Rebuild summary.json, report.html and report.md from a run directory's files."""
    from loadtest.summary import write  # noqa: PLC0415 - plotly loads only when reporting

    try:
        summary = write(run_dir, force=force)
    except run_files.RunDirError as err:
        raise fail(str(err)) from None
    print_result(run_dir, summary)
