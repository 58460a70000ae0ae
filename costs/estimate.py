"""``qwen-stress cost estimate``: a stack's hourly cost, from its stack file or from a preview.

Both paths end in ``domain.hourly_cost.HourlyCost``: the stack file through
``StackConfig.hourly_cost`` (what the budget check and the README's cost table use), the
preview through ``costs.preview``. The Markdown is what CI posts on a pull request.
"""

from __future__ import annotations

from pathlib import Path

from domain.hourly_cost import LABELS, NOT_INCLUDED, HourlyCost, Line
from domain.prices import PriceTable
from domain.stack_config import load_stack_file


def from_stack_file(path: Path, prices: PriceTable | None = None) -> HourlyCost:
    """The cost of ``Pulumi.<stack>.yaml`` (any path), validated as ``pulumi preview`` would."""
    return load_stack_file(path).hourly_cost(prices)


def _count(line: Line) -> str:
    if line.min_count == line.max_count:
        return str(line.min_count)
    return f"{line.min_count}..{line.max_count}"


def usd_h(value: float) -> str:
    """``$1.01/h``: the rounding the README's cost table uses."""
    return f"${value:.2f}/h"


def markdown(cost: HourlyCost, source: str) -> str:
    """A table per resource type with the minimum and maximum, the prices' date and the notes."""
    rows = [
        f"#### Hourly cost of `{source}`",
        "",
        "| Resource | What | Count | Each | At minimum | At maximum |",
        "|---|---|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {LABELS[line.kind]} | {line.detail} | {_count(line)} | ${line.unit_usd:.4f}/h | "
        f"${line.min_usd:.3f}/h | ${line.max_usd:.3f}/h |"
        for line in cost.lines
    ]
    rows += [
        f"| **Total** | | | | **{usd_h(cost.min_usd)}** | **{usd_h(cost.max_usd)}** |",
        "",
        f"Prices: {cost.prices.label()}; spot at its worst recent price. {NOT_INCLUDED}.",
    ]
    if cost.notes:
        rows += ["", *(f"> {note}" for note in cost.notes)]
    return "\n".join(rows)
