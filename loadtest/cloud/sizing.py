"""How many load-generator nodes and Locust worker processes a plan's peak needs.

One Locust worker is one single-threaded process (gevent), so it gets exactly one vCPU: a worker
pod requests and is limited to ``WORKER_CPU`` and the scheduler packs one per free vCPU. Each
process carries at most ``users_per_worker`` streams (default 128: ``make bench`` measured that
a Python client past ~128 streams on one core inflates TTFT while ITL still looks right; the
README says "give each worker at most ~128 streams").

Per node, one vCPU stays free: EKS reserves CPU for the kubelet and the OS (about 90 millicores
on 8 vCPUs) and the DaemonSets every node runs (VPC CNI, kube-proxy, EKS Pod Identity agent, EBS
CSI node, Prometheus node exporter) request a few hundred more, so ``vcpu`` whole cores never fit
``vcpu`` one-core pods. The master takes one more such slot on one of the nodes. With every slot
paid for anyway, the default runs a worker in each one: fewer streams per process, less CPU each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from domain import catalog
from domain.catalog import CapacityType, InstanceSpec
from domain.prices import current as current_prices
from domain.run_cost import LoadGenInfo
from loadtest.run_options import CLOUD_USERS_PER_WORKER, MAX_WORKERS

DEFAULT_INSTANCE_TYPE = "c7i.2xlarge"
"""Compute-optimised (a Locust worker is CPU-bound: SSE parsing and timestamps per chunk),
current-generation Intel with deep spot pools in us-east-1 (SkyPilot catalog: $0.13-0.17/h spot
against $0.357/h on demand), 2 GiB per vCPU (a worker needs about 1), and 8 vCPUs: 7 slots per
node, so the vCPU held back costs 1/8 of a node, while a 4xlarge would round small runs up to
twice the price."""
SYSTEM_RESERVED_VCPU = 1
WORKER_CPU = 1
WORKER_MEMORY_MIB = 1536
"""A worker holds gevent greenlets, open streams and half a second of records: a few hundred MiB
measured locally; 1.5 GiB leaves room for long prompts and a burst of slow flushes."""
MASTER_CPU = 1
MASTER_MEMORY_MIB = 2048
"""The master keeps the collector's windows and writes the run files; records are streamed to
disk, not held, so 2 GiB suffices at every size this stack allows."""
NODE_MEMORY_USABLE = 0.8
"""Share of an instance's memory pods may request: kube-reserved, eviction threshold, DaemonSets."""
MAX_NODES = 50
"""Ceiling on load-generator nodes: a run past it is almost certainly a typo in --max-users."""
EXISTING_MAX_WORKERS = 2
"""``existing`` shares the system nodes with Prometheus, KEDA, CoreDNS and the autoscaler; two
one-core workers and the master are what one such node reliably has spare."""

Nodes = Literal["new", "existing"]


class SizingError(ValueError):
    """The plan cannot be carried by the requested load generators; the message says what to do."""


@dataclass(frozen=True)
class Sizing:
    """Node count and worker processes for one run, and what they cost per hour."""

    nodes: int
    """Load-generator nodes to create (0: ``existing``, the system nodes carry the pods)."""
    workers: int
    """Locust worker processes (one pod each)."""
    peak_users: int
    users_per_worker_cap: int
    instance: InstanceSpec | None
    capacity_type: CapacityType

    @property
    def users_per_worker(self) -> int:
        """Streams the busiest worker carries at the peak (Locust spreads users evenly)."""
        return math.ceil(self.peak_users / self.workers)

    @property
    def hourly_usd(self) -> float:
        """The nodes' price per hour (spot at its worst observed price); 0 on existing nodes.

        Priced from the table in use (``domain.prices``), like every other cost figure.
        """
        if self.instance is None:
            return 0.0
        node = current_prices().node_hour_usd(self.instance.instance_type, self.capacity_type)
        return self.nodes * node

    def info(self) -> LoadGenInfo:
        """What ``config.json`` records of the nodes (``RunConfig.loadgen``): they price the run."""
        return LoadGenInfo(
            nodes=self.nodes,
            instance_type=self.instance.instance_type if self.instance else None,
            capacity_type=self.capacity_type,
            workers=self.workers,
        )


def loadgen_instance(instance_type: str) -> InstanceSpec:
    """A catalog instance type fit for load generation: no GPU, at least two vCPUs.

    Raises ``SizingError`` (``CatalogError`` for an unknown type) with the fix in the message.
    """
    spec = catalog.instance(instance_type)
    if spec.gpu_count:
        raise SizingError(
            f"{instance_type} is a GPU instance; load generators never run on GPU nodes. "
            f"Use a CPU type such as {DEFAULT_INSTANCE_TYPE}"
        )
    if spec.vcpu <= SYSTEM_RESERVED_VCPU:
        raise SizingError(
            f"{instance_type} has {spec.vcpu} vCPU, all of which the node itself needs; "
            f"use at least 2 vCPUs, e.g. {DEFAULT_INSTANCE_TYPE}"
        )
    slots = spec.vcpu - SYSTEM_RESERVED_VCPU
    if slots * WORKER_MEMORY_MIB / 1024 > spec.memory_gib * NODE_MEMORY_USABLE:
        raise SizingError(
            f"{instance_type} has {spec.memory_gib:g} GiB for {slots} workers of "
            f"{WORKER_MEMORY_MIB} MiB; use a type with 2 GiB per vCPU, e.g. {DEFAULT_INSTANCE_TYPE}"
        )
    return spec


def size(
    peak_users: int,
    *,
    nodes: Nodes = "new",
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    capacity_type: CapacityType = "spot",
    workers: int | None = None,
    users_per_worker: int = CLOUD_USERS_PER_WORKER,
) -> Sizing:
    """Nodes and workers for a plan peaking at ``peak_users`` concurrent users.

    ``workers`` fixes the worker count (it must still carry the peak at ``users_per_worker``
    each); otherwise every slot of the nodes the peak needs runs a worker.
    """
    if peak_users < 1:
        raise SizingError(f"the plan peaks at {peak_users} users; it needs at least 1")
    needed = math.ceil(peak_users / users_per_worker)
    if workers is not None and workers < needed:
        raise SizingError(
            f"{workers} worker processes carry at most {workers * users_per_worker} users at "
            f"{users_per_worker} each, and the plan peaks at {peak_users}; use at least "
            f"{needed} workers (or leave the count to the plan)"
        )
    if nodes == "existing":
        count = workers if workers is not None else needed
        if count > EXISTING_MAX_WORKERS:
            asked = (
                f"--workers {count}"
                if workers is not None
                else f"the plan needs {count} worker processes ({peak_users} users at up to "
                f"{users_per_worker} each)"
            )
            raise SizingError(
                f"{asked} and the system nodes carry at most {EXISTING_MAX_WORKERS}; use new "
                "load-generator nodes (--loadgen-nodes new)"
            )
        return Sizing(0, count, peak_users, users_per_worker, None, capacity_type)

    instance = loadgen_instance(instance_type)
    slots = instance.vcpu - SYSTEM_RESERVED_VCPU
    count = workers if workers is not None else needed
    node_count = math.ceil((count + 1) / slots)  # + 1: the master's slot
    if node_count > MAX_NODES:
        raise SizingError(
            f"{peak_users} users need {node_count} {instance_type} nodes, more than the "
            f"{MAX_NODES} a load-test stack may start; lower the plan's peak or use a larger "
            "instance type"
        )
    if workers is None:  # every slot, up to the most workers a run may have
        count = min(node_count * slots - 1, MAX_WORKERS)
    return Sizing(node_count, count, peak_users, users_per_worker, instance, capacity_type)


README_PEAKS = (100, 400, 1000, 2000, 5000)


def readme_table(peaks: tuple[int, ...] = README_PEAKS) -> str:
    """The README's table of load-generator sizes and prices (``python -m loadtest.cloud.sizing``).

    Default options: new ``DEFAULT_INSTANCE_TYPE`` nodes, spot priced at its worst observed
    price, on demand beside it.
    """
    lines = [
        "| Peak users | Nodes | Worker processes | Streams per worker | Spot $/h | On-demand $/h |",
        "|---|---|---|---|---|---|",
    ]
    for peak in peaks:
        spot = size(peak)
        on_demand = size(peak, capacity_type="on-demand")
        lines.append(
            f"| {peak:,} | {spot.nodes} x {DEFAULT_INSTANCE_TYPE} | {spot.workers} | "
            f"{spot.users_per_worker} | ${spot.hourly_usd:.2f} | ${on_demand.hourly_usd:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_table())
