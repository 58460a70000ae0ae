"""What a run costs in GPU time, priced from the catalog.

GPU-hours come from the GPU nodes a fleet that models them kept (the autoscaling twin),
else from the replicas the target reported over time (the timeline's ``replicas`` field) or,
failing that, from the fixed replica count in ``config.json``. For local rehearsals with a
time scale the cost is that of the unscaled plan: what the same run would cost in the cloud.
"""

from __future__ import annotations

from domain import catalog
from loadtest.schema import Cost, TargetInfo, TimelineSample


def price_per_gpu_hour(gpu: str, instance_type: str | None) -> tuple[float, str]:
    """USD per GPU-hour (on-demand) and the instance type the price comes from.

    A known instance type is used as is; otherwise the cheapest instance carrying that GPU.
    """
    if instance_type:
        spec = catalog.instance(instance_type)
    else:
        wanted = catalog.gpu(gpu)
        options = [i for i in catalog.gpu_instances() if i.gpu == wanted]
        if not options:
            raise catalog.CatalogError(f"no instance type in the catalog carries a {gpu} GPU")
        spec = min(options, key=lambda i: i.on_demand_usd_per_h / i.gpu_count)
    return spec.on_demand_usd_per_h / spec.gpu_count, spec.instance_type


def gpu_seconds(
    timeline: list[TimelineSample],
    replicas: int,
    gpus_per_replica: int,
    start_s: float,
    end_s: float,
) -> float:
    """GPU-seconds over the load window, else a constant fleet.

    The timeline's replica counts hold from sample to sample (the first back to the window's
    start, the last to its end).
    """
    samples = [(s.t, s.replicas) for s in timeline if s.replicas is not None]
    if not samples:
        return replicas * gpus_per_replica * max(end_s - start_s, 0.0)
    edges = [start_s] + [min(max(t, start_s), end_s) for t, _ in samples[1:]] + [end_s]
    used = sum(r * max(b - a, 0.0) for (_, r), a, b in zip(samples, edges, edges[1:], strict=False))
    return used * gpus_per_replica


def estimate(
    target: TargetInfo,
    timeline: list[TimelineSample],
    window: tuple[float, float],
    time_scale: float,
    node_gpu_hours: float | None = None,
) -> Cost:
    """The cost object of ``summary.json``; ``usd`` is None when the target's GPU is unknown.

    ``node_gpu_hours`` (a fleet that models its nodes) replaces the replica-based figure: nodes
    are billed from launch to removal, booting and idle ones included.
    """
    gpu = target.gpu

    def unknown(why: str) -> Cost:
        return Cost(
            gpu=gpu, gpu_hours=node_gpu_hours, time_scale=time_scale, basis=f"no estimate: {why}"
        )

    if not gpu:
        return unknown("the target does not say which GPU serves it")
    try:
        usd, instance_type = price_per_gpu_hour(gpu, target.instance_type)
    except catalog.CatalogError as err:
        return unknown(str(err))
    if node_gpu_hours is not None:
        hours = node_gpu_hours
        basis = (
            "on-demand price; GPU nodes from launch to removal, booting and idle included "
            "(control plane, NAT and system nodes excluded)"
        )
    else:
        gpus = target.gpus_per_replica or 1
        replicas = target.replicas or 1
        hours = gpu_seconds(timeline, replicas, gpus, *window) / 3600.0 / time_scale
        basis = "on-demand price; GPU time only (control plane, NAT and system nodes excluded)"
    return Cost(
        gpu=gpu,
        instance_type=instance_type,
        usd_per_gpu_hour=round(usd, 4),
        gpu_hours=round(hours, 4),
        usd=round(hours * usd, 4),
        time_scale=time_scale,
        basis=basis,
    )
