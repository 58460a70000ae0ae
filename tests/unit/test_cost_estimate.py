"""``qwen-stress cost estimate``: a stack file and its preview give the README's numbers.

The preview is built from what the example stacks register under mocks (``tests.pulumi_preview``)
with values hidden the way ``pulumi preview --json`` hides them: unknown until the update, or
secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from costs import estimate, preview
from domain import prices
from domain.stack_config import load_stack_file, parse
from infra import config_reference
from loadtest.cli import app
from tests.pulumi_mocks import ROOT, stack_config
from tests.pulumi_preview import SECRET, UNKNOWN, from_program, with_values
from tests.unit.conftest import example
from tests.unit.test_loadtest_stack import image_run

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
runner = CliRunner()


def _preview(stack: str) -> dict[str, Any]:
    return from_program(example(stack), stack)


def _hidden(stack: str) -> dict[str, Any]:
    """The example's preview with the unknowns and secrets a real one has where they cost nothing:
    node roles and cluster names come from other resources, the kubeconfig is a secret."""
    doc = _preview(stack)
    for name in ("nodes-system", "nodes-gpu"):
        doc = with_values(doc, NODE_GROUP, name, {"nodeRoleArn": UNKNOWN, "clusterName": UNKNOWN})
        doc = with_values(doc, NODE_GROUP, name, {"launchTemplate.version": UNKNOWN})
    doc = with_values(doc, "pulumi:providers:kubernetes", "platform-k8s", {"kubeconfig": SECRET})
    nat = next(s for s in doc["steps"] if "natGateway" in s["urn"])
    nat["newState"]["inputs"]["subnetId"] = UNKNOWN
    return doc


def _readme_row(stack: str) -> tuple[str, str]:
    table = config_reference.cost_table()
    row = next(line for line in table.splitlines() if line.startswith(f"| `{stack}`"))
    low, high = re.findall(r"\$(\d+\.\d\d)/h", row)
    return low, high


@pytest.mark.parametrize("stack", ["dev", "a10g"])
def test_preview_equals_stack_file_equals_readme(stack: str) -> None:
    from_file = estimate.from_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    from_preview = preview.estimate(_hidden(stack))
    assert from_preview.lines == from_file.lines
    assert (from_preview.min_usd, from_preview.max_usd) == (from_file.min_usd, from_file.max_usd)
    cfg = load_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    assert (cfg.min_hourly_usd(), cfg.max_hourly_usd()) == (from_file.min_usd, from_file.max_usd)
    assert _readme_row(stack) == (f"{from_file.min_usd:.2f}", f"{from_file.max_usd:.2f}")
    assert from_preview.notes == ()


def test_every_resource_kind_of_the_dev_stack_is_priced() -> None:
    cost = preview.estimate(_hidden("dev"))
    assert [(line.kind, line.min_count, line.max_count) for line in cost.lines] == [
        ("control_plane", 1, 1),
        ("nat_gateways", 1, 1),
        ("system_nodes", 1, 2),
        ("gpu_nodes", 1, 5),
    ]
    assert cost.max_usd == pytest.approx(0.10 + 0.045 + 2 * 0.34 + 5 * 0.526)


def test_a10g_counts_one_nat_gateway_per_zone() -> None:
    (nat,) = [
        line for line in preview.estimate(_preview("a10g")).lines if line.kind == "nat_gateways"
    ]
    assert nat.min_count == nat.max_count == 3


def _loadgen_step(**inputs: Any) -> dict[str, Any]:
    """The ephemeral load-test stack's node group as its preview lists it (cluster unknown)."""
    urn = "urn:pulumi:run-42::qwen-stress-loadtest::aws:eks/nodeGroup:NodeGroup::loadgen"
    base = {
        "clusterName": UNKNOWN,
        "nodeRoleArn": UNKNOWN,
        "subnetIds": UNKNOWN,
        "instanceTypes": ["c6i.large"],
        "capacityType": "SPOT",
        "labels": {"qwen-stress.io/role": "loadgen"},
        "taints": [{"key": "qwen-stress.io/loadgen", "value": "true", "effect": "NO_SCHEDULE"}],
        "scalingConfig": {"minSize": 1, "maxSize": 3, "desiredSize": 2},
        "tags": {"run-id": "run-42"},
    }
    base.update(inputs)
    return {"op": "create", "urn": urn, "newState": {"type": NODE_GROUP, "inputs": base}}


def _doc(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"config": {"aws:region": "us-east-1"}, "steps": list(steps)}


def test_the_load_test_stack_preview_prices_its_nodes_as_the_stack_does() -> None:
    program = image_run()  # the ephemeral stack's program under mocks: spot load generators
    cost = preview.estimate(from_program(program, "run-42"))
    (line,) = cost.lines
    assert line.kind == "loadgen_nodes" and line.detail.endswith(" spot")
    assert cost.max_usd == pytest.approx(program.outputs["hourlyUsd"])


def test_load_generator_node_group_is_priced_by_role_and_capacity_type() -> None:
    cost = preview.estimate(_doc(_loadgen_step()))
    (line,) = cost.lines
    assert (line.kind, line.detail, line.min_count, line.max_count) == (
        "loadgen_nodes",
        "c6i.large spot",
        1,
        3,
    )
    # c6i.large has no spot history in the bundled table: priced on-demand, never at zero.
    assert line.unit_usd == prices.bundled().instance("c6i.large").on_demand_usd_per_h
    spot = preview.estimate(_doc(_loadgen_step(instanceTypes=["g4dn.xlarge"])))
    assert spot.lines[0].unit_usd == 0.216  # the worst observed g4dn.xlarge spot price


@pytest.mark.parametrize(
    ("inputs", "why"),
    [
        ({"instanceTypes": UNKNOWN}, "instance type not known until the update"),
        ({"instanceTypes": [SECRET]}, "instance type not known until the update"),
        ({"scalingConfig": UNKNOWN}, "its size is not known yet"),
        ({"scalingConfig": {"minSize": UNKNOWN, "maxSize": 3}}, "min/max size not known yet"),
        ({"instanceTypes": ["x9.huge"]}, "x9.huge has no price in the us-east-1 prices"),
    ],
)
def test_a_node_group_hidden_at_preview_is_listed_not_guessed(
    inputs: dict[str, Any], why: str
) -> None:
    cost = preview.estimate(_doc(_loadgen_step(**inputs)))
    assert cost.lines == ()
    assert any(why in note and "loadgen not priced" in note for note in cost.notes), cost.notes


def test_hidden_labels_or_capacity_type_still_price_the_group() -> None:
    secret_labels = preview.estimate(_doc(_loadgen_step(labels=SECRET)))
    assert [line.kind for line in secret_labels.lines] == ["other_nodes"]
    assert "labels are not known" in secret_labels.notes[0]
    unknown_capacity = preview.estimate(_doc(_loadgen_step(capacityType=UNKNOWN)))
    assert unknown_capacity.lines[0].detail == "c6i.large on-demand"
    assert "priced on-demand" in unknown_capacity.notes[0]


def test_a_group_of_several_types_is_priced_at_the_dearest() -> None:
    cost = preview.estimate(_doc(_loadgen_step(instanceTypes=["c6i.large", "c6i.2xlarge"])))
    assert cost.lines[0].detail == "c6i.2xlarge spot"


def test_deleted_and_read_resources_cost_nothing_and_replacements_count_once() -> None:
    gone = _loadgen_step()
    gone["op"] = "delete"
    read = _loadgen_step()
    read["op"], read["urn"] = "read", read["urn"] + "-read"
    replaced = _loadgen_step()
    replaced["op"] = "create-replacement"
    doc = _doc(gone, read, _loadgen_step(), replaced)
    doc["steps"][-2]["op"] = "same"
    (line,) = preview.estimate(doc).lines
    assert line.max_count == 3
    assert preview.estimate(_doc(gone)).lines == ()


def test_a_changed_stack_without_unchanged_resources_asks_for_show_sames() -> None:
    changed = _loadgen_step()
    changed["op"] = "update"
    notes = preview.estimate(_doc(changed)).notes
    assert any("--show-sames" in n for n in notes)
    same = _loadgen_step()
    same["op"], same["urn"] = "same", same["urn"] + "2"
    assert not any("--show-sames" in n for n in preview.estimate(_doc(changed, same)).notes)


def test_a_failed_preview_says_it_may_be_partial() -> None:
    doc = _doc(_loadgen_step())
    doc["diagnostics"] = [{"severity": "error", "message": "boom: quota\nmore detail"}]
    assert any("boom: quota" in n and "more" not in n for n in preview.estimate(doc).notes)


def test_region_comes_from_the_aws_provider_then_the_config() -> None:
    provider = {
        "op": "create",
        "urn": "urn:pulumi:s::p::pulumi:providers:aws::platform-aws",
        "newState": {"type": "pulumi:providers:aws", "inputs": {"region": "eu-west-1"}},
    }
    cost = preview.estimate(_doc(provider, _loadgen_step()))
    assert any("runs in eu-west-1 but no eu-west-1 price table" in n for n in cost.notes)
    assert preview.estimate(_doc(_loadgen_step())).notes == ()
    assert any("names no AWS region" in n for n in preview.estimate({"steps": []}).notes)


@pytest.mark.parametrize("stack", ["dev", "a10g"])
def test_cli_markdown_and_json_agree_both_ways(stack: str, tmp_path: Path) -> None:
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(_hidden(stack)), encoding="utf-8")
    stack_file = ROOT / f"Pulumi.{stack}.yaml"
    outputs = {}
    for flag, value in (("--config", stack_file), ("--preview", path)):
        done = runner.invoke(app, ["cost", "estimate", flag, str(value), "--json"])
        assert done.exit_code == 0, done.output
        outputs[flag] = json.loads(done.output)
        markdown = runner.invoke(app, ["cost", "estimate", flag, str(value)])
        low, high = _readme_row(stack)
        assert f"**${low}/h** | **${high}/h**" in markdown.output
        assert "us-east-1 prices of 2026-11-28 (bundled)" in markdown.output
    assert outputs["--config"]["hourly_usd"] == outputs["--preview"]["hourly_usd"]
    assert outputs["--config"]["lines"] == outputs["--preview"]["lines"]
    assert outputs["--preview"]["prices"]["as_of"] == "2026-11-28"


def _error(args: list[str]) -> str:
    done = runner.invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1, done.output
    return lines[0]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    assert "one of them" in _error(["cost", "estimate"])
    assert "one of them" in _error(["cost", "estimate", "--config", "a", "--preview", "b"])
    assert "no such file" in _error(["cost", "estimate", "--config", str(tmp_path / "x.yaml")])
    assert "no such file" in _error(["cost", "estimate", "--preview", str(tmp_path / "p.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert "is not JSON" in _error(["cost", "estimate", "--preview", str(bad)])
    bad.write_text('{"changeSummary": {}}', encoding="utf-8")
    assert "no 'steps' list" in _error(["cost", "estimate", "--preview", str(bad)])
    stack = tmp_path / "Pulumi.broken.yaml"
    values = stack_config("dev")
    values["qwen-stress:gpu"] = {"instanceType": "g4dn.xlarge", "maxNode": 3}
    stack.write_text(yaml.safe_dump({"config": values}), encoding="utf-8")
    assert "qwen-stress:gpu.maxNode" in _error(["cost", "estimate", "--config", str(stack)])
    assert "--region applies to --preview" in _error(
        ["cost", "estimate", "--config", str(ROOT / "Pulumi.dev.yaml"), "--region", "eu-west-1"]
    )


def _config(gpu_min: int, gpu_max: int, system_max: int, capacity: str, instance: str) -> Any:
    values = stack_config("dev")
    values.pop("qwen-stress:budget")
    values["qwen-stress:gpu"] = {
        "instanceType": instance,
        "capacityType": capacity,
        "minNodes": gpu_min,
        "maxNodes": gpu_max,
    }
    values["qwen-stress:cluster"] = {**values["qwen-stress:cluster"], "systemMaxNodes": system_max}
    values["qwen-stress:autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    return parse(values)


stacks = st.builds(
    _config,
    gpu_min=st.integers(0, 4),
    gpu_max=st.integers(4, 30),
    system_max=st.integers(1, 5),
    capacity=st.sampled_from(["on-demand", "spot"]),
    instance=st.sampled_from(["g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g4dn.12xlarge"]),
)


@settings(max_examples=40, deadline=None)
@given(cfg=stacks, more=st.integers(1, 10))
def test_cost_rises_with_max_nodes_and_min_never_exceeds_max(cfg: Any, more: int) -> None:
    cost = cfg.hourly_cost()
    assert cost.min_usd <= cost.max_usd
    bigger = cfg.model_copy(
        update={"gpu": cfg.gpu.model_copy(update={"max_nodes": cfg.gpu.max_nodes + more})}
    )
    assert bigger.max_hourly_usd() > cfg.max_hourly_usd()
    assert bigger.min_hourly_usd() == cfg.min_hourly_usd()


@settings(max_examples=40, deadline=None)
@given(low=st.integers(0, 10), extra=st.integers(0, 10), more=st.integers(1, 10))
def test_preview_cost_rises_with_max_nodes(low: int, extra: int, more: int) -> None:
    def cost(high: int) -> Any:
        scaling = {"minSize": low, "maxSize": high, "desiredSize": low}
        return preview.estimate(_doc(_loadgen_step(scalingConfig=scaling)))

    base, bigger = cost(low + extra), cost(low + extra + more)
    assert base.min_usd <= base.max_usd
    assert bigger.max_usd > base.max_usd
    assert bigger.min_usd == base.min_usd


def test_json_dollars_carry_no_float_noise() -> None:
    """0.1 + 0.045 + ... prints as 1.0110000000000001 unrounded; a script reading it should not."""
    done = runner.invoke(
        app, ["cost", "estimate", "--config", str(ROOT / "Pulumi.dev.yaml"), "--json"]
    )
    assert done.exit_code == 0, done.output
    hourly = json.loads(done.output)["hourly_usd"]
    assert all(len(repr(v).split(".")[-1]) <= 8 for v in hourly.values()), hourly
