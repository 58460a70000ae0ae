"""``--slo`` parsing: defaults, units, removal, and errors that say what to write."""

from __future__ import annotations

import pytest

from loadtest import analysis
from loadtest.metric_text import slo_text
from loadtest.records import RequestRecord
from loadtest.slo import Slo, SloError, parse


def test_defaults() -> None:
    slo = parse(None)
    assert slo.success_rate == 0.99
    assert slo.limits_ms == {"ttft_mean_ms": 1000.0, "ttft_p99_ms": 2000.0}


def test_overrides_units_and_off() -> None:
    slo = parse("success_rate=99.5%, ttft_p99_ms=1.5s, itl_p50_ms=40ms, ttft_mean_ms=off")
    assert slo.success_rate == pytest.approx(0.995)
    assert slo.limits_ms == {"ttft_p99_ms": 1500.0, "itl_p50_ms": 40.0}
    assert parse("success_rate=0.9").success_rate == 0.9
    assert Slo.from_json(slo.to_json()) == slo


def test_every_objective_can_be_switched_off_success_rate_too() -> None:
    # the README says KEY=off removes a default: success_rate is one
    slo = parse("success_rate=off,ttft_mean_ms=off")
    assert slo.success_rate == 0.0 and slo.limits_ms == {"ttft_p99_ms": 2000.0}
    assert Slo.from_json(slo.to_json()) == slo
    assert slo_text(slo) == "any success rate (success_rate=off), TTFT p99 < 2.00 s"
    half = analysis.stats([_record(True), _record(False)], 1.0, slo)
    assert slo.passes(half) and not parse(None).passes(half)


def _record(ok: bool) -> RequestRecord:
    return RequestRecord(1.0, ok, "t", "chat", ttft_ms=100.0 if ok else None)


def test_request_limits_take_the_loosest_per_metric() -> None:
    slo = parse("ttft_p50_ms=500,e2e_p99_ms=9000,itl_p99_ms=100")
    assert slo.request_limits_ms() == {"ttft": 2000.0, "e2e": 9000.0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttft_p98_ms=100", "unknown objective"),
        ("latency=3", "unknown objective"),
        ("ttft_p99_ms=fast", "write a time like"),
        ("success_rate=abc", "write 0.99, 99 or 99%"),
        ("success_rate=150%", "between 0 and 100%"),
        ("ttft_p99_ms", "write KEY=VALUE"),
    ],
)
def test_errors_name_the_item(text: str, expected: str) -> None:
    with pytest.raises(SloError, match=expected):
        parse(text)
