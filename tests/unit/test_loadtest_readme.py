"""The README's load-generator sizing table is what the sizing code computes."""

from __future__ import annotations

import re

from loadtest.cloud import sizing
from tests.pulumi_mocks import ROOT


def test_loadgen_sizing_table_is_generated_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- BEGIN loadgen-sizing[^>]*-->\n(.*?)\n<!-- END loadgen-sizing -->", readme, re.S
    )
    assert match, "README.md has no loadgen-sizing block"
    assert match.group(1) == sizing.readme_table(), (
        "regenerate it: .venv/bin/python -m loadtest.cloud.sizing, and paste it into README.md"
    )
