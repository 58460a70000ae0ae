"""``qwen-stress cost actuals RUN_DIR``: what AWS billed for a run, from Cost Explorer.

Three ``ce:GetCostAndUsage`` queries over the run's days (UTC, daily, ``UnblendedCost``,
grouped by ``SERVICE``): the spend tagged ``run-id`` = the run's id (its load-test stack), the
spend tagged with the platform stack's ``project`` and ``stack`` when the run names one (whole
days: Cost Explorer cannot cut an hour out of them), and the spend of the same services that
carries no ``project`` tag at all, reported apart instead of hidden. Cost Explorer lags about a
day behind usage and marks figures ``Estimated`` until they settle; the result says which, and
when to ask again. Request and response shapes: botocore's ce 2017-10-25 service model.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from costs.runs import Run
from domain import hourly_cost
from domain.run_cost import CostPart
from domain.stack_config import NAMESPACE as PLATFORM_PROJECT
from domain.topology import RUN_ID_TAG

METRIC = "UnblendedCost"
LAG = timedelta(hours=24)
"""How far Cost Explorer trails usage (AWS: "at least once every 24 hours")."""
Status = Literal["incomplete", "estimated", "final"]
DEFAULT_SERVICES = (
    hourly_cost.COMPUTE_SERVICE, hourly_cost.EC2_OTHER_SERVICE, hourly_cost.EKS_SERVICE
)  # fmt: skip
"""What a qwen-stress stack is billed under; the untagged query looks at least at these."""


class ActualsError(RuntimeError):
    """Cost Explorer cannot answer for this run; one line with the fix, nothing written."""


def window(run: Run) -> tuple[date, date]:
    """The run's days in UTC: ``[start, end)`` as Cost Explorer takes them (end exclusive)."""
    return run.started_at.date(), run.ended_at.date() + timedelta(days=1)


def _tag(key: str, value: str) -> dict[str, Any]:
    return {"Tags": {"Key": key, "Values": [value], "MatchOptions": ["EQUALS"]}}


def spend(
    ce: Any, start: date, end: date, expression: dict[str, Any]
) -> tuple[dict[str, float], bool]:
    """USD by service matching ``expression`` in ``[start, end)``, and whether any is estimated."""
    by_service: dict[str, float] = defaultdict(float)
    estimated = False
    token: str | None = None
    while True:
        request: dict[str, Any] = {
            "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
            "Granularity": "DAILY",
            "Metrics": [METRIC],
            "Filter": expression,
            "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
        }
        if token:
            request["NextPageToken"] = token
        page = ce.get_cost_and_usage(**request)
        for result in page.get("ResultsByTime", []):
            estimated = estimated or bool(result.get("Estimated"))
            for group in result.get("Groups", []):
                amount = float(group["Metrics"][METRIC]["Amount"])
                by_service[group["Keys"][0]] += amount
        token = page.get("NextPageToken")
        if not token:
            return dict(by_service), estimated


def tag_status(ce: Any, key: str) -> str | None:
    """``Active``, ``Inactive``, or None when billing has never seen the tag key."""
    tags = ce.list_cost_allocation_tags(TagKeys=[key]).get("CostAllocationTags", [])
    return str(tags[0]["Status"]) if tags else None


def _require_active(ce: Any, keys: list[str]) -> None:
    for key in keys:
        status = tag_status(ce, key)
        if status != "Active":
            state = "inactive" if status else "not known to AWS billing yet"
            raise ActualsError(
                f"cost allocation tag {key!r} is {state}, so Cost Explorer cannot filter on it: "
                "run `qwen-stress cost activate-tags` once (AWS applies it within 24 hours, "
                "to usage from then on)"
            )


def status_of(run: Run, estimated: bool, now: datetime) -> tuple[Status, str, datetime | None]:
    """Whether the figures can change, in words, and when to ask again (None: final)."""
    settled = run.ended_at + LAG
    if now < settled:
        return (
            "incomplete",
            "Cost Explorer trails usage by about a day, so this run's spend is not all in yet",
            settled,
        )
    if estimated:
        return (
            "estimated",
            "Cost Explorer still marks these figures estimated; they settle when AWS finalises "
            "the month's bill",
            now + LAG,
        )
    return "final", "final figures", None


def _total(by_service: dict[str, float]) -> float:
    return sum(by_service.values())


def _part_json(part: CostPart) -> dict[str, Any]:
    return {
        "kind": part.kind,
        "resource": part.label,
        "detail": part.detail,
        "service": part.service,
        "usd": part.usd,
    }


def reconciliation(
    parts: tuple[CostPart, ...], run_spend: dict[str, float], stack_spend: dict[str, float] | None
) -> list[dict[str, Any]]:
    """One row per service: its estimated parts, billed to the run's tag and the stack's.

    Each part of the estimate is set against the service that bills it (GPU and load-generator
    nodes: EC2 compute; the control plane: EKS; NAT gateway hours: "EC2 - Other"); a part no
    service is known for (``--hourly-usd``) gets no row, and ``unattributed`` says so.
    """
    by_service: dict[str, list[CostPart]] = defaultdict(list)
    for part in parts:
        if part.service is not None:
            by_service[part.service].append(part)
    rows = []
    for service in sorted(set(by_service) | set(run_spend) | set(stack_spend or {})):
        billed_run = run_spend.get(service, 0.0)
        billed_stack = (stack_spend or {}).get(service, 0.0)
        priced = by_service.get(service, [])
        estimated = sum(p.usd for p in priced) if priced else None
        billed = billed_run + billed_stack
        rows.append(
            {
                "service": service,
                "parts": [_part_json(p) for p in priced],
                "estimated_usd": estimated,
                "billed_run_usd": billed_run,
                "billed_stack_usd": billed_stack if stack_spend is not None else None,
                "billed_usd": billed,
                "difference_usd": None if estimated is None else billed - estimated,
            }
        )
    return rows


def collect(ce: Any, run: Run, now: datetime, stack: str | None = None) -> dict[str, Any]:
    """Query Cost Explorer for a run and build ``cost-actuals.json`` (nothing is written here)."""
    if run.local:
        raise ActualsError(
            f"{run.run_id} ran against the local twin: AWS billed nothing for it (its cost line "
            "is what the same plan would cost on the stack)"
        )
    stack = stack or run.stack
    start, end = window(run)
    run_spend, run_estimated = spend(ce, start, end, _tag(RUN_ID_TAG, run.run_id))
    stack_spend: dict[str, float] | None = None
    stack_estimated = False
    if stack:
        both = {"And": [_tag("stack", stack), _tag("project", PLATFORM_PROJECT)]}
        stack_spend, stack_estimated = spend(ce, start, end, both)
    if not _total(run_spend) and not _total(stack_spend or {}):
        _require_active(ce, [RUN_ID_TAG] + (["stack", "project"] if stack else []))
    services = sorted(
        set(DEFAULT_SERVICES)
        | set(run_spend)
        | set(stack_spend or {})
        | set(run.estimate_by_service)
    )
    untagged_filter = {
        "And": [
            {"Tags": {"Key": "project", "MatchOptions": ["ABSENT"]}},
            {"Dimensions": {"Key": "SERVICE", "Values": services}},
        ]
    }
    untagged, untagged_estimated = spend(ce, start, end, untagged_filter)
    status, text, ask_again = status_of(
        run, run_estimated or stack_estimated or untagged_estimated, now
    )
    notes = []
    if run.target_kind == "url" and not stack:
        notes.append(
            "a --url run makes no tagged resources of its own: pass --stack NAME to include the "
            "spend of the platform stack it loaded"
        )
    billed = _total(run_spend) + _total(stack_spend or {})
    return {
        "run_id": run.run_id,
        "queried_at": now.astimezone(UTC).isoformat(timespec="seconds"),
        "window": {"start": start.isoformat(), "end_exclusive": end.isoformat()},
        "status": status,
        "status_text": text,
        "ask_again_after": ask_again.astimezone(UTC).isoformat(timespec="minutes")
        if ask_again
        else None,
        "metric": METRIC,
        "currency": "USD",
        "run_tag": {"filter": f"{RUN_ID_TAG}={run.run_id}", "by_service": run_spend},
        "stack_tags": None
        if stack_spend is None
        else {"filter": f"stack={stack}, project={PLATFORM_PROJECT}", "by_service": stack_spend},
        "untagged": {"filter": "no 'project' tag, same services", "by_service": untagged},
        "estimate": {
            "usd": run.estimated_usd,
            "basis": run.estimate_basis,
            "prices": run.prices,
            "by_service": run.estimate_by_service,
            "parts": [_part_json(p) for p in run.estimate_parts],
            "unattributed_usd": sum(p.usd for p in run.estimate_parts if p.service is None),
        },
        "billed_usd": billed,
        "untagged_usd": _total(untagged),
        "reconciliation": reconciliation(run.estimate_parts, run_spend, stack_spend),
        "notes": notes,
    }
