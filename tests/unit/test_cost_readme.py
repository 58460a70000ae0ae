"""The README's "Cost tracking" examples are what the code prints."""

from __future__ import annotations

import re

import pytest

from tests import cost_readme
from tests.pulumi_mocks import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(cost_readme.BLOCKS))
def test_example_output_is_generated_from_the_code(name: str) -> None:
    match = re.search(rf"<!-- BEGIN {name} -->\n(.*?)\n<!-- END {name} -->", README, re.S)
    assert match, f"README.md has no {name} block"
    expected = cost_readme.fenced(
        cost_readme.BLOCKS[name](), cost_readme.LANGUAGES.get(name, "markdown")
    )
    assert match.group(1) == expected, "regenerate: .venv/bin/python -m tests.cost_readme"


def test_every_cost_command_is_documented() -> None:
    section = README.split("## Cost tracking", 1)[1].split("\n## ", 1)[0]
    for command in (
        "qwen-stress cost estimate --config Pulumi.<stack>.yaml",
        "qwen-stress cost estimate --preview PREVIEW.json",
        "qwen-stress prices refresh",
        "qwen-stress cost activate-tags",
        "qwen-stress cost actuals RUN_DIR",
        "qwen-stress cost report RUN_DIR...",
    ):
        assert command in section, command
