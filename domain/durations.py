"""Durations as people write them: ``90s``, ``5m``, ``1h30m``, ``1.5s``, ``250ms``.

One parser for every place a duration enters: stack settings (Go durations, as the Cluster
Autoscaler reads them: a unit is required), CLI flags (a bare number is seconds) and SLO limits
(a bare number is milliseconds). Only finite, non-negative values come out, so a ``nan`` or an
``inf`` can never reach a timer.
"""

from __future__ import annotations

import math
import re

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|h|m|s)")
_BARE = re.compile(r"\d+(?:\.\d+)?|\.\d+")


TIME_SCALES = (0.001, 1000.0)
"""Time scales the twin's fleet and ``qwen-stress run`` accept: 0.001 runs a ten-minute cold
start in 0.6 s, 1000 stretches a cluster second to about 17 minutes. Outside, the clock's
arithmetic stops meaning anything (a scale of 1e-320 turns every elapsed second into infinity)."""


class DurationError(ValueError):
    """Not a duration; the message quotes the text and shows how to write one."""


def parse_duration(text: str, *, bare_unit: str | None = "s") -> float:
    """Seconds in ``text``: ``<number><unit>`` parts (``h``, ``m``, ``s``, ``ms``) in that order.

    ``bare_unit`` is the unit of a number written without one (``"s"`` for CLI flags, ``"ms"``
    for SLO limits); ``None`` refuses bare numbers, as Go's ``time.ParseDuration`` does.
    """
    raw = text.strip()
    hint = "write it like 90s, 5m or 1h30m"
    if bare_unit is not None and _BARE.fullmatch(raw):
        value = float(raw) * _UNITS[bare_unit]
    else:
        parts = _PART.findall(raw)
        order = [list(_UNITS).index(unit) for _, unit in parts]
        if not raw or "".join(n + u for n, u in parts) != raw or order != sorted(set(order)):
            raise DurationError(f"{text!r} is not a duration; {hint}")
        value = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if not math.isfinite(value):
        raise DurationError(f"{text!r} is too long to be a duration; {hint}")
    return value
