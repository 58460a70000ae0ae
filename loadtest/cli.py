"""The ``qwen-stress`` command line.

Each subcommand lives next to the code it drives and is registered here, so ``--help`` lists
everything in one place while every module keeps one job.
"""

from __future__ import annotations

import typer

from costs.cli import cost_app, prices_app
from loadtest import run_cli
from loadtest.cloud import reap
from twin.emulator.cli import emulate
from twin.fleet.cli import fleet

app = typer.Typer(
    name="qwen-stress",
    help="Capacity-test a Qwen2.5 API: emulate it locally, load it with Locust, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Capacity-test a Qwen2.5 API: emulate it locally, load it with Locust, report."""


app.command()(emulate)
app.command()(fleet)
app.command("run")(run_cli.run)
app.command("report")(run_cli.report)
app.command("reap")(reap.reap)
app.add_typer(cost_app, name="cost")
app.add_typer(prices_app, name="prices")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
