"""A stack's cost per hour at minimum and maximum size, line by line, from one price table.

The stack file (``StackConfig.hourly_cost``) and a ``pulumi preview --json`` (``costs.preview``)
describe the same resources two ways; both build their lines with the functions here, so the
budget check, the README's cost table and ``qwen-stress cost estimate`` cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from domain import topology
from domain.catalog import CapacityType
from domain.prices import PriceTable

Kind = Literal[
    "control_plane", "nat_gateways", "system_nodes", "gpu_nodes", "loadgen_nodes", "other_nodes"
]
KINDS: tuple[Kind, ...] = (
    "control_plane", "nat_gateways", "system_nodes", "gpu_nodes", "loadgen_nodes", "other_nodes",
)  # fmt: skip
"""Every kind of billed resource, in the order tables list them."""
LABELS: dict[Kind, str] = {
    "control_plane": "EKS control plane",
    "nat_gateways": "NAT gateways",
    "system_nodes": "System nodes",
    "gpu_nodes": "GPU nodes",
    "loadgen_nodes": "Load-generator nodes",
    "other_nodes": "Other node groups",
}
COMPUTE_SERVICE = "Amazon Elastic Compute Cloud - Compute"
EKS_SERVICE = "Amazon Elastic Container Service for Kubernetes"
EC2_OTHER_SERVICE = "EC2 - Other"
SERVICES: dict[Kind, str] = {
    "control_plane": EKS_SERVICE,
    "nat_gateways": EC2_OTHER_SERVICE,
    "system_nodes": COMPUTE_SERVICE,
    "gpu_nodes": COMPUTE_SERVICE,
    "loadgen_nodes": COMPUTE_SERVICE,
    "other_nodes": COMPUTE_SERVICE,
}
"""The Cost Explorer ``SERVICE`` each kind is billed under (NAT hours count as "EC2 - Other")."""
ROLE_KINDS: dict[str, Kind] = {
    topology.SYSTEM_ROLE: "system_nodes",
    topology.GPU_ROLE: "gpu_nodes",
    topology.LOADGEN_ROLE: "loadgen_nodes",
}
"""Node-group ``qwen-stress.io/role`` label -> the kind its nodes are billed as."""
NOT_INCLUDED = "EBS volumes, NAT and cross-zone data, and CloudWatch logs come on top"


def _usd(value: float) -> float:
    """A dollar figure for JSON: 1.011, not the float sum's 1.0110000000000001."""
    return round(value, 8)


@dataclass(frozen=True)
class Line:
    """``count`` resources of one kind at ``unit_usd`` per hour each, from ``min`` to ``max``."""

    kind: Kind
    detail: str
    min_count: int
    max_count: int
    unit_usd: float

    @property
    def min_usd(self) -> float:
        """USD per hour at minimum size."""
        return self.min_count * self.unit_usd

    @property
    def max_usd(self) -> float:
        """USD per hour at maximum size."""
        return self.max_count * self.unit_usd

    def to_json(self) -> dict[str, Any]:
        """One row of ``--json`` output."""
        return {
            "kind": self.kind,
            "resource": LABELS[self.kind],
            "detail": self.detail,
            "service": SERVICES[self.kind],
            "count": {"min": self.min_count, "max": self.max_count},
            "usd_per_hour_each": self.unit_usd,
            "hourly_usd": {"min": _usd(self.min_usd), "max": _usd(self.max_usd)},
        }


@dataclass(frozen=True)
class HourlyCost:
    """The lines of one stack, the table that priced them, and what could not be priced."""

    lines: tuple[Line, ...]
    prices: PriceTable
    notes: tuple[str, ...] = ()

    @property
    def min_usd(self) -> float:
        """USD per hour at minimum size (``math.fsum``: the same total in any line order)."""
        return math.fsum(line.min_usd for line in self.lines)

    @property
    def max_usd(self) -> float:
        """USD per hour at maximum size."""
        return math.fsum(line.max_usd for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        """``{"hourly_usd": {"min", "max"}, "lines": [...], "prices": {...}, "notes": [...]}``."""
        return {
            "hourly_usd": {"min": _usd(self.min_usd), "max": _usd(self.max_usd)},
            "lines": [line.to_json() for line in self.lines],
            "prices": self.prices.describe(),
            "not_included": NOT_INCLUDED,
            "notes": list(self.notes),
        }


def control_plane(prices: PriceTable, count: int = 1) -> Line:
    """EKS clusters in standard support."""
    return Line(
        "control_plane", "standard support", count, count, prices.eks_control_plane_usd_per_h
    )


def nat_gateways(prices: PriceTable, count: int) -> Line:
    """NAT gateway hours (the data they process is billed on top)."""
    return Line("nat_gateways", "hourly charge", count, count, prices.nat_gateway_usd_per_h)


def node_group(  # noqa: PLR0917 - a node group is described by exactly these
    prices: PriceTable,
    kind: Kind,
    instance_type: str,
    capacity: CapacityType,
    min_nodes: int,
    max_nodes: int,
) -> Line:
    """A node group of one instance type between its minimum and maximum size."""
    return Line(
        kind,
        f"{instance_type} {capacity}",
        min_nodes,
        max_nodes,
        prices.node_hour_usd(instance_type, capacity),
    )


def combine(lines: Iterable[Line], prices: PriceTable, notes: Iterable[str] = ()) -> HourlyCost:
    """Merge lines of the same kind, detail and price (three NATs are one line of three).

    Lines come out in ``KINDS`` order, so two descriptions of one stack compare equal.
    """
    merged: dict[tuple[Kind, str, float], Line] = {}
    for line in lines:
        key = (line.kind, line.detail, line.unit_usd)
        seen = merged.get(key)
        merged[key] = (
            line
            if seen is None
            else Line(
                line.kind,
                line.detail,
                seen.min_count + line.min_count,
                seen.max_count + line.max_count,
                line.unit_usd,
            )
        )
    ordered = sorted(merged.values(), key=lambda x: (KINDS.index(x.kind), x.detail, x.unit_usd))
    return HourlyCost(tuple(ordered), prices, tuple(notes))


def region_note(prices: PriceTable, region: str) -> list[str]:
    """A note when the stack's region is not the table's (no refreshed table for it yet)."""
    if prices.region == region:
        return []
    return [
        f"the stack runs in {region} but no {region} price table exists: priced with the "
        f"{prices.label()}; run `qwen-stress prices refresh --region {region}`"
    ]
