"""Fit the step-time model to published measurements, and show how close it lands.

Each row of ``twin/data/observations.csv`` is replayed on the engine in virtual time, with
the workload the source describes (``calibration_scenarios.csv`` says which, and what had to be
assumed), and the modelled output tokens/s, median TPOT and TTFT are compared with the published
ones. ``--fit`` searches the efficiencies that minimise the squared log errors of the ``fit`` rows
(scipy, a dev dependency) and rewrites ``emulator_calibration.json``; without it the committed
parameters are replayed and the table printed::

    python -m twin.emulator.calibration          # the residual table
    python -m twin.emulator.calibration --fit    # refit, then the table

Rows on GPUs EC2 does not sell (RTX A6000, A40) use ``reference_gpus.csv``, a calibration-only
table, so they never appear in the deployable catalog. Rows whose role is ``validate`` are replayed
and reported but not fitted (TGI rows: a different engine, and their lengths are assumed).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from domain import catalog
from domain.catalog import GpuSpec, ModelSpec
from domain.fit import KV_BLOCK_TOKENS, kv_cache_tokens, scheduler_defaults
from twin.emulator.engine import Engine, EngineLimits
from twin.emulator.perf_model import (
    CALIBRATION_FILE,
    Efficiencies,
    EngineGeneration,
    StepCostModel,
    fitted,
)
from twin.emulator.simulate import Workload, WorkloadResult, run_closed_loop

TOLERANCE = 0.20
"""Largest accepted |modelled / published - 1| for any published metric of any row."""

GPU_MEMORY_UTILIZATION = 0.9

Metric = Literal["output_tokens_per_s", "tpot_ms", "ttft_ms"]


@dataclass(frozen=True)
class CalibrationRow:
    """One published measurement and the workload that reproduces it."""

    id: str
    model: ModelSpec
    gpu: GpuSpec
    engine: EngineGeneration
    chunked_prefill: bool
    role: Literal["fit", "validate"]
    workload: Workload
    published: dict[Metric, float]
    ttft_percentile: float


@dataclass(frozen=True)
class Residual:
    """Modelled against published, for one metric of one row."""

    row: str
    metric: Metric
    published: float
    modelled: float

    @property
    def error(self) -> float:
        """Relative error, modelled / published - 1."""
        return self.modelled / self.published - 1


@cache
def reference_gpus() -> dict[str, GpuSpec]:
    """GPUs that appear only in calibration rows (not sold on EC2), with their sources."""
    # Their rows hold nvidia-smi figures: what CUDA sees, and what a cloud listing would say.
    return {
        r["gpu"]: catalog.gpu_from_row(r, cuda_memory_column="ec2_memory_mib")
        for r in catalog.data_rows("reference_gpus.csv", "twin")
    }


def _output_lengths(spec: str, requests: int) -> list[int]:
    if "-" not in spec:
        return [int(spec)]
    low, high = (int(x) for x in spec.split("-"))
    if requests == 1:
        return [high]
    return [round(low + (high - low) * i / (requests - 1)) for i in range(requests)]


def _published(row: dict[str, str]) -> tuple[dict[Metric, float], float]:
    out: dict[Metric, float] = {"output_tokens_per_s": float(row["output_tokens_per_s"])}
    if row["tpot_ms"].strip():
        out["tpot_ms"] = float(row["tpot_ms"])
    ttft = row["ttft_ms"].strip()
    percentile = 50.0
    if ttft:
        if "(p" in ttft:
            value, pct = ttft.rstrip(")").split("(p")
            ttft, percentile = value, float(pct)
        out["ttft_ms"] = float(ttft)
    return out, percentile


@cache
def rows() -> list[CalibrationRow]:
    """Every observation with its replay workload."""
    scenarios = {r["id"]: r for r in catalog.data_rows("calibration_scenarios.csv", "twin")}
    gpus = {**catalog.gpus(), **reference_gpus()}
    out: list[CalibrationRow] = []
    for obs in catalog.data_rows("observations.csv", "twin"):
        sc = scenarios[obs["id"]]
        requests = int(sc["requests"])
        published, percentile = _published(obs)
        out.append(
            CalibrationRow(
                id=obs["id"],
                model=catalog.model(sc["emulated_model"] or obs["model"]),
                gpu=gpus[obs["gpu"]],
                engine="v0" if sc["engine"] == "v0" else "v1",
                chunked_prefill=sc["chunked_prefill"] == "yes",
                role="validate" if sc["role"] == "validate" else "fit",
                workload=Workload(
                    concurrency=int(obs["concurrency"]),
                    requests=requests,
                    prompt_tokens=int(sc["prompt_tokens"]),
                    output_tokens=_output_lengths(sc["output_tokens"], requests),
                    shared_prompt=sc["shared_prompt"] == "yes",
                ),
                published=published,
                ttft_percentile=percentile,
            )
        )
    return out


def _limits(model: ModelSpec, gpu: GpuSpec, chunked_prefill: bool) -> EngineLimits:
    # The fit check's arithmetic (one GPU, default utilisation), for GPUs outside the catalog too.
    # Without chunked prefill a whole prompt batch runs in one step, up to the context length.
    max_num_seqs, max_batched = scheduler_defaults(gpu)
    if not chunked_prefill:
        max_batched = model.max_position
    tokens = kv_cache_tokens(model, gpu, GPU_MEMORY_UTILIZATION, tp=1)
    return EngineLimits(
        kv_blocks=tokens // KV_BLOCK_TOKENS,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_batched,
        max_model_len=model.max_position,
    )


def replay(row: CalibrationRow, eff: Efficiencies) -> WorkloadResult:
    """Run the row's workload on an engine with efficiencies ``eff``."""
    cost = StepCostModel(row.model, row.gpu, efficiencies=eff, generation=row.engine)
    limits = _limits(row.model, row.gpu, row.chunked_prefill)
    return run_closed_loop(Engine(limits, cost), row.workload)


def residuals(row: CalibrationRow, eff: Efficiencies) -> list[Residual]:
    """Every published metric of ``row`` against its replay."""
    result = replay(row, eff)
    modelled: dict[Metric, Callable[[], float]] = {
        "output_tokens_per_s": lambda: result.output_tokens_per_s,
        "tpot_ms": lambda: result.tpot_median() * 1000,
        "ttft_ms": lambda: result.ttft_percentile(row.ttft_percentile) * 1000,
    }
    return [Residual(row.id, m, v, modelled[m]()) for m, v in row.published.items()]


def all_residuals(eff: Efficiencies | None = None) -> list[Residual]:
    """Residuals of every row, with the committed parameters unless ``eff`` is given."""
    params = eff or fitted()
    return [r for row in rows() for r in residuals(row, params)]


_NAMES = (
    "memory",
    "compute",
    "awq_memory",
    "overhead_s_per_layer",
    "v0_overhead_s_per_layer",
    "overlap_exponent",
)
_SCALE = (1.0, 1.0, 1.0, 1e-4, 1e-4, 1.0)  # overheads are ~0.1 ms: fit them in units of 100 us


def fit() -> Efficiencies:
    """Least squares on log(modelled / published) over the ``fit`` rows."""
    import numpy as np  # noqa: PLC0415 - dev-only dependencies of the refit
    from scipy.optimize import least_squares  # noqa: PLC0415

    fit_rows = [r for r in rows() if r.role == "fit"]

    def params(x: list[float]) -> Efficiencies:
        return Efficiencies(**{n: float(v) * s for n, v, s in zip(_NAMES, x, _SCALE, strict=True)})

    def errors(x: list[float]) -> list[float]:
        eff = params(x)
        return [math.log(r.modelled / r.published) for row in fit_rows for r in residuals(row, eff)]

    start = np.array([0.8, 0.6, 0.5, 0.2, 1.0, 2.0])
    low = np.array([0.05, 0.05, 0.05, 0.0, 0.0, 1.0])
    high = np.array([1.0, 1.0, 1.0, 50.0, 50.0, 20.0])
    solution = least_squares(errors, start, bounds=(low, high), diff_step=1e-3)
    # Four significant digits: the data do not support more, and the JSON stays readable.
    return params([float(f"{v:.4g}") if v > 1e-6 else 0.0 for v in solution.x])


def calibration_file() -> Path:
    """Where the committed parameters and residuals live (in the source tree)."""
    return Path(__file__).resolve().parents[1] / "data" / CALIBRATION_FILE


def write(eff: Efficiencies) -> None:
    """Commit ``eff`` and the residuals it gives to ``emulator_calibration.json``."""
    res = all_residuals(eff)
    roles = {row.id: row.role for row in rows()}
    document = {
        "about": "Step-time model parameters fitted by `python -m twin.emulator.calibration "
        "--fit` to twin/data/observations.csv; residuals = modelled / published - 1.",
        "parameters": eff.as_dict(),
        "tolerance": TOLERANCE,
        "residuals": [
            {
                "row": r.row,
                "role": roles[r.row],
                "metric": r.metric,
                "published": r.published,
                "modelled": round(r.modelled, 3),
                "error": round(r.error, 4),
            }
            for r in res
        ],
    }
    calibration_file().write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def table(res: list[Residual]) -> str:
    """The residuals as a Markdown table."""
    roles = {row.id: row for row in rows()}
    lines = [
        "| row | model | GPU | role | metric | published | modelled | error |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    for r in res:
        row = roles[r.row]
        lines.append(
            f"| {r.row} | {row.model.name.removeprefix('Qwen/')} | {row.gpu.name} | {row.role} "
            f"| {r.metric} | {r.published:g} | {r.modelled:.1f} | {r.error:+.1%} |"
        )
    return "\n".join(lines)


def print_residuals(res: list[Residual]) -> float:
    """Print the residual table of ``res``; return the worst |error| in it."""
    print(table(res))
    return max(abs(r.error) for r in res)


def main(argv: list[str] | None = None) -> None:
    """Print the residual table; refit first with ``--fit``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="refit and rewrite the JSON")
    args = parser.parse_args(argv)
    eff = fitted()
    if args.fit:
        eff = fit()
        write(eff)
    res = all_residuals(eff)
    print(", ".join(f"{k}={v:.4g}" for k, v in eff.as_dict().items()))
    worst = print_residuals(res)
    print(f"worst |error| {worst:.1%} (tolerance {TOLERANCE:.0%})")


if __name__ == "__main__":
    main()
