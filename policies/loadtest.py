"""Ephemeral load-test stacks: everything in them must end, even when nobody ends it.

A load-test stack (project ``qwen-stress-loadtest``, one stack per run) is destroyed by the run
that made it; these rules make sure that whatever the run fails to clean up still stops on its
own (Jobs with a deadline and no retries), can be found and reaped (an expiry on the namespace),
can be destroyed (nothing protected), and never opened a paid public load balancer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from domain import topology
from policies.resources import Resource, dig, number
from policies.rule import Config, Setting, resource_policy

JOB = "kubernetes:batch/v1:Job"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE = "kubernetes:core/v1:Service"

MAX_DEADLINE = Setting(
    "maxActiveDeadlineSeconds",
    {"type": "number", "exclusiveMinimum": 0, "default": 43200},
    "Longest activeDeadlineSeconds a load-test Job may set (seconds; default 12 hours).",
)


def _jobs(resource: Resource, config: Config) -> Iterator[str]:
    if resource.type != JOB or not resource.in_load_test_stack:
        return
    deadline = number(resource.get("spec", "activeDeadlineSeconds"))
    ceiling = float(config[MAX_DEADLINE.key])
    if deadline is None or not 0 < deadline <= ceiling:
        yield (
            f"{resource.name}: spec.activeDeadlineSeconds is "
            f"{'unset' if deadline is None else f'{deadline:g}'}; "
            f"set it to the plan's length plus start-up, at most {ceiling:g} s, so a stuck run "
            "stops generating load (and paying for nodes) on its own"
        )
    backoff = number(resource.get("spec", "backoffLimit"))
    if backoff != 0:
        yield (
            f"{resource.name}: spec.backoffLimit is "
            f"{'unset (6)' if backoff is None else f'{backoff:g}'}"
            "; set it to 0, so a failed load generator fails the run instead of restarting "
            "mid-plan and skewing the measurement"
        )


LOADTEST_JOB_LIMITS = resource_policy(
    "loadtest-job-limits",
    "Load-test Jobs set activeDeadlineSeconds and backoffLimit 0.",
    _jobs,
    settings=(MAX_DEADLINE,),
)


def expiry_problem(value: object) -> str | None:
    """Why a namespace's expiry annotation cannot be used, or None when it can."""
    if not isinstance(value, str) or not value:
        return "is missing"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return f"is {value!r}, not an ISO 8601 time"
    if moment.tzinfo is None:
        return f"is {value!r}, which has no time zone (write it in UTC, ending in Z)"
    return None


def _expiry(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != NAMESPACE or not resource.in_load_test_stack:
        return
    annotation = topology.EXPIRES_ANNOTATION
    problem = expiry_problem(dig(resource.props, "metadata", "annotations", annotation))
    if problem:
        yield (
            f"{resource.name}: the annotation {annotation} {problem}; set it to when the run must "
            "be over (UTC), so `qwen-stress reap` can remove what a failed run left"
        )


LOADTEST_NAMESPACE_EXPIRY = resource_policy(
    "loadtest-namespace-expiry",
    f"Load-test namespaces carry their expiry time ({topology.EXPIRES_ANNOTATION}, ISO 8601 UTC).",
    _expiry,
)


def _protect(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.in_load_test_stack and resource.protect:
        yield (
            f"{resource.name}: is protected, so the run's destroy stops at it and the stack (and "
            "its nodes) outlive the run; drop protect from load-test resources"
        )


LOADTEST_NO_PROTECT = resource_policy(
    "loadtest-no-protect",
    "Nothing in a load-test stack is protected from destroy.",
    _protect,
)


def _load_balancer(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != SERVICE or not resource.in_load_test_stack:
        return
    if resource.get("spec", "type") == "LoadBalancer":
        yield (
            f"{resource.name}: a LoadBalancer Service in a load-test namespace opens a paid, "
            "internet-facing load balancer to the Locust master; use ClusterIP (the CLI "
            "follows the run through a port-forward)"
        )


LOADTEST_NO_LOAD_BALANCER = resource_policy(
    "loadtest-no-load-balancer",
    "Load-test stacks create no LoadBalancer Service.",
    _load_balancer,
)

POLICIES = (
    LOADTEST_JOB_LIMITS,
    LOADTEST_NAMESPACE_EXPIRY,
    LOADTEST_NO_PROTECT,
    LOADTEST_NO_LOAD_BALANCER,
)
