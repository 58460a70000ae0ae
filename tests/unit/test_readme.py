"""The README's configuration reference and cost table are exactly what the code says."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from domain.stack_config import StackConfig
from infra import config_reference
from policies import reference
from tests.pulumi_mocks import ROOT
from tests.unit.conftest import example

README = (ROOT / "README.md").read_text(encoding="utf-8")
REGENERATE = (
    "regenerate it: .venv/bin/python -m infra.config_reference, and paste it into README.md"
)


def _block(name: str) -> str:
    match = re.search(rf"<!-- BEGIN {name}[^>]*-->\n(.*?)\n<!-- END {name} -->", README, re.S)
    assert match, f"README.md has no {name} block"
    return match.group(1)


def test_config_reference_is_generated_from_the_model() -> None:
    assert _block("config-reference") == config_reference.reference(), REGENERATE


def test_cost_table_matches_the_example_stacks() -> None:
    assert _block("cost-table") == config_reference.cost_table(), REGENERATE


@pytest.mark.parametrize("section", config_reference.PLATFORM_SECTIONS)
def test_every_platform_key_is_documented_with_a_meaning(section: str) -> None:
    field = StackConfig.model_fields[section]
    model = field.annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    for name, sub in model.model_fields.items():
        key = f"`qwen-stress:{field.alias}.{sub.alias or name}`"
        assert key in _block("config-reference")
        assert sub.description, f"{key} needs a description: it is the README's meaning column"


def _documented_outputs(heading: str) -> set[str]:
    section = README.split(heading, 1)[1].split("\n#", 1)[0]
    names: set[str] = set()
    for first_cell in re.findall(r"^\| (`[^|]+) \|", section, re.M):
        names |= set(re.findall(r"`(\w+)`", first_cell))
    return names


def test_every_stack_output_is_documented_and_every_documented_one_exists() -> None:
    exported = set(example("dev").outputs)
    platform = _documented_outputs("### Stack outputs")
    everything = platform | _documented_outputs("### Workload stack outputs")
    assert exported <= everything, "outputs missing from the README's output tables"
    assert platform <= exported, "README's Stack outputs table names outputs nobody exports"


def test_policy_rule_table_is_generated_from_the_pack() -> None:
    assert _block("policy-rules") == reference.rule_table(), (
        "regenerate it: .venv/bin/python -m policies.reference, and paste it into README.md"
    )


def test_policy_config_table_is_generated_from_the_config_files() -> None:
    assert _block("policy-configs") == reference.config_table(), (
        "regenerate it: .venv/bin/python -m policies.reference, and paste it into README.md"
    )
