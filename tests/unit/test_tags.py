"""Cost tags reach every AWS resource (provider default tags) and every launched instance."""

from __future__ import annotations

import json

import pytest

from tests.pulumi_mocks import Program, run_program, stack_config
from tests.unit.conftest import example

EXPECTED = {
    "owner": "platform-team",
    "cost-center": "llm-capacity-tests",
    "project": "qwen-stress",
}


def _default_tags(program: Program) -> dict[str, str]:
    provider = program.one("pulumi:providers:aws")
    tags: dict[str, str] = json.loads(provider.inputs["defaultTags"])["tags"]
    return tags


@pytest.mark.parametrize("stack", ["dev", "a10g"])
def test_provider_default_tags_name_owner_cost_centre_project_stack(stack: str) -> None:
    assert _default_tags(example(stack)) == {**EXPECTED, "stack": stack}


@pytest.mark.parametrize("stack", ["dev", "a10g"])
def test_every_aws_resource_goes_through_the_tagging_provider(stack: str) -> None:
    program = example(stack)
    aws_resources = [r for r in program.resources if r.type.startswith("aws:")]
    assert len(aws_resources) > 40
    untagged = [
        r.name
        for r in aws_resources
        if "pulumi:providers:aws::platform-aws::" not in (r.provider or "")
    ]
    assert untagged == []


@pytest.mark.parametrize("stack", ["dev", "a10g"])
def test_instances_volumes_and_enis_an_asg_launches_are_tagged(stack: str) -> None:
    program = example(stack)
    tags = _default_tags(program)
    templates = program.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert len(templates) == 2
    for template in templates:
        specs = {s["resourceType"]: s["tags"] for s in template.inputs["tagSpecifications"]}
        assert specs == {"instance": tags, "volume": tags, "network-interface": tags}


def test_extra_tags_are_added_but_cannot_replace_the_fixed_ones() -> None:
    config = dict(stack_config("dev")["qwen-stress:tags"])
    config["extra"] = {"team": "llm", "owner": "someone-else"}
    tags = _default_tags(run_program("dev", overrides={"qwen-stress:tags": config}))
    assert tags["team"] == "llm"
    assert tags["owner"] == "platform-team"
