"""The example outputs of the README's "Cost tracking" section, generated from the code.

``.venv/bin/python -m tests.cost_readme`` prints every block; ``tests/unit/test_cost_readme.py``
fails when the README holds anything else. The reconciliation example is the synthetic cloud
run of ``tests/cloud_run.py`` set against the figures the moto-backed tests queue
(``tests/unit/test_cost_actuals.py``), labelled as such.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from datetime import timedelta
from functools import cache
from pathlib import Path

from costs import actuals, estimate, reconcile, report
from costs.runs import read_run
from domain import prices
from loadtest import summary
from tests import cloud_run
from tests.aws_fakes import cost_result, stubbed
from tests.pulumi_mocks import ROOT
from tests.unit.test_cost_actuals import RUN_SPEND, STACK_SPEND, UNTAGGED

FIXTURES = ROOT / "tests" / "fixtures" / "runs"
_BUILT = Path(tempfile.mkdtemp(prefix="qwen-stress-cost-readme-"))
atexit.register(shutil.rmtree, _BUILT, True)


@cache
def cloud_run_dir() -> Path:
    """The synthetic cloud run with its summary (a temporary directory, built once)."""
    run = cloud_run.write(_BUILT / cloud_run.RUN_ID)
    summary.write(run)
    return run


def cost_block() -> str:
    """``summary.json``'s ``cost`` of the synthetic cloud run."""
    data = json.loads((cloud_run_dir() / "summary.json").read_text(encoding="utf-8"))
    return json.dumps(data["cost"], indent=2)


def estimate_block() -> str:
    """``qwen-stress cost estimate --config Pulumi.dev.yaml`` at the bundled prices."""
    cost = estimate.from_stack_file(ROOT / "Pulumi.dev.yaml", prices.bundled())
    return estimate.markdown(cost, "Pulumi.dev.yaml")


def actuals_block() -> str:
    """``cost actuals runs/cloud-run`` on the moto test data, a month after the run."""
    run = read_run(cloud_run_dir())
    ce, stub = stubbed("ce")
    for spend in (RUN_SPEND, STACK_SPEND, UNTAGGED):
        stub.add_response("get_cost_and_usage", cost_result(spend, estimated=False))
    with stub:
        data = actuals.collect(ce, run, run.ended_at + timedelta(days=30))
    return reconcile.markdown(data)


def report_block() -> str:
    """``qwen-stress cost report`` over a twin run, a --url run and the cloud run."""
    run_dirs = [FIXTURES / "twin-dev", FIXTURES / "url-run", cloud_run_dir()]
    return report.markdown(report.rows(run_dirs)).rstrip()


def fenced(text: str, language: str = "markdown") -> str:
    """An example shown as text: a Markdown one's headings stay out of the README's outline."""
    return f"```{language}\n{text}\n```"


LANGUAGES = {"run-cost-example": "json"}
BLOCKS = {
    "run-cost-example": cost_block,
    "cost-estimate-example": estimate_block,
    "cost-actuals-example": actuals_block,
    "cost-report-example": report_block,
}

if __name__ == "__main__":
    for name, render in BLOCKS.items():
        text = fenced(render(), LANGUAGES.get(name, "markdown"))
        print(f"<!-- BEGIN {name} -->\n{text}\n<!-- END {name} -->\n")
