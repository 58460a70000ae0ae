"""Fit the step-time model to published measurements, and show how close it lands.

Each row of ``twin/data/observations.csv`` is replayed on the engine in virtual time, with
the workload the source describes (``calibration_scenarios.csv`` says which, and what had to be
assumed), and the modelled output tokens/s, median TPOT and TTFT are compared with the published
ones (and ITL where the source gives it instead of TPOT). ``--fit`` searches, within each
parameter's physical bounds, the parameters that minimise the squared log errors of the ``fit``
rows (scipy, a dev dependency) and rewrites ``emulator_calibration.json``; without it the
committed parameters are replayed and the table printed; ``--readme`` prints the README's
calibration block (parameters and residuals), which a test compares with the README::

    python -m twin.emulator.calibration          # the residual table
    python -m twin.emulator.calibration --fit    # refit, then the table
    python -m twin.emulator.calibration --readme # the block between the README's markers

Rows on GPUs EC2 does not sell (RTX A6000, A40) use ``reference_gpus.csv``, a calibration-only
table, so they never appear in the deployable catalog. Rows whose role is ``validate`` are replayed
and reported, separately, but not fitted: the TGI rows (a different engine, assumed lengths) and
concurrency points held out of the V1 sweeps, to show how the fit does on points it never saw.
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
    BOUNDS,
    CALIBRATION_FILE,
    Efficiencies,
    EngineGeneration,
    StepCostModel,
    fitted,
)
from twin.emulator.simulate import Workload, WorkloadResult, run_closed_loop

Metric = Literal["output_tokens_per_s", "tpot_ms", "itl_ms", "ttft_ms"]

GOAL: dict[Metric, float] = {
    "output_tokens_per_s": 0.15,
    "tpot_ms": 0.20,
    "itl_ms": 0.20,
    "ttft_ms": 0.25,
}
"""Targeted |modelled / published - 1| per metric (issue 13's goals); the fit weighs each error
in units of its goal."""

TOLERANCE: dict[Metric, float] = {
    "output_tokens_per_s": 0.15,
    "tpot_ms": 0.15,
    "itl_ms": 0.15,
    "ttft_ms": 0.30,
}
"""Largest |modelled / published - 1| the tests accept per metric, for every row, fitted or held
out: what the committed fit achieves, with a little room, not the goal. TTFT at higher
concurrency has its own, wider bound (``LOADED_TTFT_TOLERANCE``)."""

LOW_LOAD_CONCURRENCY = 4
"""Up to this many streams a row is at low load, where TTFT is request overhead plus a step or
two; above it TTFT also depends on how bursts of prompts line up, which replays reproduce less
well."""
LOADED_TTFT_TOLERANCE = 0.45
"""TTFT bound above ``LOW_LOAD_CONCURRENCY`` (the held-out L4 point at 16 streams is 43% low)."""

GPU_MEMORY_UTILIZATION = 0.9


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
    for metric in ("tpot_ms", "itl_ms"):
        if row[metric].strip():
            out[metric] = float(row[metric])
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


def _limits(
    model: ModelSpec, gpu: GpuSpec, chunked_prefill: bool, engine: EngineGeneration
) -> EngineLimits:
    # The fit check's arithmetic (one GPU, default utilisation), for GPUs outside the catalog too.
    # Without chunked prefill a whole prompt batch runs in one step, up to the context length.
    max_num_seqs, max_batched = scheduler_defaults(gpu)
    if not chunked_prefill:
        max_batched = model.max_position
    tokens = kv_cache_tokens(model, gpu, GPU_MEMORY_UTILIZATION, tp=1)
    return EngineLimits(
        async_scheduling=engine == "v1",
        kv_blocks=tokens // KV_BLOCK_TOKENS,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_batched,
        max_model_len=model.max_position,
    )


def replay(row: CalibrationRow, eff: Efficiencies) -> WorkloadResult:
    """Run the row's workload on an engine with efficiencies ``eff``."""
    cost = StepCostModel(row.model, row.gpu, efficiencies=eff, generation=row.engine)
    limits = _limits(row.model, row.gpu, row.chunked_prefill, row.engine)
    return run_closed_loop(Engine(limits, cost), row.workload)


def residuals(row: CalibrationRow, eff: Efficiencies) -> list[Residual]:
    """Every published metric of ``row`` against its replay."""
    result = replay(row, eff)
    modelled: dict[Metric, Callable[[], float]] = {
        "output_tokens_per_s": lambda: result.output_tokens_per_s,
        "tpot_ms": lambda: result.tpot_median() * 1000,
        "itl_ms": lambda: result.itl_median() * 1000,
        "ttft_ms": lambda: result.ttft_percentile(row.ttft_percentile) * 1000,
    }
    return [Residual(row.id, m, v, modelled[m]()) for m, v in row.published.items()]


def all_residuals(eff: Efficiencies | None = None) -> list[Residual]:
    """Residuals of every row, with the committed parameters unless ``eff`` is given."""
    return list(_all_residuals(eff or fitted()))


@cache
def _all_residuals(eff: Efficiencies) -> tuple[Residual, ...]:
    # Replaying every row takes seconds; the README block and the tests ask more than once.
    return tuple(r for row in rows() for r in residuals(row, eff))


_SCALE = {
    "step_overhead_s": 1e-3,
    "seq_overhead_s": 1e-5,
    "request_overhead_s": 1e-3,
    "v0_overhead_s_per_layer": 1e-4,
    "v0_seq_overhead_s": 1e-5,
}
"""Host costs are fitted in units near their size (ms, 10 us, 100 us per layer): the solver's
steps are then alike for every parameter."""
_START = {
    "memory": 0.8,
    "compute": 0.6,
    "awq_memory": 0.6,
    "overlap_exponent": 2.0,
    "step_overhead_s": 0.001,
    "seq_overhead_s": 0.00002,
    "request_overhead_s": 0.01,
    "v0_overhead_s_per_layer": 0.0001,
    "v0_seq_overhead_s": 0.00002,
}


def fit() -> Efficiencies:
    """Least squares on log(modelled / published) over the ``fit`` rows, within ``BOUNDS``."""
    import numpy as np  # noqa: PLC0415 - dev-only dependencies of the refit
    from scipy.optimize import least_squares  # noqa: PLC0415

    fit_rows = [r for r in rows() if r.role == "fit"]
    names = list(BOUNDS)
    scale = np.array([_SCALE.get(n, 1.0) for n in names])

    def params(x: list[float]) -> Efficiencies:
        return Efficiencies(**{n: float(v) for n, v in zip(names, x * scale, strict=True)})

    def errors(x: list[float]) -> list[float]:
        # Each error in units of its metric's tolerance: the goals weigh the metrics.
        eff = params(x)
        return [
            math.log(r.modelled / r.published) / GOAL[r.metric]
            for row in fit_rows
            for r in residuals(row, eff)
        ]

    low = np.array([BOUNDS[n][0] for n in names]) / scale
    high = np.array([BOUNDS[n][1] for n in names]) / scale
    start = np.array([_START[n] for n in names]) / scale
    solution = least_squares(errors, start, bounds=(low, high), diff_step=1e-3)
    # Four significant digits: the data do not support more, and the JSON stays readable.
    values = [float(f"{v:.4g}") for v in solution.x * scale]
    return Efficiencies(**{n: v if v > 1e-9 else 0.0 for n, v in zip(names, values, strict=True)})


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
        "goal": GOAL,
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
    by_id = {row.id: row for row in rows()}
    lines = [
        "| row | model | GPU | concurrency | metric | published | modelled | error |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for r in res:
        row = by_id[r.row]
        lines.append(
            f"| {r.row} | {row.model.name.removeprefix('Qwen/')} | {row.gpu.name} "
            f"| {row.workload.concurrency} | {r.metric} | {r.published:g} | {r.modelled:.1f} "
            f"| {r.error:+.1%} |"
        )
    return "\n".join(lines)


def split(res: list[Residual]) -> tuple[list[Residual], list[Residual]]:
    """``res`` divided into the fitted rows' residuals and the held-out rows'."""
    roles = {row.id: row.role for row in rows()}
    return [r for r in res if roles[r.row] == "fit"], [r for r in res if roles[r.row] != "fit"]


def worst(res: list[Residual]) -> dict[Metric, float]:
    """Largest |error| per metric present in ``res``."""
    out: dict[Metric, float] = {}
    for r in res:
        out[r.metric] = max(out.get(r.metric, 0.0), abs(r.error))
    return out


def tolerance(res: Residual) -> float:
    """The largest |error| the tests accept for ``res`` (see ``TOLERANCE``)."""
    concurrency = {row.id: row.workload.concurrency for row in rows()}[res.row]
    if res.metric == "ttft_ms" and concurrency > LOW_LOAD_CONCURRENCY:
        return LOADED_TTFT_TOLERANCE
    return TOLERANCE[res.metric]


def within_tolerance(res: list[Residual]) -> bool:
    """Whether every residual is within its ``tolerance``."""
    return all(abs(r.error) <= tolerance(r) for r in res)


_MEANINGS: dict[str, str] = {
    "memory": "share of HBM bandwidth streaming BF16 weights and KV cache",
    "compute": "share of dense FP16 tensor peak in large (prefill) steps",
    "awq_memory": "share of HBM bandwidth streaming AWQ weights (dequantising kernels)",
    "overlap_exponent": "p of the soft maximum of memory and compute time (1 = sum, large = max)",
    "step_overhead_s": "(a) host time per V1 engine step: schedule, prepare inputs, launch, sample",
    "seq_overhead_s": "(b) host time per scheduled sequence per step: bookkeeping, sampling, IPC",
    "request_overhead_s": "(c) API-server latency per request on the first-token path",
    "v0_overhead_s_per_layer": "V0 (vLLM 0.6) host time per step per layer (its rows only)",
    "v0_seq_overhead_s": "V0 host time per scheduled sequence per step (its rows only)",
}


def _value(name: str, value: float) -> str:
    if name.endswith("_per_layer"):
        return f"{value * 1e3:.3g} ms/layer"
    if name.endswith("seq_overhead_s"):
        return f"{value * 1e6:.3g} us"
    if name.endswith("_s"):
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g}"


def parameter_table(eff: Efficiencies) -> str:
    """The fitted parameters as a Markdown table: value, physical range, meaning."""
    lines = ["| parameter | fitted | range | meaning |", "|---|---:|---|---|"]
    for name, value in eff.as_dict().items():
        low, high = BOUNDS[name]
        lines.append(
            f"| `{name}` | {_value(name, value)} | {_value(name, low)} .. {_value(name, high)} "
            f"| {_MEANINGS[name]} |"
        )
    return "\n".join(lines)


def _worst_line(res: list[Residual]) -> str:
    parts = [f"{m} {e:.1%} (goal {GOAL[m]:.0%})" for m, e in worst(res).items()]
    return "Worst |error|: " + ", ".join(parts) + "."


def readme_block(eff: Efficiencies | None = None) -> str:
    """The README's calibration block: parameters, then fitted and held-out residuals."""
    params = eff or fitted()
    fit_res, held_out = split(all_residuals(params))
    return "\n".join(
        [
            parameter_table(params),
            "",
            "Rows the parameters were fitted to:",
            "",
            table(fit_res),
            "",
            _worst_line(fit_res),
            "",
            "Rows held out of the fit (role `validate`):",
            "",
            table(held_out),
            "",
            _worst_line(held_out),
            "",
            _tolerance_line(),
        ]
    )


def _tolerance_line() -> str:
    parts = [f"{m} {t:.0%}" for m, t in TOLERANCE.items() if m != "ttft_ms"]
    return (
        "The unit test accepts, on every row: " + ", ".join(parts) + f", ttft_ms "
        f"{TOLERANCE['ttft_ms']:.0%} up to {LOW_LOAD_CONCURRENCY} streams and "
        f"{LOADED_TTFT_TOLERANCE:.0%} above."
    )


def main(argv: list[str] | None = None) -> None:
    """Print the residual tables; refit first with ``--fit``; ``--readme`` prints the block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="refit and rewrite the JSON")
    parser.add_argument("--readme", action="store_true", help="print the README block only")
    args = parser.parse_args(argv)
    eff = fitted()
    if args.fit:
        eff = fit()
        write(eff)
    if args.readme:
        print(readme_block(eff))
        return
    print(", ".join(f"{k}={v:.4g}" for k, v in eff.as_dict().items()))
    fit_res, held_out = split(all_residuals(eff))
    for title, res in (("fitted rows", fit_res), ("held-out rows", held_out)):
        print(f"\n{title}:\n{table(res)}\n{_worst_line(res)}")
    verdict = "within" if within_tolerance(fit_res + held_out) else "NOT within"
    print(f"\nevery row {verdict} the tolerance the tests assert")


if __name__ == "__main__":
    main()
