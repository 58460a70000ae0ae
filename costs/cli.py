"""``qwen-stress cost ...`` and ``qwen-stress prices ...``: the cost-tracking commands.

Each command checks its arguments, then calls one module of ``costs``. boto3 and plotly are
imported only inside the commands that need them, so ``qwen-stress --help`` stays fast. Every
user mistake and every AWS refusal is one line on stderr and exit code 2; a failed command
changes nothing in a run directory.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from domain.prices import PriceTableError
from domain.stack_config import ConfigError
from domain.topology import COST_TAGS, RUN_ID_TAG

EXIT_BAD_INPUT = 2
ACTIVATED_TAGS = (*COST_TAGS, RUN_ID_TAG)

cost_app = typer.Typer(
    help="Cost tracking: hourly estimates, billed actuals from Cost Explorer, reports.",
    no_args_is_help=True,
)
prices_app = typer.Typer(
    help="The dated price table every estimate uses (bundled, or refreshed from AWS).",
    no_args_is_help=True,
)


def fail(message: str) -> NoReturn:
    """Print ``error: <one line>`` on stderr and exit 2."""
    typer.secho(f"error: {' '.join(message.split())}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _aws_failure(err: Exception, action: str, permission: str) -> NoReturn:
    from costs import aws  # noqa: PLC0415

    if aws.is_aws_error(err):
        fail(str(aws.explain(err, action, permission)))
    raise err


@cost_app.command("estimate")
def estimate(
    config: Annotated[
        Path | None, typer.Option(help="A stack file, Pulumi.<stack>.yaml, at any path.")
    ] = None,
    preview: Annotated[
        Path | None,
        typer.Option(help="What `pulumi preview --json --show-sames` printed, saved to a file."),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="With --preview: price as this region (default: the preview's own)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of Markdown.")
    ] = False,
) -> None:
    """Hourly cost at minimum and maximum size, per resource type, with the prices' date."""
    from costs import estimate as est  # noqa: PLC0415
    from costs import preview as pv  # noqa: PLC0415

    if (config is None) == (preview is None):
        fail("pass --config Pulumi.<stack>.yaml or --preview PREVIEW.json (one of them)")
    if region and config is not None:
        fail("--region applies to --preview; a stack file names its region (aws:region)")
    if config is not None and not config.is_file():
        fail(f"--config {config}: no such file")
    try:
        if config is not None:
            cost, source = est.from_stack_file(config), config.name
        elif preview is not None:
            cost, source = pv.estimate(pv.read(preview), region), preview.name
    except (ConfigError, PriceTableError, pv.PreviewError) as err:
        fail(str(err))
    if as_json:
        _print_json({"source": source, **cost.to_json()})
    else:
        typer.echo(est.markdown(cost, source))


@cost_app.command("actuals")
def actuals(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `qwen-stress run`.")],
    stack: Annotated[
        str | None,
        typer.Option(help="The platform stack the run loaded (default: the one the run names)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of Markdown.")
    ] = False,
) -> None:
    """Billed spend of a run from Cost Explorer, set against its estimate.

    Writes cost-actuals.json into the run directory and adds the reconciliation to its reports.
    """
    from costs import actuals as act  # noqa: PLC0415
    from costs import aws, reconcile, runs  # noqa: PLC0415

    try:
        run = runs.read_run(run_dir)
        ce = aws.client("ce", aws.CONTROL_REGION)
        data = act.collect(ce, run, datetime.now(UTC), stack)
    except (runs.RunReadError, act.ActualsError) as err:
        fail(str(err))
    except Exception as err:
        _aws_failure(
            err, "reading Cost Explorer", "ce:GetCostAndUsage and ce:ListCostAllocationTags"
        )
    path = runs.write_actuals(run_dir, data)
    updated = reconcile.add_to_reports(run_dir, data)
    if as_json:
        _print_json(data)
        return
    typer.echo(reconcile.markdown(data))
    typer.echo(f"\nwrote {path}" + "".join(f"\nupdated {p}" for p in updated))


@cost_app.command("activate-tags")
def activate_tags() -> None:
    """Activate the cost allocation tags once per AWS account (Cost Explorer filters on them)."""
    from costs import aws  # noqa: PLC0415

    entries = [{"TagKey": key, "Status": "Active"} for key in ACTIVATED_TAGS]
    try:
        answer = aws.client("ce", aws.CONTROL_REGION).update_cost_allocation_tags_status(
            CostAllocationTagsStatus=entries
        )
    except Exception as err:
        _aws_failure(err, "activating cost allocation tags", "ce:UpdateCostAllocationTagsStatus")
    failed = {e["TagKey"]: e for e in answer.get("Errors", [])}
    for key in ACTIVATED_TAGS:
        if key not in failed:
            typer.echo(f"{key}: active")
    if failed:
        reasons = "; ".join(
            f"{key}: {e.get('Code', '')} {e.get('Message', '')}".strip()
            for key, e in failed.items()
        )
        fail(
            f"not activated: {reasons} (AWS lists a tag key only after a tagged resource has "
            "been billed: run `qwen-stress cost activate-tags` again after the first cloud run)"
        )
    typer.echo("AWS applies newly active tags to usage within 24 hours (not to earlier usage).")


@cost_app.command("report")
def report(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run directories (e.g. runs/*).", show_default=False)
    ],
    output_format: Annotated[
        str, typer.Option("--format", help="md, csv or html (self-contained, opens offline).")
    ] = "md",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """One row per run with totals per stack and per month: the cost-tracking report."""
    from costs import report as rep  # noqa: PLC0415
    from costs.runs import RunReadError  # noqa: PLC0415

    if output_format not in rep.FORMATS:
        fail(f"--format {output_format!r}: use md, csv or html")
    # The same directory named twice (runs/a runs/a/) is one run, not two in the totals.
    unique = list({d.resolve(): d for d in run_dirs}.values())
    try:
        text = rep.RENDER[output_format](rep.rows(unique))
    except RunReadError as err:
        fail(str(err))
    if out is None:
        typer.echo(text, nl=False)
        return
    _write(out, text, "--out")
    typer.echo(f"wrote {out} ({len(unique)} run{'' if len(unique) == 1 else 's'})")


def _write(path: Path, text: str, setting: str) -> None:
    """Write ``text`` to ``path``; a place that cannot take it is one line naming ``setting``."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        fail(
            f"{setting} {path}: cannot write there ({err.strerror or err}); name a file you "
            "can write"
        )


@prices_app.command("refresh")
def refresh(
    region: Annotated[str, typer.Option(help="The AWS region to price.")] = "us-east-1",
    out: Annotated[
        Path | None,
        typer.Option(help="Write here instead of where estimates look (see README, Prices)."),
    ] = None,
) -> None:
    """Fetch on-demand prices (Pricing API) and recent spot prices into a dated table."""
    from costs import aws  # noqa: PLC0415
    from costs import refresh as ref  # noqa: PLC0415
    from domain import catalog, prices  # noqa: PLC0415

    problem = prices.region_problem(region)
    if problem is not None:
        fail(f"--region {problem}")
    if out is not None and out.is_dir():  # found out before AWS is asked, not after
        fail(f"--out {out} is a directory; name the table's file, like {out}/prices-{region}.json")
    typer.echo(f"asking the AWS Pricing API and EC2 spot price history for {region}...", err=True)
    try:
        done = ref.refresh(
            aws.client("pricing", aws.CONTROL_REGION),
            aws.client("ec2", region),
            region,
            sorted(catalog.instances()),
            datetime.now(UTC),
        )
    except ref.RefreshError as err:
        fail(str(err))
    except Exception as err:
        _aws_failure(
            err, "reading AWS prices", "pricing:GetProducts and ec2:DescribeSpotPriceHistory"
        )
    path = out or prices.table_path(region)
    try:
        done.table.write(path)
    except OSError as err:
        fail(f"--out {path}: cannot write the table there ({err.strerror or err}); pass --out FILE")
    typer.echo(f"wrote {path}: {done.table.label()}, {len(done.table.instances)} instance types")
    if done.missing:
        typer.echo(f"not sold in {region}: {', '.join(done.missing)}")
    if out is not None:
        typer.echo(f"estimates use it with {prices.PRICES_ENV}={path}")
