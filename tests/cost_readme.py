"""The example outputs of the README's "Cost tracking" section, generated from the code.

``.venv/bin/python -m tests.cost_readme`` prints every block; ``tests/unit/test_cost_readme.py``
fails when the README holds anything else. The reconciliation example is rendered from the same
figures the moto-backed tests queue (``tests/unit/test_cost_actuals.py``), labelled as such.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from costs import actuals, estimate, reconcile, report
from costs.runs import read_run
from domain import prices
from domain.hourly_cost import COMPUTE_SERVICE
from tests.aws_fakes import cost_result, stubbed
from tests.pulumi_mocks import ROOT
from tests.unit.test_cost_actuals import ESTIMATE, RUN_SPEND, STACK_SPEND, UNTAGGED

FIXTURES = ROOT / "tests" / "fixtures" / "runs"


def estimate_block() -> str:
    """``qwen-stress cost estimate --config Pulumi.dev.yaml`` at the bundled prices."""
    cost = estimate.from_stack_file(ROOT / "Pulumi.dev.yaml", prices.bundled())
    return estimate.markdown(cost, "Pulumi.dev.yaml")


def actuals_block() -> str:
    """``cost actuals runs/url-run --stack dev`` on the moto test data, a month after the run."""
    run = read_run(FIXTURES / "url-run")
    run = replace(
        run,
        estimated_usd=ESTIMATE["usd"],
        estimate_basis=str(ESTIMATE["basis"]),
        estimate_by_service={COMPUTE_SERVICE: float(ESTIMATE["usd"])},
    )
    ce, stub = stubbed("ce")
    for spend in (RUN_SPEND, STACK_SPEND, UNTAGGED):
        stub.add_response("get_cost_and_usage", cost_result(spend, estimated=False))
    with stub:
        data = actuals.collect(ce, run, run.ended_at + timedelta(days=30), stack="dev")
    return reconcile.markdown(data)


def report_block() -> str:
    """``qwen-stress cost report`` over the two fixture runs (a twin run and a --url run)."""
    return report.markdown(report.rows([FIXTURES / "twin-dev", FIXTURES / "url-run"])).rstrip()


def fenced(text: str) -> str:
    """A Markdown example shown as text: its headings stay out of the README's outline."""
    return f"```markdown\n{text}\n```"


BLOCKS = {
    "cost-estimate-example": estimate_block,
    "cost-actuals-example": actuals_block,
    "cost-report-example": report_block,
}

if __name__ == "__main__":
    for name, render in BLOCKS.items():
        print(f"<!-- BEGIN {name} -->\n{fenced(render())}\n<!-- END {name} -->\n")
