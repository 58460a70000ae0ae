"""The fitted step-time model reproduces every published measurement within its metric's goal."""

from __future__ import annotations

import json
import re

import pytest

from domain import catalog
from tests.pulumi_mocks import ROOT
from twin.emulator import calibration
from twin.emulator.perf_model import fitted


def _committed() -> dict[str, object]:
    data: dict[str, object] = json.loads(calibration.calibration_file().read_text())
    return data


RESIDUALS = calibration.all_residuals()
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("res", RESIDUALS, ids=lambda r: f"{r.row}:{r.metric}")
def test_each_calibration_row_is_within_tolerance(res: calibration.Residual) -> None:
    assert abs(res.error) <= calibration.tolerance(res), (
        f"{res.row} {res.metric}: modelled {res.modelled:.1f} vs published {res.published:g}"
    )


def test_every_observation_is_replayed_and_some_are_held_out() -> None:
    rows = {r.id for r in calibration.rows()}
    published = {r.row for r in RESIDUALS}
    assert rows == published
    assert len(rows) == 25
    fit, held_out = calibration.split(RESIDUALS)
    assert fit and held_out
    assert {r.row for r in held_out} >= {"wmx-l4-05b-2", "wmx-l4-05b-16", "lds-a6000-7b-4"}


def test_small_model_v1_rows_cover_several_concurrencies_with_latencies() -> None:
    """The rows that pin the host costs: a 0.5B model under vLLM V1 from 1 to 32 streams."""
    small = [r for r in calibration.rows() if r.id.startswith("wmx-")]
    assert sorted(r.workload.concurrency for r in small) == [1, 2, 4, 8, 16, 32]
    assert all(r.engine == "v1" and set(r.published) >= {"ttft_ms", "itl_ms"} for r in small)


def test_committed_residuals_match_the_committed_parameters() -> None:
    committed = _committed()
    assert committed["parameters"] == fitted().as_dict()
    assert committed["goal"] == calibration.GOAL
    stored = committed["residuals"]
    assert isinstance(stored, list)
    assert [(r["row"], r["metric"]) for r in stored] == [(r.row, r.metric) for r in RESIDUALS]
    for entry, res in zip(stored, RESIDUALS, strict=True):
        assert entry["modelled"] == pytest.approx(res.modelled, rel=1e-3)


def test_reference_gpus_stay_out_of_the_deployable_catalog() -> None:
    reference = set(calibration.reference_gpus())
    assert reference == {"RTX-A6000", "A40"}
    assert not reference & set(catalog.gpus())


def test_table_lists_every_residual() -> None:
    table = calibration.table(RESIDUALS)
    assert table.count("\n") == len(RESIDUALS) + 1
    assert "| lds-a6000-7b-256 | Qwen2.5-7B-Instruct | RTX-A6000 | 256 | ttft_ms | 520 |" in table


def test_readme_calibration_block_is_generated_from_the_committed_fit() -> None:
    match = re.search(
        r"<!-- BEGIN emulator-calibration[^>]*-->\n(.*?)\n<!-- END emulator-calibration -->",
        README,
        re.S,
    )
    assert match, "README.md has no emulator-calibration block"
    assert match.group(1) == calibration.readme_block(), (
        "regenerate it: .venv/bin/python -m twin.emulator.calibration --readme, and paste it "
        "into README.md"
    )
