"""Dated price tables: what an instance-hour, a control-plane hour or a NAT hour costs, and when.

Every cost this project states (the stack budget check, the README's cost table, ``qwen-stress
cost estimate``, a run's cost) is priced from one ``PriceTable``, and says which table and of
what date, because prices move. The bundled table (``domain/data``, us-east-1) is the default
and works offline; ``qwen-stress prices refresh --region R`` writes a newer one from the AWS
Pricing API and EC2 spot history, which ``current(R)`` then picks up:

1. the file named by ``$QWEN_STRESS_PRICES``, if set (a pinned table, e.g. in CI);
2. else ``prices-<region>.json`` in ``$QWEN_STRESS_PRICES_DIR``, or ``~/.cache/qwen-stress``
   (``$XDG_CACHE_HOME`` respected) when that variable is unset;
3. else the bundled table.
"""

from __future__ import annotations

import os
import re
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain import catalog
from domain.catalog import CapacityType

PRICES_ENV = "QWEN_STRESS_PRICES"
"""A price-table file to use whatever the region (pins the prices, e.g. in CI)."""
PRICES_DIR_ENV = "QWEN_STRESS_PRICES_DIR"
"""Where ``prices refresh`` writes and ``current`` looks for ``prices-<region>.json``."""
BUNDLED_REGION = "us-east-1"
BUNDLED_AS_OF = date(2026, 11, 28)
"""The day the bundled prices were copied into this project (``domain/data``)."""
HOURS_PER_MONTH = 730
"""AWS bills GB-month rates over 730 hours (its own calculator's convention)."""
SpotBasis = Literal["max", "mean"]


class PriceTableError(ValueError):
    """A price table is unreadable or lacks a price; the message names the file and the fix."""


class InstancePrice(BaseModel):
    """What one instance type costs per hour: on-demand, and spot when there is a history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_demand_usd_per_h: float = Field(gt=0)
    spot_mean_usd_per_h: float | None = Field(default=None, gt=0)
    """Time-weighted mean of the recent spot price over the region's zones (None: not known)."""
    spot_max_usd_per_h: float | None = Field(default=None, gt=0)
    """Highest recent spot price in any zone (None: no spot history)."""

    def hourly_usd(self, capacity: CapacityType, spot: SpotBasis = "max") -> float:
        """USD per instance-hour of this capacity type.

        Spot defaults to the worst recent price, so a budget holds on a bad day; ``spot="mean"``
        is the typical price, for what a run most likely cost. A type without spot history is
        priced on-demand, and a missing mean falls back to the maximum.
        """
        if capacity == "spot":
            chosen = self.spot_mean_usd_per_h if spot == "mean" else None
            worst = self.spot_max_usd_per_h
            if chosen is not None:
                return chosen
            if worst is not None:
                return worst
        return self.on_demand_usd_per_h


class PriceTable(BaseModel):
    """One region's prices as of one date, with where they came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    region: str
    as_of: date
    source: str
    instances: dict[str, InstancePrice]
    eks_control_plane_usd_per_h: float = Field(gt=0)
    nat_gateway_usd_per_h: float = Field(gt=0)
    gp3_usd_per_gb_month: float = Field(gt=0)
    path: str | None = Field(default=None, exclude=True)
    """The file it was read from; None for the bundled table."""

    def instance(self, instance_type: str) -> InstancePrice:
        """The prices of one instance type, or an error naming the table and the fix."""
        try:
            return self.instances[instance_type]
        except KeyError:
            raise PriceTableError(
                f"{instance_type} has no price in the {self.label()}; run `qwen-stress prices "
                f"refresh --region {self.region}` if AWS sells it there, or pick another type"
            ) from None

    def node_hour_usd(
        self, instance_type: str, capacity: CapacityType, spot: SpotBasis = "max"
    ) -> float:
        """USD per hour of one node of this type and capacity type (see ``InstancePrice``)."""
        return self.instance(instance_type).hourly_usd(capacity, spot)

    def volume_hour_usd(self, gib: float) -> float:
        """USD per hour of a gp3 volume of this size (storage only: baseline IOPS are free)."""
        return gib * self.gp3_usd_per_gb_month / HOURS_PER_MONTH

    def label(self) -> str:
        """``us-east-1 prices of 2026-11-28 (bundled)``: what every cost figure cites."""
        where = "bundled" if self.path is None else self.path
        return f"{self.region} prices of {self.as_of.isoformat()} ({where})"

    def describe(self) -> dict[str, str | None]:
        """The table's identity for JSON outputs (``summary.json``, ``--json``)."""
        return {
            "region": self.region,
            "as_of": self.as_of.isoformat(),
            "source": self.source,
            "path": self.path,
        }

    def write(self, path: Path) -> None:
        """Write the table as JSON, atomically (a half-written table must never be read)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


@cache
def bundled() -> PriceTable:
    """The table shipped in ``domain/data``: us-east-1, from the catalog's CSV files.

    Its spot columns are the range the source observed, so the high end is the maximum and no
    mean is known.
    """
    other = catalog.other_prices()
    return PriceTable(
        region=BUNDLED_REGION,
        as_of=BUNDLED_AS_OF,
        source="bundled: SkyPilot AWS catalog (instances), AWS pricing pages (EKS, NAT, gp3); "
        "spot at the worst price observed",
        instances={
            i.instance_type: InstancePrice(
                on_demand_usd_per_h=i.on_demand_usd_per_h,
                spot_max_usd_per_h=i.spot_usd_per_h_high,
            )
            for i in catalog.instances().values()
        },
        eks_control_plane_usd_per_h=other["eks_control_plane_standard"],
        nat_gateway_usd_per_h=other["nat_gateway_hour"],
        gp3_usd_per_gb_month=other["gp3_gb_month"],
    )


def prices_dir() -> Path:
    """Where refreshed tables live: ``$QWEN_STRESS_PRICES_DIR``, else the user's cache."""
    explicit = os.environ.get(PRICES_DIR_ENV)
    if explicit:
        return Path(explicit)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "qwen-stress"


REGION = re.compile(r"[a-z]{2}(-[a-z]+){1,2}-[0-9]{1,2}")
"""An AWS region's name (``us-east-1``, ``us-gov-west-1``): it becomes part of a file name."""


def region_problem(region: str) -> str | None:
    """Why ``region`` cannot be an AWS region's name (None: it can)."""
    if REGION.fullmatch(region):
        return None
    return f"{region!r} is not an AWS region name; write one like us-east-1 or eu-west-2"


def table_path(region: str) -> Path:
    """The file ``prices refresh --region R`` writes and ``current(R)`` reads."""
    problem = region_problem(region)
    if problem is not None:  # the name is part of a path: never one outside the directory
        raise ValueError(problem)
    return prices_dir() / f"prices-{region}.json"


def load(path: Path) -> PriceTable:
    """Read a table file, naming it and the fix when it is missing or broken."""
    try:
        stat = path.stat()
    except OSError as err:
        raise PriceTableError(
            f"price table {path}: {err.strerror}; run `qwen-stress prices refresh` or unset "
            f"${PRICES_ENV}"
        ) from None
    return _load(str(path), stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int) -> PriceTable:
    """Parse once per file version: a refresh (a new mtime) is seen by the next call."""
    try:
        table = PriceTable.model_validate_json(Path(path).read_bytes())
    except (OSError, ValidationError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PriceTableError(
            f"price table {path} is not one `qwen-stress prices refresh` wrote ({first}); "
            "refresh it or delete it"
        ) from None
    return table.model_copy(update={"path": path})


def current(region: str = BUNDLED_REGION) -> PriceTable:
    """The table in use for a region: pinned file, else a refreshed one, else the bundled."""
    pinned = os.environ.get(PRICES_ENV)
    if pinned:
        return load(Path(pinned))
    if region_problem(region) is None:  # no name of a region, so no refreshed table of one
        path = table_path(region)
        if path.exists():
            return load(path)
    return bundled()
