"""The fitted step-time model reproduces every published measurement within 20%."""

from __future__ import annotations

import json

import pytest

from domain import catalog
from twin.emulator import calibration
from twin.emulator.perf_model import fitted


def _committed() -> dict[str, object]:
    data: dict[str, object] = json.loads(calibration.calibration_file().read_text())
    return data


RESIDUALS = calibration.all_residuals()


@pytest.mark.parametrize("res", RESIDUALS, ids=lambda r: f"{r.row}:{r.metric}")
def test_each_calibration_row_is_within_tolerance(res: calibration.Residual) -> None:
    assert abs(res.error) <= calibration.TOLERANCE, (
        f"{res.row} {res.metric}: modelled {res.modelled:.1f} vs published {res.published:g}"
    )


def test_every_observation_is_replayed() -> None:
    rows = {r.id for r in calibration.rows()}
    published = {r.row for r in RESIDUALS}
    assert rows == published
    assert len(rows) == 16


def test_committed_residuals_match_the_committed_parameters() -> None:
    committed = _committed()
    assert committed["parameters"] == fitted().as_dict()
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
    assert "lds-a6000-7b-256 | Qwen2.5-7B-Instruct | RTX-A6000 | fit | ttft_ms | 520" in table
