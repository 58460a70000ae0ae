"""The pack as a whole: its layout, its config files, its defaults, and the preview base stack."""

from __future__ import annotations

import ast
from collections import Counter
from typing import Any

import jsonschema
import pytest
import yaml
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from domain import catalog
from domain.stack_config import load_stack_file
from policies import pack
from policies.node_groups import DEFAULT_GPU_TYPES
from tests.policy_harness import (
    POLICY_DIR,
    check_program,
    config_files,
    configure_request,
    describe,
    engine_config,
    mandatory,
    read_config,
)
from tests.pulumi_mocks import ROOT, run_program, stack_config

LEVELS = ["advisory", "mandatory", "remediate", "disabled"]


def test_policy_names_are_unique_and_levels_are_as_documented() -> None:
    names = [p.name for p in pack.POLICIES]
    assert len(names) == len(set(names))
    levels = Counter((p.enforcement_level or pack.DEFAULT_LEVEL).value for p in pack.POLICIES)
    assert levels == {"mandatory": 25, "advisory": 2}
    advisory = {
        p.name
        for p in pack.POLICIES
        if (p.enforcement_level or pack.DEFAULT_LEVEL).value == "advisory"
    }
    assert advisory == {"loadgen-spot", "helm-chart-version"}
    stack = {p.name for p in pack.POLICIES if isinstance(p, StackValidationPolicy)}
    assert stack == {"k8s-namespace-network-policy", "keda-max-replicas-fit"}
    assert all(
        isinstance(p, ResourceValidationPolicy | StackValidationPolicy) for p in pack.POLICIES
    )


def test_pulumi_policy_yaml_runs_the_pack_with_the_project_virtualenv() -> None:
    document = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text("utf-8"))
    assert document["runtime"] == {"name": "python", "options": {"virtualenv": "../.venv"}}
    assert document["version"] and document["description"]


def test_main_only_builds_the_pack() -> None:
    """Rules live in modules tests import; serving them is the one thing __main__ does."""
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text("utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    built = [c for c in calls if isinstance(c.func, ast.Name) and c.func.id == "PolicyPack"]
    assert len(built) == 1
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]


def _schema() -> dict[str, Any]:
    """The JSON schema the engine validates a --policy-pack-config file against."""
    level = {"type": "string", "enum": LEVELS}
    properties: dict[str, Any] = {"all": level}
    for policy in pack.POLICIES:
        props = dict(policy.config_schema.properties) if policy.config_schema else {}
        props["enforcementLevel"] = level
        properties[policy.name] = {
            "oneOf": [level, {"type": "object", "properties": props, "additionalProperties": False}]
        }
    return {"type": "object", "properties": properties, "additionalProperties": False}


@pytest.mark.parametrize("path", config_files(), ids=lambda p: p.name)
def test_config_files_fit_the_pack_s_schemas(path: Any) -> None:
    config = read_config(path.stem)
    jsonschema.validate(config, _schema())
    configure_request(config)  # what the engine would send; unknown policies raise


def test_the_config_file_kinds() -> None:
    assert {p.stem for p in config_files()} == {"preview", "production", "loadtest"}


def test_a_config_naming_an_unknown_policy_or_setting_is_refused() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"gpu-budgets": {}}, _schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"gpu-budget": {"maxHourly": 3}}, _schema())
    with pytest.raises(ValueError, match="gpu-budgets"):
        configure_request({"gpu-budgets": {}})


def test_default_gpu_types_are_catalogued_gpu_instances() -> None:
    for instance_type in DEFAULT_GPU_TYPES:
        assert catalog.instance(instance_type).gpu is not None, instance_type
    for kind in ("preview", "production"):
        allowed = read_config(kind)["gpu-instance-type"]["allowedInstanceTypes"]
        for instance_type in allowed:
            assert catalog.instance(instance_type).gpu is not None, (kind, instance_type)


def test_the_preview_base_stack_fits_the_preview_policy_config() -> None:
    path = ROOT / ".github" / "preview-stack.yaml"
    cfg = load_stack_file(path)
    preview = read_config("preview")
    assert cfg.gpu.instance_type in preview["gpu-instance-type"]["allowedInstanceTypes"]
    assert cfg.max_hourly_usd() <= preview["gpu-budget"]["maxHourlyUsd"]


@pytest.mark.slow
def test_a_preview_stack_made_from_the_base_config_passes_the_pack() -> None:
    """What .github/workflows/preview.yml previews: the program under the base config."""
    base = yaml.safe_load((ROOT / ".github" / "preview-stack.yaml").read_text("utf-8"))["config"]
    dev = stack_config("dev")
    overrides = {**{k: None for k in dev if k not in base}, **base}
    program = run_program("dev", overrides=overrides)
    violations = check_program(
        program,
        "qwen-stress",
        stack="pr-1",
        stack_config=base,
        policy_config=read_config("preview"),
    )
    assert mandatory(violations) == [], describe(violations)
    assert engine_config(base)["qwen-stress:budget"] == '{"maxHourlyUsd": 2}'
