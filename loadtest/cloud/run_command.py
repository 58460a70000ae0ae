"""The ``run`` command's cloud half: ``--stack`` (the deployed cluster) and ``--rehearse`` (here).

Called by ``loadtest.run_cli.run`` once the flags are checked; prints what is being made and
what it costs, runs the stack (``cloud_run``), writes the reports from the run directory the
follower brought home, and ends with how long the stack lived and that it is gone. Exit codes
as for a local run (0; 1 SLO failed with ``--fail-on-slo`` or the run failed; 2 bad input or a
failed pre-flight, nothing created; 130 interrupted), plus 3: the stack could not be destroyed.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

import typer

from domain.stack_config import StackConfig, stack_name
from loadtest import run_cli, run_files, workload
from loadtest.cloud import cloud_run
from loadtest.cloud.journal import Journal
from loadtest.cloud.orchestrator import PreflightError
from loadtest.cloud.workspace import StackRef
from loadtest.run_options import RunOptions
from loadtest.schema import Summary
from loadtest.targets import TargetError


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(int(seconds), 0), 60)
    return f"{minutes}m{secs:02d}s"


def _final_line(result: cloud_run.CloudOutcome) -> str:
    """How long the stack lived, that it is gone, and what it cost."""
    outcome = result.outcome
    lived = f"lived {_clock(outcome.lifetime_s or 0.0)}"
    if outcome.teardown_error:
        return outcome.teardown_error
    if not outcome.created:
        return "no load-test stack was created"
    if result.rehearsal:
        real = (
            f"; a real run's load generators would cost about ${result.sizing.hourly_usd:.2f}/h"
            if result.sizing.instance is not None
            else ""
        )
        return f"rehearsal stack {outcome.stack}: {lived}; its processes are stopped{real}"
    cost = f"; it cost about ${outcome.usd:.2f}" if outcome.usd is not None else ""
    return f"load-test stack {outcome.stack}: {lived}, destroyed and removed{cost}"


def run_cloud(options: RunOptions) -> None:
    """Run ``options`` through a load-test stack; raises ``typer.Exit`` with the exit code."""
    try:
        mix = (
            workload.load(options.workload)
            .with_max_tokens(options.max_tokens)
            .with_endpoint(options.endpoint)
        )
        out = run_cli.out_dir(options.out, options.plan_name)
        path, stack_config = cloud_run.stack_file(options)
        # Before the backend, the wheel or the twin: a bad --loadgen-* value costs nothing.
        cloud_run.loadgen_sizing(options)
    except (run_cli.UsageError, workload.WorkloadError, cloud_run.CloudUsageError) as err:
        raise run_cli.fail(str(err)) from None
    command = sys.argv[1:]
    if options.rehearse:
        result = _rehearse(options, mix, out, path, stack_config, command=command)
    else:
        result = _in_cluster(options, mix, out, stack_config, command)
    summary: Summary | None = None
    if (out / run_files.CONFIG).exists():
        from loadtest.summary import write  # noqa: PLC0415 - plotly loads only when reporting

        summary = write(out)
        run_cli.print_result(out, summary)
    else:
        typer.echo("no run files came home: nothing to report")
    line = _final_line(result)
    typer.secho(line, fg=typer.colors.RED if result.outcome.teardown_error else None)
    code = result.outcome.exit_code
    if code == 0 and options.fail_on_slo and summary is not None and not summary.verdict.passed:
        code = run_cli.EXIT_SLO_FAILED
    raise typer.Exit(code)


def _prepared_line(prepared: cloud_run.Prepared) -> None:
    spec = prepared.spec
    typer.echo(prepared.code_reason)
    typer.echo(cloud_run.describe_sizing(spec.sizing(), spec.sizing().workers))


def _in_cluster(
    options: RunOptions,
    mix: workload.Workload,
    out: Path,
    stack_config: StackConfig,
    command: list[str],
) -> cloud_run.CloudOutcome:
    assert options.stack is not None
    try:
        ref = StackRef.parse(options.stack)
        workspace = cloud_run.automation_workspace(ref)
        with cloud_run.code_workdir() as code_dir:
            prepared = cloud_run.prepare(
                options, mix, out, workspace, stack_config,
                command=command, platform_stack=options.stack, code_dir=code_dir,
            )  # fmt: skip
    except (ValueError, cloud_run.CloudUsageError) as err:
        raise run_cli.fail(str(err)) from None
    _prepared_line(prepared)
    kubeconfig = prepared.platform.kubeconfig.get_secret_value()
    try:
        return cloud_run.run_stack(
            prepared,
            out,
            workspace,
            Journal(),
            cloud_run.port_forward(kubeconfig),
            check=cloud_run.cluster_check(prepared, cloud_run.kube_probe(kubeconfig)),
            rehearsal=False,
        )
    except PreflightError as err:
        raise run_cli.fail(str(err)) from None


def _rehearse(
    options: RunOptions,
    mix: workload.Workload,
    out: Path,
    path: Path,
    stack_config: StackConfig,
    *,
    command: list[str],
) -> cloud_run.CloudOutcome:
    from loadtest.cloud.rehearsal import (  # noqa: PLC0415
        RehearsalWorkspace,
        TwinProbe,
        platform_outputs,
    )

    name = stack_name(path) or "rehearsal"
    # The twin checks a key as vLLM's --api-key does; a fresh one, never written anywhere.
    key = secrets.token_hex(24)
    try:
        twin = run_cli.local_target(
            None, None, path, out, api_key=key, time_scale=options.effective_time_scale
        )
        workspace = RehearsalWorkspace(
            out, platform_outputs(name, stack_config, key), twin.base_url
        )
        with cloud_run.code_workdir() as code_dir:
            prepared = cloud_run.prepare(
                options, mix, out, workspace, stack_config,
                command=command, platform_stack=name, code_dir=code_dir,
            )  # fmt: skip
    except (run_cli.UsageError, cloud_run.CloudUsageError, TargetError) as err:
        raise run_cli.fail(str(err)) from None
    _prepared_line(prepared)
    typer.echo(f"rehearsal: the platform is {twin.description}")
    with tempfile.TemporaryDirectory(prefix="qwen-stress-rehearsal-journal-") as journal:
        try:
            twin.start()
        except TargetError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        try:
            return cloud_run.run_stack(
                prepared,
                out,
                workspace,
                Journal(Path(journal)),
                workspace.connector,
                check=cloud_run.cluster_check(prepared, TwinProbe(twin.base_url)),
                rehearsal=True,
            )
        except PreflightError as err:
            raise run_cli.fail(str(err)) from None
        finally:
            twin.stop()
