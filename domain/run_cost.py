"""What one load-test run cost: the model of ``summary.json``'s ``cost``, and its arithmetic.

A run's cost is a list of parts, one per kind of billed resource (GPU nodes, load-generator
nodes, the EKS control plane, NAT gateways: the kinds of ``domain.hourly_cost``), each a
quantity of resource-hours at one price from one dated price table. A part names the Cost
Explorer service that bills it, so ``qwen-stress cost actuals`` sets each against its own line
of the bill rather than the whole figure against EC2.

Pure pydantic and arithmetic: ``loadtest`` builds the object from a run's files into
``summary.json``; ``costs`` reads it back without importing ``loadtest``. Readers ignore keys
they do not know and every field added here has a default, so a summary written before parts
existed (``gpu`` ... ``basis`` only) still reads, as one GPU part (``RunCost.priced_parts``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from domain import catalog
from domain.catalog import CapacityType
from domain.hourly_cost import LABELS, SERVICES, Kind
from domain.prices import BUNDLED_REGION, PriceTable
from domain.stack_config import StackConfig

ENDPOINT = "endpoint"
"""The kind of a part priced from ``--hourly-usd``: an endpoint no AWS service is known for."""
_LABELS: dict[str, str] = {ENDPOINT: "Endpoint", **{str(k): v for k, v in LABELS.items()}}
_SERVICES: dict[str, str] = {str(k): v for k, v in SERVICES.items()}
NOT_INCLUDED = "system nodes, EBS volumes, NAT and cross-zone data, and CloudWatch logs excluded"
"""What no run cost counts (the platform's fixed overhead and usage-based charges)."""


class _FileModel(BaseModel):
    """As ``loadtest.schema.FileModel``: finite floats, unknown keys skipped on read."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)


# -- what prices a run (config.json) -----------------------------------------------------------


class PlatformInfo(_FileModel):
    """The platform stack a target runs on (or the twin rehearses): what its share costs."""

    stack: str | None = None
    """The stack's name (``Pulumi.<stack>.yaml``); None when the file name does not say."""
    region: str = BUNDLED_REGION
    """Whose price table prices the run."""
    nat_gateways: int = Field(default=1, ge=0)
    control_planes: int = Field(default=1, ge=0)

    @classmethod
    def of_stack(cls, stack: StackConfig, name: str | None) -> PlatformInfo:
        """The figures a stack file gives."""
        return cls(stack=name, region=stack.region, nat_gateways=stack.network.nat_gateway_count)


class LoadGenInfo(_FileModel):
    """A cloud run's load-generator nodes, as ``loadtest.cloud.sizing.Sizing`` sized them."""

    nodes: int = Field(ge=0)
    """Nodes of the load-test stack's own group; 0: the pods ran on the system nodes."""
    instance_type: str | None = None
    capacity_type: CapacityType = "spot"
    workers: int | None = None


# -- the cost (summary.json) -------------------------------------------------------------------


class PriceSource(_FileModel):
    """Which price table priced a run: its region, date and source (``PriceTable.describe``)."""

    region: str
    as_of: str
    source: str
    path: str | None = None

    @classmethod
    def of(cls, table: PriceTable) -> PriceSource:
        """The identity of a table."""
        return cls(
            region=table.region, as_of=table.as_of.isoformat(), source=table.source, path=table.path
        )

    def label(self) -> str:
        """``us-east-1 prices of 2026-11-28 (bundled)``, as ``PriceTable.label`` says it."""
        return f"{self.region} prices of {self.as_of} ({self.path or 'bundled'})"


class CostPart(_FileModel):
    """``quantity`` units of one kind of resource at ``usd_per_unit`` each."""

    kind: str
    """A ``domain.hourly_cost`` kind (``gpu_nodes``, ``loadgen_nodes``, ``control_plane``,
    ``nat_gateways``) or ``endpoint``; a reader may meet kinds a newer version added."""
    detail: str
    """What was priced, for people: ``g4dn.xlarge spot``, ``2 x c7i.2xlarge spot``."""
    quantity: float = Field(ge=0)
    unit: str
    """``GPU-hour``, ``node-hour``, ``cluster-hour``, ``gateway-hour``, ``replica-hour``..."""
    usd_per_unit: float = Field(ge=0)
    usd: float = Field(ge=0)
    price: str = ""
    """Which price, in words: ``on-demand``, ``spot at its recent mean price``, ``--hourly-usd``."""
    span: str = ""
    """Which time the quantity covers, in words."""
    service: str | None = None
    """The Cost Explorer ``SERVICE`` that bills it; None: no AWS service is known."""

    @property
    def label(self) -> str:
        """``GPU nodes``, ``Load-generator nodes``...: how tables name the part."""
        return _LABELS.get(self.kind, self.kind)


class RunCost(_FileModel):
    """What the run cost; ``usd`` is None when no figure could be reached (``basis`` says why).

    ``usd`` is the sum of ``parts`` (to the millionth of a dollar). For a twin run at a time
    scale it is the cost of the unscaled plan, and ``output_tokens`` and ``good_requests``
    stand for that plan too (the counts divided by the time scale), so the figures per token
    and per request hold at any scale. The first seven fields are the shape summaries had
    before parts existed.
    """

    gpu: str | None = None
    instance_type: str | None = None
    usd_per_gpu_hour: float | None = None
    gpu_hours: float | None = None
    usd: float | None = None
    time_scale: float = 1.0
    basis: str
    """How the figure was reached, in words (or ``no estimate: <why and the fix>``)."""
    method: str | None = None
    """``cloud``, ``twin``, ``endpoint``, ``hourly`` or ``none`` (None: written before methods)."""
    capacity_type: CapacityType | None = None
    """The GPU nodes' capacity type, when the target says."""
    parts: list[CostPart] = Field(default_factory=list)
    prices: PriceSource | None = None
    output_tokens: int | None = None
    good_requests: int | None = None
    """Requests that succeeded within the SLOs' per-request limits (the goodput's count)."""
    usd_per_million_output_tokens: float | None = None
    usd_per_good_request: float | None = None

    def priced_parts(self) -> list[CostPart]:
        """The parts; for a summary written before parts existed, its figure as one GPU part."""
        if self.parts or self.usd is None:
            return list(self.parts)
        return [
            CostPart(
                kind="gpu_nodes",
                detail=" ".join(x for x in (self.instance_type, self.gpu) if x) or "GPU time",
                quantity=self.gpu_hours or 0.0,
                unit="GPU-hour",
                usd_per_unit=self.usd_per_gpu_hour or 0.0,
                usd=self.usd,
                price="on-demand",
                service=SERVICES["gpu_nodes"],
            )
        ]

    def by_service(self) -> dict[str, float]:
        """USD per Cost Explorer service (parts no service bills are left out)."""
        out: dict[str, float] = {}
        for part in self.priced_parts():
            if part.service is not None:
                out[part.service] = out.get(part.service, 0.0) + part.usd
        return out


# -- the arithmetic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """USD per node-hour of one instance type and capacity type, and which price it is."""

    usd_per_hour: float
    words: str
    """``on-demand``, ``spot at its recent mean price``...: which price, for people."""

    @property
    def basis(self) -> str:
        """How a basis sentence starts: ``on-demand price``, ``spot at its recent mean price``."""
        return "on-demand price" if self.words == "on-demand" else self.words


def node_rate(prices: PriceTable, instance_type: str, capacity: CapacityType) -> Rate:
    """A run's node price: spot at its recent mean (what a run most likely paid).

    ``InstancePrice.hourly_usd(capacity, "mean")`` gives the number; the words say which price
    it fell back to when the table lacks the mean (the bundled table has only the worst price)
    or any spot history.
    """
    price = prices.instance(instance_type)
    usd = price.hourly_usd(capacity, "mean")
    if capacity == "on-demand":
        return Rate(usd, "on-demand")
    if price.spot_mean_usd_per_h is not None:
        return Rate(usd, "spot at its recent mean price")
    if price.spot_max_usd_per_h is not None:
        return Rate(usd, "spot at its worst recent price: the table has no mean")
    return Rate(usd, "spot at the on-demand price: the table has no spot history")


def _part(  # noqa: PLR0917 - one part is described by exactly these
    kind: Kind | str,
    detail: str,
    quantity: float,
    unit: str,
    usd_per_unit: float,
    price: str,
    span: str,
) -> CostPart:
    return CostPart(
        kind=kind,
        detail=detail,
        quantity=round(quantity, 6),
        unit=unit,
        usd_per_unit=round(usd_per_unit, 6),
        usd=round(quantity * usd_per_unit, 6),
        price=price,
        span=span,
        service=_SERVICES.get(kind),
    )


def gpu_part(
    prices: PriceTable, instance_type: str, capacity: CapacityType, gpu_hours: float, span: str
) -> CostPart:
    """GPU-hours at the instance's node price divided among its GPUs."""
    rate = node_rate(prices, instance_type, capacity)
    per_gpu = rate.usd_per_hour / catalog.instance(instance_type).gpu_count
    return _part(
        "gpu_nodes",
        instance_type,
        gpu_hours,
        "GPU-hour",
        per_gpu,
        rate.words,
        span,
    )


def loadgen_part(prices: PriceTable, info: LoadGenInfo, hours: float, span: str) -> CostPart | None:
    """The load-test stack's own nodes for ``hours``; None when it had none (system nodes)."""
    if info.nodes == 0 or info.instance_type is None:
        return None
    rate = node_rate(prices, info.instance_type, info.capacity_type)
    return _part(
        "loadgen_nodes",
        f"{info.nodes} x {info.instance_type}",
        info.nodes * hours,
        "node-hour",
        rate.usd_per_hour,
        rate.words,
        span,
    )


def control_plane_part(prices: PriceTable, count: int, hours: float, span: str) -> CostPart:
    """EKS clusters in standard support for ``hours``."""
    return _part(
        "control_plane",
        f"{count} cluster, standard support",
        count * hours,
        "cluster-hour",
        prices.eks_control_plane_usd_per_h,
        "",
        span,
    )


def nat_part(prices: PriceTable, count: int, hours: float, span: str) -> CostPart:
    """NAT gateway hours (the data they process is billed on top, and not counted)."""
    return _part(
        "nat_gateways",
        f"{count} NAT gateway{'s' if count != 1 else ''}, hourly charge",
        count * hours,
        "gateway-hour",
        prices.nat_gateway_usd_per_h,
        "",
        span,
    )


def endpoint_part(usd_per_hour: float, quantity: float, unit: str, span: str) -> CostPart:
    """An endpoint priced by its owner (``--hourly-usd``): no AWS service is known for it."""
    detail = f"${usd_per_hour:g} per {unit}"
    return _part(ENDPOINT, detail, quantity, unit, usd_per_hour, "--hourly-usd", span)


def money(value: float) -> str:
    """``$1.23``, ``$0.50``, ``$0.0123``, ``$0.0000076``: up to three significant figures.

    A run's parts and its cost per request are often fractions of a cent: a fixed number of
    decimals would print them as $0.00, a figure that looks like one and is not.
    """
    if value >= 1 or value <= 0:
        return f"${value:,.2f}"
    digits = max(2, 2 - math.floor(math.log10(value)))
    text = f"{value:.{digits}f}".rstrip("0")
    decimals = len(text.split(".")[1])
    return "$" + (text + "0" * (2 - decimals) if decimals < 2 else text)


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant figures: per-unit costs span ten orders of size."""
    return float(f"{value:.{digits}g}")


def per_unit(usd: float | None, count: int | None) -> float | None:
    """``usd`` over ``count`` things, or None when either is unknown or nothing was counted."""
    if usd is None or not count:
        return None
    return significant(usd / count)


@dataclass(frozen=True)
class Usage:
    """What the run produced, counted over its load steps."""

    output_tokens: int | None
    good_requests: int | None

    def scaled(self, scale: float) -> Usage:
        """The counts of the plan a time-scaled run stands for (divided by the scale)."""
        if scale == 1:
            return self

        def up(count: int | None) -> int | None:
            return None if count is None else round(count / scale)

        return Usage(up(self.output_tokens), up(self.good_requests))


def priced(
    parts: list[CostPart],
    *,
    method: str,
    basis: str,
    prices: PriceTable,
    usage: Usage,
    time_scale: float = 1.0,
    gpu: str | None = None,
    instance_type: str | None = None,
    capacity_type: CapacityType | None = None,
) -> RunCost:
    """The cost object of a priced run: the total, the GPU figures, and the per-unit costs.

    ``usage`` must already stand for the plan the parts price (``Usage.scaled``).
    """
    usd = math.fsum(p.usd for p in parts)
    gpu_parts = [p for p in parts if p.kind == "gpu_nodes" and p.unit == "GPU-hour"]
    gpu_hours = math.fsum(p.quantity for p in gpu_parts) if gpu_parts else None
    return RunCost(
        gpu=gpu,
        instance_type=instance_type,
        usd_per_gpu_hour=round(gpu_parts[0].usd_per_unit, 4) if gpu_parts else None,
        gpu_hours=round(gpu_hours, 4) if gpu_hours is not None else None,
        usd=round(usd, 6),
        time_scale=time_scale,
        basis=basis,
        method=method,
        capacity_type=capacity_type,
        parts=parts,
        prices=PriceSource.of(prices),
        output_tokens=usage.output_tokens,
        good_requests=usage.good_requests,
        usd_per_million_output_tokens=per_unit(usd * 1e6, usage.output_tokens),
        usd_per_good_request=per_unit(usd, usage.good_requests),
    )
