"""The README's generated figures (configuration, cost, fit, cold start) are what the code says."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from domain.autoscaling import FALLBACK_AFTER_FAILURES, FALLBACK_FAILURE_THRESHOLD
from domain.durations import TIME_SCALES
from domain.stack_config import StackConfig
from domain.vllm_args import API_KEY_GUARDED_PREFIXES
from infra import config_reference
from policies import reference
from tests.pulumi_mocks import ROOT
from tests.unit.conftest import example
from twin.emulator.http_protocol import HttpLimits
from twin.fleet import timing_reference

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _regenerate(module: str) -> str:
    return f"regenerate it: .venv/bin/python -m {module}, and paste it into README.md"


REGENERATE = _regenerate("infra.config_reference")


def _block(name: str) -> str:
    match = re.search(rf"<!-- BEGIN {name}[^>]*-->\n(.*?)\n<!-- END {name} -->", README, re.S)
    assert match, f"README.md has no {name} block"
    return match.group(1)


def test_config_reference_is_generated_from_the_model() -> None:
    assert _block("config-reference") == config_reference.reference(), REGENERATE


def test_fleet_queries_table_is_what_the_cluster_target_sends() -> None:
    from domain.stack_config import load_stack_file  # noqa: PLC0415
    from loadtest import cluster_target  # noqa: PLC0415

    expected = cluster_target.reference(load_stack_file(ROOT / "Pulumi.dev.yaml"))
    assert _block("fleet-queries") == expected, (
        "regenerate it: .venv/bin/python -m loadtest.cluster_target, and paste it into README.md"
    )


def test_cost_table_matches_the_example_stacks() -> None:
    assert _block("cost-table") == config_reference.cost_table(), REGENERATE


def test_fit_table_and_example_refusal_are_what_the_fit_check_says() -> None:
    assert _block("fit-table") == config_reference.fit_table(), REGENERATE


def test_cold_start_figures_are_the_twins_arithmetic() -> None:
    expected = timing_reference.cold_start()
    assert _block("cold-start") == expected, _regenerate("twin.fleet.timing_reference")


@pytest.mark.parametrize(
    "pattern",
    [
        r"leaves about \d+ GiB",  # the fit message's room on a GPU
        r"shows [\d.]+ GiB of its",  # CUDA's memory against EC2's
        r"serves about \d+ s after the HPA",  # the cold-start sum
    ],
)
def test_computed_figures_appear_only_in_generated_blocks(pattern: str) -> None:
    """A hand-written copy elsewhere (the emulator section once said 13 GiB, the fit one 12)."""
    outside = re.sub(r"<!-- BEGIN (\S+).*?<!-- END \1 -->", "", README, flags=re.S)
    assert re.search(pattern, README), f"no generated {pattern!r}: the test checks nothing"
    assert not re.search(pattern, outside), f"{pattern!r} written by hand outside a block"


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


def _row(key: str) -> str:
    match = re.search(rf"^\| `{key}` \|.*$", README, re.M)
    assert match, f"README.md has no table row for {key}"
    return match.group(0)


def test_the_fallback_row_says_when_keda_falls_back() -> None:
    row = _row("fallbackReplicas")
    assert f"once {FALLBACK_AFTER_FAILURES} consecutive Prometheus queries" in row
    assert f"`fallback.failureThreshold` is {FALLBACK_FAILURE_THRESHOLD}" in row


def test_the_secrets_section_names_every_route_the_key_guards_and_the_open_inference_one() -> None:
    section = README.split("### Secrets", 1)[1].split("\n#", 1)[0]
    for prefix in API_KEY_GUARDED_PREFIXES:
        assert f"`{prefix}`" in section
    assert "`/invocations`" in section
    assert "`/v1/*` needs the key" not in README


def test_the_emulator_limits_in_the_readme_are_the_code_defaults() -> None:
    section = README.split("**HTTP limits**", 1)[1].split("\n\n", 1)[0]
    limits = HttpLimits()
    assert f"over {limits.max_target_bytes // 1024} KiB gets 414" in section
    assert f"over {limits.max_head_bytes // 1024} KiB or {limits.max_headers} fields 431" in section
    assert f"over {limits.max_body_bytes // 1024**2} MiB 413" in section
    assert f"within {limits.read_timeout_s:g} s of its first byte" in section
    low, high = TIME_SCALES
    assert f"S is {low:g} to {high:g}." in README


def test_policy_rule_table_is_generated_from_the_pack() -> None:
    assert _block("policy-rules") == reference.rule_table(), (
        "regenerate it: .venv/bin/python -m policies.reference, and paste it into README.md"
    )


def test_policy_config_table_is_generated_from_the_config_files() -> None:
    assert _block("policy-configs") == reference.config_table(), (
        "regenerate it: .venv/bin/python -m policies.reference, and paste it into README.md"
    )


def test_the_load_test_limits_and_failure_reasons_in_the_readme_are_the_code() -> None:
    from domain import yaml_input  # noqa: PLC0415
    from loadtest import records, run_options, workload  # noqa: PLC0415

    text = " ".join(README.split())
    assert (
        f"UTF-8 text of at most {yaml_input.MAX_FILE_BYTES // 1024**2} MiB that expands "
        f"(through YAML aliases) to at most {yaml_input.MAX_VALUES:,} values and "
        f"{workload.MAX_EXPANDED_CHARS // 1024**2} MiB of text; a `weight` is at most "
        f"{workload.MAX_WEIGHT:,.0f}" in text
    )
    assert f"Every user count: at most {run_options.MAX_USERS_PER_WORKER:,} per worker." in text
    assert f"one step per rate (at most {run_options.MAX_RATE_PER_WORKER:,.0f} per worker)" in text
    low, high = TIME_SCALES
    assert f"Multiplies every plan duration, {low:g} to {high:g};" in text
    reasons = text.split("Failure reasons: ", 1)[1].split(" After a ", 1)[0]
    named = {v for k, v in vars(records).items() if k.startswith("REASON_")}
    assert {r for r in named if f"`{r}`" not in reasons} == set()


def test_run_flags_table_is_what_run_help_says() -> None:
    from loadtest import run_flags  # noqa: PLC0415

    assert _block(run_flags.MARKER) == run_flags.reference(), _regenerate("loadtest.run_flags")


def _table(heading: str) -> dict[str, str]:
    """The key -> default cells of the table under ``heading``."""
    section = README.split(heading, 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, re.M))


@pytest.mark.parametrize("section", ["model", "autoscaling"])
def test_the_workload_tables_name_every_key_and_the_codes_defaults(section: str) -> None:
    """These tables are written by hand beside prose: each key and plain default is the code's."""
    field = StackConfig.model_fields[section]
    model = field.annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    rows = _table(f"### `qwen-stress:{field.alias}`")
    keys = {sub.alias or name: sub for name, sub in model.model_fields.items()}
    assert set(rows) == set(keys), f"qwen-stress:{section}: README and schema keys differ"
    checked = 0
    for key, cell in rows.items():
        default = keys[key].default
        if isinstance(default, (int, float, str)) and not isinstance(default, bool):
            code = default if isinstance(default, str) else f"{default:g}"
            assert cell.strip("`") == code, (
                f"qwen-stress:{section}.{key}: README says {cell}, the code {default!r}"
            )
            checked += 1
    assert checked >= 3, "no plain default compared: the test checks nothing"
