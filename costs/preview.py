"""The hourly cost of what a ``pulumi preview --json`` would leave standing.

``pulumi preview --json`` prints one document (Pulumi's ``PreviewDigest``,
pkg/backend/display/json.go, read at pulumi/pulumi commit 00d498e): ``config``
(the stack's settings, secrets blinded), ``steps`` (one per resource: ``op``, ``urn``,
``newState`` with the resource's ``type`` and ``inputs``), ``diagnostics`` and
``changeSummary``. Inputs not known until the update runs are the string
``04da6b54-80e4-46f7-96ec-b56ff0331ba9`` (``computedValuePlaceholder``,
pkg/resource/stack/deployment.go) and secrets are the string ``[secret]``; either can stand for
any value, a whole object included. A resource whose size or type is hidden that way is listed
as not priced, never guessed. Unchanged resources appear only with ``--show-sames``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain import hourly_cost, topology
from domain.catalog import CapacityType
from domain.hourly_cost import HourlyCost, Kind, Line
from domain.prices import BUNDLED_REGION, PriceTable, PriceTableError
from domain.prices import current as current_prices

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET = "[secret]"
CLUSTER = "aws:eks/cluster:Cluster"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
AWS_PROVIDER = "pulumi:providers:aws"
GONE = frozenset(
    {"delete", "delete-replaced", "discard", "discard-replaced", "remove-pending-replace"}
)
"""Steps after which the resource no longer exists (``newState`` is absent for most of them)."""
NOT_OURS = frozenset({"read", "read-replacement", "read-discard"})
"""Steps that only read a resource someone else owns and pays for."""
CHANGES = frozenset({"update", "replace", "create-replacement", "delete", "delete-replaced"})


class PreviewError(ValueError):
    """The file is not a ``pulumi preview --json`` document; the message says what to run."""


@dataclass(frozen=True)
class Resource:
    """One resource as the preview would leave it: its type, name and inputs."""

    type: str
    name: str
    inputs: Mapping[str, Any]


def hidden(value: Any) -> bool:
    """Whether a value is unknown at preview time or a secret (so cannot be read)."""
    return isinstance(value, str) and value in (UNKNOWN, SECRET)


def read(path: Path) -> dict[str, Any]:
    """The preview document, or a one-line error that says how to produce one."""
    how = "write it with `pulumi preview --json --show-sames > PREVIEW.json`"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreviewError(f"--preview {path}: no such file; {how}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PreviewError(f"--preview {path} is not JSON ({err}); {how}") from None
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list):
        raise PreviewError(f"--preview {path} has no 'steps' list: not a preview; {how}")
    return document


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "?"


def resources(document: Mapping[str, Any]) -> Iterator[Resource]:
    """Every resource the preview would leave standing, last step per URN winning."""
    standing: dict[str, Resource | None] = {}
    for step in document["steps"]:
        if not isinstance(step, dict):
            continue
        op, state = step.get("op"), step.get("newState")
        urn = str(step.get("urn") or (state or {}).get("urn") or "")
        if op in GONE or op in NOT_OURS or not isinstance(state, dict):
            standing[urn] = None
            continue
        inputs = state.get("inputs")
        standing[urn] = Resource(
            str(state.get("type", "")), _name(urn), inputs if isinstance(inputs, dict) else {}
        )
    yield from (r for r in standing.values() if r is not None)


def region(document: Mapping[str, Any], found: list[Resource]) -> tuple[str, list[str]]:
    """The AWS region: the AWS providers' ``region`` input, else ``aws:region`` in the config."""
    regions = {
        str(r.inputs["region"])
        for r in found
        if r.type == AWS_PROVIDER and isinstance(r.inputs.get("region"), str)
        if not hidden(r.inputs["region"])
    }
    if len(regions) == 1:
        return regions.pop(), []
    config = document.get("config")
    configured = config.get("aws:region") if isinstance(config, dict) else None
    if isinstance(configured, str) and not hidden(configured) and not regions:
        return configured, []
    if regions:
        chosen = sorted(regions)[0]
        listed = ", ".join(sorted(regions))
        return chosen, [f"resources in {listed}: all priced as {chosen}; pass --region to choose"]
    return BUNDLED_REGION, [f"the preview names no AWS region: priced as {BUNDLED_REGION}"]


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value) if float(value).is_integer() else None


def _node_group_kind(group: Resource) -> tuple[Kind, str | None]:
    labels = group.inputs.get("labels")
    if hidden(labels):
        return "other_nodes", f"node group {group.name}: its labels are not known until the update"
    role = labels.get(topology.ROLE_LABEL) if isinstance(labels, dict) else None
    if role is None:
        return "other_nodes", None
    if hidden(role):
        return "other_nodes", f"node group {group.name}: its role label is not known yet"
    return hourly_cost.ROLE_KINDS.get(str(role), "other_nodes"), None


def _capacity(group: Resource) -> tuple[CapacityType, str | None]:
    raw = group.inputs.get("capacityType", "ON_DEMAND")
    if raw == "SPOT":
        return "spot", None
    if raw == "ON_DEMAND":
        return "on-demand", None
    return "on-demand", (
        f"node group {group.name}: capacity type {'not known yet' if hidden(raw) else repr(raw)}"
        ", priced on-demand"
    )


def node_group_line(group: Resource, prices: PriceTable) -> tuple[Line | None, list[str]]:
    """The line of one managed node group, or why it cannot be priced from the preview."""
    kind, kind_note = _node_group_kind(group)
    notes = [kind_note] if kind_note else []
    types = group.inputs.get("instanceTypes")
    scaling = group.inputs.get("scalingConfig")
    if hidden(types) or not isinstance(types, list) or not types or any(map(hidden, types)):
        why = "not known until the update" if types is not None else "set by its launch template"
        return None, [*notes, f"node group {group.name} not priced: instance type {why}"]
    if hidden(scaling) or not isinstance(scaling, dict):
        return None, [*notes, f"node group {group.name} not priced: its size is not known yet"]
    low, high = _count(scaling.get("minSize")), _count(scaling.get("maxSize"))
    if low is None or high is None:
        return None, [*notes, f"node group {group.name} not priced: min/max size not known yet"]
    capacity, capacity_note = _capacity(group)
    notes += [capacity_note] if capacity_note else []
    try:
        lines = [hourly_cost.node_group(prices, kind, str(t), capacity, low, high) for t in types]
    except PriceTableError as err:
        return None, [*notes, f"node group {group.name} not priced: {err}"]
    # A group of several types may launch any of them: priced at the dearest.
    return max(lines, key=lambda line: line.unit_usd), notes


def estimate(document: Mapping[str, Any], region_override: str | None = None) -> HourlyCost:
    """The hourly cost of the resources the preview would leave standing."""
    found = list(resources(document))
    region_name, notes = (region_override, []) if region_override else region(document, found)
    prices = current_prices(region_name)
    notes += hourly_cost.region_note(prices, region_name)
    lines: list[Line] = []
    for r in found:
        if r.type == CLUSTER:
            lines.append(hourly_cost.control_plane(prices))
        elif r.type == NAT_GATEWAY:
            lines.append(hourly_cost.nat_gateways(prices, 1))
        elif r.type == NODE_GROUP:
            line, why = node_group_line(r, prices)
            lines += [line] if line else []
            notes += why
    ops = {step.get("op") for step in document["steps"] if isinstance(step, dict)}
    if ops & CHANGES and "same" not in ops:
        notes.append(
            "this preview changes an existing stack but lists no unchanged resources: run "
            "`pulumi preview --json --show-sames` so the whole stack is priced"
        )
    errors = [
        str(d.get("message", "")).strip().splitlines()[0] if d.get("message") else "(no message)"
        for d in document.get("diagnostics") or []
        if isinstance(d, dict) and d.get("severity") == "error"
    ]
    if errors:
        notes.append(f"the preview failed, so it may list only part of the stack: {errors[0]}")
    return hourly_cost.combine(lines, prices, notes)
