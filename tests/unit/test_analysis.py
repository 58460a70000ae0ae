"""Analysis on synthetic records: exact percentiles, step assignment, SLO verdicts, capacity."""

from __future__ import annotations

import pytest

from loadtest import analysis
from loadtest.analysis import StepSpan
from loadtest.metric_text import headline
from loadtest.records import RequestRecord
from loadtest.schema import StepStats, TimelineSample
from loadtest.slo import Slo, parse

T0 = 1_000_000.0


def rec(
    at: float,
    ttft: float = 100.0,
    e2e: float = 500.0,
    tokens: int = 5,
    itl: list[float] | None = None,
    ok: bool = True,
    reason: str | None = None,
) -> RequestRecord:
    return RequestRecord(
        start=T0 + at,
        ok=ok,
        task="t",
        endpoint="chat",
        reason=reason,
        ttft_ms=ttft if ok else None,
        e2e_ms=e2e if ok else None,
        itl_ms=itl if itl is not None else [100.0] * (tokens - 1),
        output_tokens=tokens if ok else None,
        usage=ok,
    )


def test_exact_percentiles_linear_interpolation() -> None:
    records = [rec(1.0, ttft=float(v)) for v in range(1, 101)]
    ttft = analysis.stats(records, 10.0, Slo()).ttft_ms
    # numpy's linear method on 1..100: p = 1 + (n - 1) * q
    assert ttft is not None
    assert ttft.model_dump() == {"avg": 50.5, "p50": 50.5, "p90": 90.1, "p95": 95.05, "p99": 99.01}


def test_itl_pooled_over_requests_and_tpot_per_request() -> None:
    a = rec(1.0, ttft=100.0, e2e=400.0, tokens=4, itl=[100.0, 100.0, 100.0])
    b = rec(2.0, ttft=100.0, e2e=200.0, tokens=2, itl=[100.0])
    c = rec(3.0, ttft=100.0, e2e=100.0, tokens=1, itl=[])
    s = analysis.stats([a, b, c], 10.0, Slo())
    assert s.itl_ms is not None and s.itl_ms.avg == 100.0
    # TPOT: (400-100)/3 = 100, (200-100)/1 = 100; one-token requests have none
    assert s.tpot_ms is not None and s.tpot_ms.p50 == 100.0
    assert s.output_tokens_per_s == pytest.approx((4 + 2 + 1) / 10.0)


def test_failures_by_reason_success_rate_rps_and_goodput() -> None:
    records = [rec(1.0, ttft=500.0), rec(1.5, ttft=2500.0), rec(2.0, ok=False, reason="http_503")]
    s = analysis.stats(records, 2.0, Slo())
    assert s.requests == 3 and s.failures == 1
    assert s.failures_by_reason == {"http_503": 1}
    assert s.success_rate == pytest.approx(2 / 3, abs=1e-6)
    assert s.rps == 1.0
    # the default per-request limit is the p99 TTFT limit, 2 s: only the first request meets it
    assert s.goodput_rps == 0.5


def test_records_go_to_the_step_they_were_sent_in() -> None:
    # the runner judges step 0 (its end at 20.0) before it starts step 1 (at 20.25)
    spans = [StepSpan(0, "baseline", 10.0, 20.0, 5), StepSpan(1, "ramp", 20.25, 30.0, 10)]
    records = [rec(9.9996), rec(10.0), rec(19.999), rec(20.125), rec(20.25), rec(29.9)]
    records.append(rec(30.0))
    groups = analysis.assign(records, spans, T0)
    offsets = [[round(r.start - T0, 4) for r in g] for g in groups]
    # sent while step 0's users still ran: step 0's; sent within the rounding of the first
    # step's start time: the first step's; sent as the plan ended, before the stop reached
    # the workers: still the last step's
    assert offsets == [[9.9996, 10.0, 19.999, 20.125], [20.25, 29.9, 30.0]]


def test_slo_verdicts_and_capacity() -> None:
    spans = [
        StepSpan(0, "baseline", 0.0, 10.0, 50),
        StepSpan(1, "ramp", 10.0, 20.0, 100),
        StepSpan(2, "ramp", 20.0, 30.0, 150),
        StepSpan(3, "soak", 30.0, 40.0, 100),
        StepSpan(4, "cooldown", 40.0, 50.0, 50),
    ]
    records = (
        [rec(1.0 + i * 0.1) for i in range(50)]
        + [rec(11.0 + i * 0.1, ttft=900.0) for i in range(50)]
        # mean TTFT 1.2 s fails at 150 users
        + [rec(21.0 + i * 0.1, ttft=1200.0) for i in range(50)]
        + [rec(31.0 + i * 0.1, ttft=300.0) for i in range(50)]
        + [rec(41.0 + i * 0.1) for i in range(50)]
    )
    result = analysis.analyze(records, spans, T0, Slo(), "capacity", [])
    assert [s.slo_pass for s in result.steps] == [True, True, False, True, True]
    failed = [c.key for c in result.steps[2].slo_checks if not c.passed]
    assert failed == ["ttft_mean_ms"]
    assert result.capacity.model_dump() == {
        "max_users_within_slo": 100,
        "max_rps_within_slo": 5.0,
        "step": 1,
        "limit_found": True,
    }
    assert result.verdict.passed is True
    assert result.overall.requests == 250


def test_tail_and_success_objectives() -> None:
    slo = parse("success_rate=99%,ttft_p99_ms=1s")
    tail = [rec(0.1 * i, ttft=100.0) for i in range(98)] + [rec(9.9, ttft=5000.0)] * 2
    assert not slo.passes(analysis.stats(tail, 10.0, slo))
    failing = [rec(0.1 * i) for i in range(98)] + [rec(9.9, ok=False, reason="timeout")] * 2
    checks = {c.key: c.passed for c in slo.evaluate(analysis.stats(failing, 10.0, slo))}
    assert checks["success_rate"] is False and checks["ttft_p99_ms"] is True


def test_a_step_without_successes_fails_and_no_capacity() -> None:
    spans = [StepSpan(0, "fixed", 0.0, 10.0, 5)]
    records = [rec(1.0, ok=False, reason="connection")]
    result = analysis.analyze(records, spans, T0, Slo(), "fixed", [])
    assert result.steps[0].slo_pass is False
    assert result.capacity.step is None
    assert result.verdict.passed is False


def step(index: int, phase: str, slo_pass: bool) -> StepStats:
    return StepStats(
        index=index,
        phase=phase,
        slo_pass=slo_pass,
        requests=0,
        failures=0,
        rps=0.0,
        start_s=0.0,
        end_s=1.0,
    )


def test_capacity_verdict_ignores_ramp_failures_but_not_the_soak() -> None:
    steps = [step(0, "baseline", True), step(1, "ramp", False), step(2, "soak", False)]
    assert analysis.verdict("capacity", steps).failed_steps == [2]
    assert analysis.verdict("ramp", steps).failed_steps == [1, 2]


def test_busy_worker_flags_the_step() -> None:
    spans = [StepSpan(0, "fixed", 0.0, 10.0, 5), StepSpan(1, "fixed", 10.0, 20.0, 5)]
    timeline = [
        TimelineSample(t=2.0, worker_cpu={"0": 95.0, "1": 20.0}),
        TimelineSample(t=4.0, worker_cpu={"0": 90.0, "1": 20.0}),
        TimelineSample(t=12.0, worker_cpu={"0": 40.0, "1": 50.0}),
    ]
    result = analysis.analyze([rec(1.0), rec(11.0)], spans, T0, Slo(), "fixed", timeline)
    assert [s.worker_cpu_pct for s in result.steps] == [92.5, 50.0]
    assert result.cpu.flagged_steps == [0]


def test_capacity_is_a_lower_bound_when_no_heavier_step_failed() -> None:
    spans = [
        StepSpan(0, "baseline", 0.0, 10.0, 50),
        StepSpan(1, "ramp", 10.0, 20.0, 100),
        StepSpan(2, "cooldown", 20.0, 30.0, 50),
    ]
    records = [rec(1.0 + i * 0.1) for i in range(50)] + [rec(11.0 + i * 0.1) for i in range(50)]
    # A failing cool-down is a transition, not a heavier load: it does not bound the capacity.
    records += [rec(21.0 + i * 0.1, ttft=3000.0) for i in range(50)]
    result = analysis.analyze(records, spans, T0, Slo(), "capacity", [])
    assert result.capacity.max_users_within_slo == 100
    assert result.capacity.limit_found is False
    assert headline(result).startswith("Capacity: at least 100 concurrent users")
    # the cool-down failed: "no step failed" would be false
    assert headline(result).endswith("No heavier step failed: raise --max-users to find the limit.")


@pytest.mark.parametrize(
    ("plan", "flag"), [("capacity", "--max-users"), ("fixed", "--users"), ("poisson", "--rate")]
)
def test_a_lower_bound_names_the_flag_that_adds_load(plan: str, flag: str) -> None:
    spans = [StepSpan(0, "fixed", 0.0, 10.0, 5)]
    result = analysis.analyze([rec(1.0)], spans, T0, Slo(), plan, [])
    assert headline(result).endswith(f"No heavier step failed: raise {flag} to find the limit.")


def test_a_run_without_a_single_success_says_so_not_that_capacity_is_low() -> None:
    spans = [StepSpan(0, "fixed", 0.0, 10.0, 5)]
    records = [rec(1.0 + i, ok=False, reason="http_404") for i in range(3)]
    records[0].detail = 'HTTP 404: {"message": "The model `nope` does not exist."}'
    records.append(rec(5.0, ok=False, reason="timeout"))
    result = analysis.analyze(records, spans, T0, Slo(), "fixed", [])
    assert result.overall.failure_examples == {
        "http_404": 'HTTP 404: {"message": "The model `nope` does not exist."}',
        "timeout": "",
    }
    assert headline(result) == (
        'No request succeeded (http_404 3, timeout 1; first: HTTP 404: {"message": "The model '
        '`nope` does not exist."}): check the target and the request (URL, key, model) before '
        "reading capacity from this run."
    )
    nothing = analysis.analyze([], spans, T0, Slo(), "fixed", [])
    assert headline(nothing) == "No request finished: nothing was measured."


def test_a_step_that_never_reached_its_users_is_not_the_capacity() -> None:
    # --users 500 at 50/s for 5 s: 300 users ran when the step ended, and the SLOs held
    spans = [
        StepSpan(0, "baseline", 0.0, 10.0, 50, users_reached=50),
        StepSpan(1, "ramp", 10.0, 20.0, 100, users_reached=100),
        StepSpan(2, "ramp", 20.0, 30.0, 500, users_reached=300),
    ]
    records = [rec(at + i * 0.1) for at in (1.0, 11.0, 21.0) for i in range(50)]
    result = analysis.analyze(records, spans, T0, Slo(), "ramp", [])
    assert [s.slo_pass for s in result.steps] == [True, True, True]
    assert [(s.users, s.users_reached, s.load_reached) for s in result.steps] == [
        (50, 50, True),
        (100, 100, True),
        (500, 300, False),
    ]
    assert (result.capacity.max_users_within_slo, result.capacity.step) == (100, 1)
    assert headline(result).startswith("Capacity: at least 100 concurrent users")


def test_a_run_whose_only_step_fell_short_claims_no_capacity() -> None:
    spans = [StepSpan(0, "fixed", 0.0, 5.0, 500, users_reached=300)]
    result = analysis.analyze(
        [rec(1.0 + i * 0.1) for i in range(40)], spans, T0, Slo(), "fixed", []
    )
    assert result.steps[0].slo_pass and not result.steps[0].load_reached
    assert result.capacity.step is None and result.capacity.max_users_within_slo is None
    assert headline(result) == (
        "No step that met the SLOs reached its planned load (step 0 (fixed) reached only 300 "
        "of 500 users before it ended): capacity was not measured; give the users time to "
        "start: a longer --duration or --step-duration, a higher --spawn-rate, or more --workers."
    )


def test_a_failing_step_bounds_the_capacity_by_the_load_it_reached() -> None:
    spans = [
        StepSpan(0, "baseline", 0.0, 10.0, 50, users_reached=50),
        StepSpan(1, "ramp", 10.0, 20.0, 500, users_reached=40),
    ]
    records = [rec(1.0 + i * 0.1) for i in range(50)]
    records += [rec(11.0 + i * 0.1, ttft=3000.0) for i in range(50)]
    result = analysis.analyze(records, spans, T0, Slo(), "ramp", [])
    # it failed with 40 users running: lighter than the 50 that passed, so no limit was found
    assert result.capacity.max_users_within_slo == 50
    assert result.capacity.limit_found is False
