"""Service-level objectives: what a load step must meet to count as healthy.

Defaults follow the usual API health table: at least 99% of requests succeed, mean TTFT under
1 s and p99 TTFT under 2 s. ``--slo KEY=VALUE,...`` changes or adds limits; any
``<metric>_<stat>_ms`` is accepted (metric: ttft, itl, tpot, e2e; stat: mean, p50, p90, p95,
p99) and ``KEY=off`` removes an objective (``success_rate=off``: no minimum success rate).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from domain.durations import DurationError, parse_duration

if TYPE_CHECKING:  # the run-file models import this module for the Slo type
    from loadtest.schema import Stats

METRICS = ("ttft", "itl", "tpot", "e2e")
STATS = ("mean", "p50", "p90", "p95", "p99")
PER_REQUEST = ("ttft", "tpot", "e2e")
"""Metrics that one request has on its own, so goodput can check them request by request."""

_LIMIT_KEY = re.compile(rf"^({'|'.join(METRICS)})_({'|'.join(STATS)})_ms$")
DEFAULT_LIMITS_MS = {"ttft_mean_ms": 1000.0, "ttft_p99_ms": 2000.0}
DEFAULT_SUCCESS_RATE = 0.99
_OFF = ("off", "none")


class SloError(ValueError):
    """An ``--slo`` item is wrong; the message names it and shows the accepted form."""


@dataclass(frozen=True)
class Check:
    """One objective applied to one set of stats."""

    key: str
    limit: float
    value: float | None
    passed: bool


@dataclass(frozen=True)
class Slo:
    """The objectives a step must meet: a minimum success rate and upper latency limits."""

    success_rate: float = DEFAULT_SUCCESS_RATE
    limits_ms: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS_MS))

    def to_json(self) -> dict[str, float]:
        """As written to ``config.json`` and ``summary.json``."""
        return {"success_rate": self.success_rate, **self.limits_ms}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Slo:
        """Read back what ``to_json`` wrote; ``SloError`` names a key or value it cannot take."""
        success = DEFAULT_SUCCESS_RATE
        limits: dict[str, float] = {}
        for key, raw in data.items():
            if key != "success_rate" and not _LIMIT_KEY.match(key):
                raise SloError(f"{key}: not an objective")
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
                raise SloError(f"{key}: {raw!r} is not a number")
            if key == "success_rate":
                success = float(raw)
            else:
                limits[key] = float(raw)
        return cls(success, limits)

    def request_limits_ms(self) -> dict[str, float]:
        """Per-request limits for goodput: the loosest limit set for TTFT, TPOT and E2E.

        Only one request is looked at, so the tail limit (the largest) is what it must meet,
        as in vLLM's ``--goodput``.
        """
        out: dict[str, float] = {}
        for key, limit in self.limits_ms.items():
            metric = key.split("_", 1)[0]
            if metric in PER_REQUEST:
                out[metric] = max(limit, out.get(metric, 0.0))
        return out

    def evaluate(self, stats: Stats) -> list[Check]:
        """Every objective against one step's (or the run's) stats.

        A step with no successful request fails every latency objective: no data is not health.
        """
        rate = stats.success_rate
        checks = [
            Check(
                "success_rate",
                self.success_rate,
                rate,
                rate is not None and rate >= self.success_rate,
            )
        ]
        for key, limit in self.limits_ms.items():
            match = _LIMIT_KEY.match(key)
            assert match is not None
            metric, stat = match.groups()
            summary = stats.latency(metric)
            value = summary.stat(stat) if summary is not None else None
            checks.append(Check(key, limit, value, value is not None and value < limit))
        return checks

    def passes(self, stats: Stats) -> bool:
        """True when every objective holds."""
        return all(c.passed for c in self.evaluate(stats))


def _ms(key: str, raw: str) -> float:
    try:
        return parse_duration(raw, bare_unit="ms") * 1000.0
    except DurationError:
        raise SloError(f"--slo {key}={raw}: write a time like 1500, 1500ms or 1.5s") from None


def _rate(raw: str) -> float:
    text = raw.strip().removesuffix("%")
    try:
        value = float(text)
    except ValueError:
        raise SloError(f"--slo success_rate={raw}: write 0.99, 99 or 99%") from None
    value = value / 100.0 if raw.strip().endswith("%") or value > 1 else value
    if not 0 < value <= 1:
        raise SloError(f"--slo success_rate={raw}: must be between 0 and 100%")
    return value


def parse(text: str | None) -> Slo:
    """Apply ``KEY=VALUE,...`` over the defaults (``None`` or empty: the defaults)."""
    success = DEFAULT_SUCCESS_RATE
    limits = dict(DEFAULT_LIMITS_MS)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not raw.strip():
            raise SloError(f"--slo {item.strip()!r}: write KEY=VALUE, for example ttft_p99_ms=1500")
        off = raw.strip().lower() in _OFF
        if key == "success_rate":
            # Off: no minimum (a test of latency alone); 0 is the only rate that always holds.
            success = 0.0 if off else _rate(raw)
        elif _LIMIT_KEY.match(key):
            if off:
                limits.pop(key, None)
            else:
                limits[key] = _ms(key, raw)
        else:
            raise SloError(
                f"--slo {key}: unknown objective; use success_rate or <metric>_<stat>_ms with "
                f"metric in {', '.join(METRICS)} and stat in {', '.join(STATS)} "
                "(for example ttft_p99_ms=1500, itl_p50_ms=50)"
            )
    return Slo(success, limits)
