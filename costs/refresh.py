"""``qwen-stress prices refresh``: a dated price table from the AWS Pricing API and spot history.

On-demand prices come from ``pricing:GetProducts`` (served in us-east-1 for every region):
EC2 Linux, shared tenancy, no pre-installed software, capacity status ``Used``, no license
included (the filters AWS documents for the public on-demand price); the EKS cluster-hour
(usage type ``*AmazonEKS-Hours:perCluster``), the NAT gateway hour (``*NatGateway-Hours``) and
gp3 storage (``volumeApiName`` gp3, per GB-month). Spot prices come from
``ec2:DescribeSpotPriceHistory`` in the region (Linux/UNIX) over the last days: the
time-weighted mean over every zone and the highest price any zone asked. Response shapes were
checked against botocore's service models and examples (pricing 2017-10-15, ec2 2016-11-15).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.prices import InstancePrice, PriceTable

SPOT_DAYS = 7
"""How far back "recent" spot prices reach."""
SPOT_PRODUCT = "Linux/UNIX"
EC2_ON_DEMAND = (
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
    ("licenseModel", "No License required"),
)
HOURLY_UNITS = frozenset({"hrs", "hours"})


class RefreshError(RuntimeError):
    """AWS answered, but not with prices this project can use; the message says which."""


@dataclass(frozen=True)
class Refreshed:
    """The new table, and the catalog's instance types the region does not sell."""

    table: PriceTable
    missing: tuple[str, ...]


def _filters(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in pairs]


def products(pricing: Any, service: str, *pairs: tuple[str, str]) -> Iterator[dict[str, Any]]:
    """Every product (a decoded ``PriceList`` entry) matching the filters, over all pages."""
    pages = pricing.get_paginator("get_products").paginate(
        ServiceCode=service, Filters=_filters(*pairs), FormatVersion="aws_v1"
    )
    for page in pages:
        for text in page.get("PriceList", []):
            yield json.loads(text)


def on_demand_usd(product: dict[str, Any], units: Iterable[str]) -> list[float]:
    """The product's positive on-demand USD rates in one of these units (lower-case)."""
    wanted = {u.lower() for u in units}
    out = []
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
            if usd > 0 and str(dimension.get("unit", "")).lower() in wanted:
                out.append(usd)
    return out


def _usage_type(product: dict[str, Any]) -> str:
    return str(product.get("product", {}).get("attributes", {}).get("usagetype", ""))


def _one_rate(name: str, region: str, rates: list[float]) -> float:
    if not rates:
        raise RefreshError(f"the AWS Pricing API lists no {name} price for {region}")
    # Several products can match (a price change being published): the dearer one holds.
    return max(rates)


def instance_usd(pricing: Any, region: str, instance_type: str) -> float | None:
    """On-demand USD per hour of one instance type, or None where the region does not sell it."""
    rates = [
        rate
        for product in products(
            pricing,
            "AmazonEC2",
            ("instanceType", instance_type),
            ("regionCode", region),
            *EC2_ON_DEMAND,
        )
        for rate in on_demand_usd(product, HOURLY_UNITS)
    ]
    return max(rates) if rates else None


def eks_usd(pricing: Any, region: str) -> float:
    """USD per EKS cluster-hour in standard support."""
    rates = [
        rate
        for product in products(pricing, "AmazonEKS", ("regionCode", region))
        if _usage_type(product).endswith("AmazonEKS-Hours:perCluster")
        for rate in on_demand_usd(product, HOURLY_UNITS)
    ]
    return _one_rate("EKS cluster-hour", region, rates)


def nat_usd(pricing: Any, region: str) -> float:
    """USD per NAT gateway hour (data processed is billed on top)."""
    rates = [
        rate
        for product in products(
            pricing, "AmazonEC2", ("productFamily", "NAT Gateway"), ("regionCode", region)
        )
        if _usage_type(product).endswith("NatGateway-Hours")
        for rate in on_demand_usd(product, HOURLY_UNITS)
    ]
    return _one_rate("NAT gateway hour", region, rates)


def gp3_usd(pricing: Any, region: str) -> float:
    """USD per GB-month of gp3 storage."""
    rates = [
        rate
        for product in products(
            pricing,
            "AmazonEC2",
            ("productFamily", "Storage"),
            ("volumeApiName", "gp3"),
            ("regionCode", region),
        )
        for rate in on_demand_usd(product, {"GB-Mo"})
    ]
    return _one_rate("gp3 GB-month", region, rates)


def spot_stats(
    records: Iterable[dict[str, Any]], start: datetime, end: datetime
) -> dict[str, tuple[float, float]]:
    """``{instance type: (time-weighted mean, max)}`` over ``[start, end]`` and every zone.

    A price holds from its timestamp until the zone's next one; the record before ``start`` is
    the price in force when the window opens.
    """
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
    for r in records:
        series[(r["InstanceType"], r["AvailabilityZone"])].append(
            (r["Timestamp"], float(r["SpotPrice"]))
        )
    weighted: dict[str, float] = defaultdict(float)
    seconds: dict[str, float] = defaultdict(float)
    highest: dict[str, float] = {}
    for (instance_type, _zone), points in series.items():
        points.sort()
        ends = [t for t, _ in points[1:]] + [end]
        for (t, price), until in zip(points, ends, strict=True):
            held = (min(until, end) - max(t, start)).total_seconds()
            if held <= 0:
                continue
            weighted[instance_type] += price * held
            seconds[instance_type] += held
            highest[instance_type] = max(highest.get(instance_type, 0.0), price)
    return {t: (weighted[t] / seconds[t], highest[t]) for t in highest}


def spot_history(
    ec2: Any, instance_types: list[str], start: datetime, end: datetime
) -> Iterator[dict[str, Any]]:
    """Every spot price record of these types in the window, over all pages."""
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=instance_types,
        ProductDescriptions=[SPOT_PRODUCT],
        StartTime=start,
        EndTime=end,
    )
    for page in pages:
        yield from page.get("SpotPriceHistory", [])


def refresh(
    pricing: Any, ec2: Any, region: str, instance_types: list[str], now: datetime
) -> Refreshed:
    """Fetch every price the table holds for ``region`` as of ``now`` (UTC)."""
    on_demand = {t: instance_usd(pricing, region, t) for t in instance_types}
    priced = {t: usd for t, usd in on_demand.items() if usd is not None}
    sold = sorted(priced)
    if not sold:
        raise RefreshError(
            f"the AWS Pricing API lists none of {len(instance_types)} instance types in "
            f"{region!r}: is it a region code like eu-west-1?"
        )
    start = now - timedelta(days=SPOT_DAYS)
    spot = spot_stats(spot_history(ec2, sold, start, now), start, now)
    instances = {
        t: InstancePrice(
            on_demand_usd_per_h=usd,
            spot_mean_usd_per_h=spot[t][0] if t in spot else None,
            spot_max_usd_per_h=spot[t][1] if t in spot else None,
        )
        for t, usd in priced.items()
    }
    table = PriceTable(
        region=region,
        as_of=now.date(),
        source=(
            f"AWS Pricing API (on-demand, EKS, NAT, gp3) and EC2 spot price history "
            f"({SPOT_DAYS} days to {now:%Y-%m-%d %H:%M} UTC, {SPOT_PRODUCT}: time-weighted mean "
            "and max over every zone); spot at the max"
        ),
        instances=instances,
        eks_control_plane_usd_per_h=eks_usd(pricing, region),
        nat_gateway_usd_per_h=nat_usd(pricing, region),
        gp3_usd_per_gb_month=gp3_usd(pricing, region),
    )
    missing = tuple(sorted(set(instance_types) - set(sold)))
    return Refreshed(table, missing)
