"""How every file and flag this project reads reports a wrong value, written once.

Stack settings, workload files and the autoscaling spec all say what is wrong the same way: the
key the user wrote, the value, and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import ValidationError


def check_order(low: tuple[str, float], high: tuple[str, float], *, fix: str) -> None:
    """Refuse a lower bound above its upper bound, naming both settings and the fix."""
    (low_name, low_value), (high_name, high_value) = low, high
    if low_value > high_value:
        raise ValueError(
            f"{low_name} {low_value:g} is greater than {high_name} {high_value:g}; {fix}"
        )


def check_range(name: str, value: float, low: float, high: float, *, fix: str = "") -> None:
    """Refuse a number outside ``low..high`` (NaN and the infinities included), naming it.

    Every comparison with NaN is false, so a plain ``value <= 0`` check lets it through; this
    one cannot: the value must be shown to lie inside the range.
    """
    if not (math.isfinite(value) and low <= value <= high):
        rest = f"; {fix}" if fix else ""
        raise ValueError(f"{name} {value:g}: must be a number from {low:g} to {high:g}{rest}")


def error_lines(
    err: ValidationError, key: Callable[[str], str], missing: str, unknown: str
) -> list[str]:
    """One line per pydantic error: the key, what is wrong, and the value if not yet said.

    ``key`` turns the dotted location into the name the user knows; every file this project
    validates (stack config, workload files) reports errors the same way.
    """
    lines = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = missing
        elif e["type"] == "extra_forbidden":
            msg = unknown
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{key('.'.join(str(p) for p in e['loc']))}: {msg}")
    return lines
