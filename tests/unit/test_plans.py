"""Load plans walked offline: the capacity search and the fixed shapes."""

from __future__ import annotations

import pytest

from loadtest import plans
from loadtest.plans import PLANS, PlanError, PlanOptions, Step, create, run_offline


def walk(name: str, verdicts: dict[int, bool] | None = None, **options: object) -> list[Step]:
    opts = PlanOptions(step_duration_s=10.0, soak_s=30.0, **options)
    table = verdicts or {}
    return run_offline(create(name, opts), lambda s: table.get(s.users or 0, True))


def test_capacity_stops_after_two_failures_and_soaks_at_the_last_pass() -> None:
    steps = walk("capacity", {150: False, 200: False}, max_users=500)
    assert [(s.phase, s.users) for s in steps] == [
        ("baseline", 50),
        ("ramp", 100),
        ("ramp", 150),
        ("ramp", 200),
        ("settle", 100),
        ("soak", 100),
        ("cooldown", 50),
    ]
    assert [s.duration_s for s in steps[4:]] == [10.0, 30.0, 10.0]


def test_capacity_one_failure_is_not_enough_and_max_users_ends_the_ramp() -> None:
    plan = create("capacity", PlanOptions(max_users=250, step_duration_s=1, soak_s=0))
    steps = run_offline(plan, lambda s: s.users != 150)
    assert [s.users for s in steps] == [50, 100, 150, 200, 250, 50]
    assert plan.stop_reason == "reached --max-users 250"


def test_capacity_soaks_at_baseline_when_nothing_passes() -> None:
    steps = walk("capacity", {50: False, 100: False})
    assert [(s.phase, s.users) for s in steps] == [
        ("baseline", 50),
        ("ramp", 100),
        ("settle", 50),
        ("soak", 50),
        ("cooldown", 50),
    ]


def test_fixed_shapes() -> None:
    assert [s.users for s in walk("ramp", max_users=200)] == [50, 100, 150, 200]
    spike = walk("spike", max_users=300)
    assert [(s.phase, s.users) for s in spike] == [
        ("baseline", 50),
        ("spike", 300),
        ("recovery", 50),
    ]
    assert spike[1].spawn_rate >= 300
    assert [s.duration_s for s in walk("soak", users=7)] == [10.0, 10.0, 10.0]
    poisson = walk("poisson", rates=[1.0, 2.5])
    assert [(s.rate, s.users) for s in poisson] == [(1.0, None), (2.5, None)]
    assert PLANS["poisson"].open_loop


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("poisson", {}, "needs --rate"),
        ("poisson", {"rates": [1.0, 0.0]}, "must be above 0"),
        ("fixed", {"users": 3}, "needs --users N and --duration"),
        ("capacity", {"max_users": 10}, "below the baseline"),
        ("soak", {"soak_s": 0}, "--soak above 0"),
        ("warp", {}, "unknown plan 'warp'; plans: capacity, fixed"),
    ],
)
def test_plan_errors(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        create(name, PlanOptions(**options))


def test_step_label_reads_like_the_reports() -> None:
    assert Step("ramp", 10.0, 150).label == "150 users"
    assert Step("rate", 10.0, rate=2.5).label == "2.5 req/s"


@pytest.mark.parametrize(
    ("cap", "workers", "shares"),
    [(1000, 3, [334, 333, 333]), (1, 2, [1, 0]), (4, 4, [1, 1, 1, 1]), (7, 1, [7])],
)
def test_max_inflight_is_split_so_the_shares_never_exceed_it(
    cap: int, workers: int, shares: list[int]
) -> None:
    assert plans.inflight_shares(cap, workers) == shares
