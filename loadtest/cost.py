"""What a run cost, from its files: which resources were billed, for how long, at which price.

The model and the arithmetic are ``domain.run_cost``; this module reads a run's files to decide
what to price, from the price table of the target's region (``domain.prices.current``):

- the local twin (``fleet``): its GPU nodes from launch to removal (the fleet models them) at the
  stack's capacity type, for the unscaled plan (a rehearsal at time scale 0.1 stands for a plan
  ten times longer), as the cloud would bill the same plan;
- a run on a platform stack (a ``cluster`` target: its fleet read from Prometheus): the GPU
  nodes from Prometheus over the load, the EKS control plane and NAT gateways for the run's
  wall time and, for a cloud run (``config.json``'s ``loadgen``), the load-test stack's own
  nodes from its creation to the end of its destroy (``events.jsonl``), which is also the wall
  time then;
- an endpoint (``--url``): from ``--hourly-usd`` (per replica when the target reports its
  replicas, else for the whole endpoint), else from its GPU when the target names one,
  else no estimate, said plainly (never a $0 that looks like a figure).

A run against a real endpoint is priced as it ran, whatever its time scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from domain import catalog, hourly_cost
from domain.prices import BUNDLED_REGION, PriceTable, PriceTableError
from domain.prices import current as current_prices
from domain.run_cost import (
    NOT_INCLUDED,
    CostPart,
    Usage,
    control_plane_part,
    endpoint_part,
    gpu_part,
    loadgen_part,
    nat_part,
    node_rate,
    priced,
)
from loadtest.schema import (
    Cost,
    FleetTargetInfo,
    OtherTarget,
    RunConfig,
    RunEvent,
    StackDestroyed,
    StackDestroyFailed,
    StackUp,
    Stats,
    TargetInfo,
    TimelineSample,
)

Window = tuple[float, float]
"""The load's first step start and last step end, in seconds since the run started."""


@dataclass(frozen=True)
class Span:
    """Hours of some stretch of the run, and which stretch, in words."""

    hours: float
    words: str


def instance_for(gpu: str, instance_type: str | None) -> str:
    """The instance type a GPU is priced by: the target's, else the cheapest carrying it."""
    if instance_type:
        catalog.instance(instance_type)
        return instance_type
    wanted = catalog.gpu(gpu)
    options = [i for i in catalog.gpu_instances() if i.gpu == wanted]
    if not options:
        raise catalog.CatalogError(f"no instance type in the catalog carries a {gpu} GPU")
    return min(options, key=lambda i: i.on_demand_usd_per_h / i.gpu_count).instance_type


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


def _reports_replicas(timeline: list[TimelineSample]) -> bool:
    return any(s.replicas is not None for s in timeline)


def load_span(window: Window, scale: float) -> Span:
    """The load steps' wall time (of the unscaled plan, for a time-scaled rehearsal)."""
    hours = max(window[1] - window[0], 0.0) / 3600.0 / scale
    return Span(hours, f"over the load ({hours * 60:.1f} min)")


def stack_span(events: list[RunEvent], config: RunConfig, window: Window) -> Span:
    """The load-test stack's life: from its creation to the end of its destroy.

    EC2 bills the nodes from their launch inside ``pulumi up`` to their termination inside the
    destroy, so the stack's lifetime (``stack_destroyed``: from the stack's creation) bounds
    them from above by the seconds before the node group's create call. Without the destroy in
    ``events.jsonl`` (a run killed before it, or the summary made before it) the span ends with
    the load and is a lower bound, and says so.
    """
    ends = [e for e in events if isinstance(e, StackDestroyed | StackDestroyFailed)]
    if ends:
        last = ends[-1]
        hours = max(last.lifetime_s, 0.0) / 3600.0
        if isinstance(last, StackDestroyed):
            return Span(
                hours,
                f"from the load-test stack's creation to the end of its destroy ({hours:.2f} h)",
            )
        return Span(
            hours,
            f"from the load-test stack's creation to its failed destroy ({hours:.2f} h; it may "
            "still exist: at least this)",
        )
    up = next((e for e in events if isinstance(e, StackUp) and e.at is not None), None)
    load_end = config.started_at + window[1]
    if up is not None and up.at is not None:
        hours = max(load_end - (up.at - up.up_s), 0.0) / 3600.0
        return Span(
            hours,
            f"from the load-test stack's creation to the end of the load ({hours:.2f} h; its "
            "destroy is not in events.jsonl: at least this)",
        )
    span = load_span(window, 1.0)
    return Span(span.hours, f"{span.words}; events.jsonl has no load-test stack: at least this")


def _gpu_hours(
    target: TargetInfo,
    timeline: list[TimelineSample],
    window: Window,
    scale: float,
    node_gpu_hours: float | None,
) -> tuple[float, str]:
    """GPU-hours and how they were counted: node lifetimes, else replicas, else a fixed fleet."""
    if node_gpu_hours is not None and node_gpu_hours >= 0:
        # (a counter that went down, a Prometheus restarted mid-run, falls back to the replicas)
        if isinstance(target, FleetTargetInfo):
            return node_gpu_hours, "GPU nodes from launch to removal, booting and idle included"
        return node_gpu_hours, (
            "GPU nodes from their registration to their removal over the load, booting and "
            "idle included (the cluster's Prometheus)"
        )
    gpus = target.gpus_per_replica or 1
    hours = gpu_seconds(timeline, target.replicas or 1, gpus, *window) / 3600.0 / scale
    if _reports_replicas(timeline):
        return hours, "GPU time of the replicas the target reported over the load"
    return hours, f"GPU time of {target.replicas or 1} replica(s) over the load"


def _no_estimate(
    target: TargetInfo, time_scale: float, usage: Usage, gpu_hours: float | None, why: str
) -> Cost:
    return Cost(
        gpu=target.gpu,
        gpu_hours=gpu_hours,
        time_scale=time_scale,
        basis=f"no estimate: {why}",
        method="none",
        capacity_type=target.capacity_type,
        output_tokens=usage.output_tokens,
        good_requests=usage.good_requests,
    )


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _region_note(table: PriceTable, region: str) -> str:
    notes = hourly_cost.region_note(table, region)
    return f"; {notes[0]}" if notes else ""


@dataclass(frozen=True)
class RunFiles:
    """What the cost reads of a run: its config, events, timeline, load window and usage."""

    config: RunConfig
    events: list[RunEvent]
    timeline: list[TimelineSample]
    window: Window
    overall: Stats
    node_gpu_hours: float | None = None
    """GPU-hours of the nodes a fleet reported (``Autoscaling.gpu_hours``), when it did."""


def estimate(run: RunFiles) -> Cost:
    """The ``cost`` object of ``summary.json``; ``usd`` is None when nothing could be priced."""
    config, target = run.config, run.config.target
    twin = isinstance(target, FleetTargetInfo)
    # A rehearsal (``run --rehearse``) reads the twin through its Prometheus: a cluster target
    # whose GPU-hours are the twin's, of the unscaled plan; the rest follows that plan too.
    rehearsal = bool(config.options and config.options.rehearse)
    scale = config.time_scale if twin or rehearsal else 1.0
    usage = Usage(run.overall.output_tokens, run.overall.good_requests).scaled(scale)
    region = target.platform.region if target.platform else BUNDLED_REGION
    hourly = config.options.hourly_usd if config.options else None

    def unknown(why: str) -> Cost:
        return _no_estimate(target, scale, usage, run.node_gpu_hours, why)

    try:
        table = current_prices(region)
        if twin:
            return _twin(run, table, usage) if target.gpu else unknown("the twin names no GPU")
        if hourly is not None:
            return _hourly(run, hourly, table, usage)
        if target.gpu:
            return _on_platform(run, table, usage, target.gpu, rehearsal=rehearsal)
    except (catalog.CatalogError, PriceTableError) as err:
        return unknown(str(err))
    except ValidationError as err:  # a figure of the run's files no cost can be made of
        first = err.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        return unknown(
            f"the run's files give a {where} of {first['input']!r} ({first['msg'].lower()})"
        )
    if isinstance(target, OtherTarget):
        return unknown(f"the target kind {target.kind!r} is not one this version knows")
    return unknown(
        "the endpoint does not say which GPU serves it; pass --hourly-usd with its price per "
        "hour, or --prometheus with --config to read its GPU nodes"
    )


def _twin(run: RunFiles, table: PriceTable, usage: Usage) -> Cost:
    """GPU nodes only, at the stack's capacity type: what the same plan costs on the stack."""
    target = run.config.target
    assert target.gpu is not None
    capacity = target.capacity_type or "on-demand"
    instance = instance_for(target.gpu, target.instance_type)
    hours, counted = _gpu_hours(
        target, run.timeline, run.window, run.config.time_scale, run.node_gpu_hours
    )
    rate = node_rate(table, instance, capacity)
    what = counted if run.node_gpu_hours is not None else "GPU time only"
    part = gpu_part(table, instance, capacity, hours, counted)
    region = target.platform.region if target.platform else BUNDLED_REGION
    return priced(
        [part],
        method="twin",
        basis=f"{rate.basis}; {what} (control plane, NAT and system nodes excluded)"
        + _region_note(table, region),
        prices=table,
        usage=usage,
        time_scale=run.config.time_scale,
        gpu=target.gpu,
        instance_type=instance,
        capacity_type=capacity,
    )


def _hourly(run: RunFiles, usd_per_hour: float, table: PriceTable, usage: Usage) -> Cost:
    """The endpoint's own price: per replica-hour when it reports replicas, else per hour."""
    if _reports_replicas(run.timeline):
        hours = gpu_seconds(run.timeline, 1, 1, *run.window) / 3600.0
        words = "the replicas the target reported over the load"
        part = endpoint_part(usd_per_hour, hours, "replica-hour", words)
        basis = f"--hourly-usd ${usd_per_hour:g} per replica-hour x {words}"
    else:
        span = load_span(run.window, 1.0)
        part = endpoint_part(usd_per_hour, span.hours, "hour", span.words)
        basis = (
            f"--hourly-usd ${usd_per_hour:g}/h x the load's wall time (the target reports no "
            "replica count: the price is taken as the whole endpoint's)"
        )
    target = run.config.target
    return priced(
        [part],
        method="hourly",
        basis=basis,
        prices=table,
        usage=usage,
        gpu=target.gpu,
        instance_type=target.instance_type,
        capacity_type=target.capacity_type,
    )


def _on_platform(
    run: RunFiles, table: PriceTable, usage: Usage, gpu: str, *, rehearsal: bool = False
) -> Cost:
    """GPU nodes, and the platform's share and the load generators when the run names them.

    A rehearsal's load-test stack lived here, for seconds and at another pace: its nodes, the
    control plane and the NAT gateways are priced over the load of the plan it stands for.
    """
    config, target = run.config, run.config.target
    capacity = target.capacity_type or "on-demand"
    instance = instance_for(gpu, target.instance_type)
    # (the twin's Prometheus counts its node-hours in its own time: of the unscaled plan)
    pace = config.time_scale if rehearsal else 1.0
    hours, counted = _gpu_hours(target, run.timeline, run.window, pace, run.node_gpu_hours)
    rate = node_rate(table, instance, capacity)
    parts: list[CostPart] = [gpu_part(table, instance, capacity, hours, counted)]
    said, priced_as = [counted], [f"{instance} {rate.words}"]
    wall, over_wall = load_span(run.window, 1.0), []
    loadgen = config.loadgen
    if rehearsal:
        unscaled = load_span(run.window, pace).hours
        wall = Span(
            unscaled,
            f"over the load of the plan the rehearsal stands for ({unscaled * 60:.1f} min)",
        )
    elif loadgen is not None:
        wall = stack_span(run.events, config, run.window)
    if loadgen is not None:
        part = loadgen_part(table, loadgen, wall.hours, wall.words)
        if part is not None:
            parts.append(part)
            over_wall.append(f"{part.detail} load-generator nodes")
            priced_as.append(f"{loadgen.instance_type} {part.price}")
        else:
            said.append("load generators on the system nodes (not counted)")
    platform = target.platform
    if platform is not None:
        parts.append(control_plane_part(table, platform.control_planes, wall.hours, wall.words))
        over_wall.append("the EKS control plane")
        if platform.nat_gateways:
            parts.append(nat_part(table, platform.nat_gateways, wall.hours, wall.words))
            over_wall.append(f"{parts[-1].detail.split(',')[0]}")
    if over_wall:
        said.append(f"{_and(over_wall)} {wall.words}")
    said += [f"priced {_and(priced_as)}", NOT_INCLUDED]
    region = platform.region if platform else BUNDLED_REGION
    method = "cloud" if loadgen is not None else "platform" if platform else "endpoint"
    return priced(
        parts,
        method=method,
        basis="; ".join(said) + _region_note(table, region),
        prices=table,
        usage=usage,
        gpu=gpu,
        instance_type=instance,
        capacity_type=capacity,
    )
