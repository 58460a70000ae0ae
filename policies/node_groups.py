"""EKS managed node groups: the GPU group's type, AMI, taint and price; the load generators'.

A GPU node group is recognised by any one of its GPU traits (a GPU instance type in the catalog,
the GPU role label, the GPU taint, an NVIDIA AMI), so removing one trait still leaves it judged
as the GPU group it is. Prices come from the project's catalog (``domain.catalog``), the same
numbers the stack configuration's budget check uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import pulumi
from pydantic import ValidationError

from domain import catalog, prices, topology, versions
from domain.stack_config import NAMESPACE, BudgetConfig
from policies.resources import Resource, has_taint, items, labels, mapping, number
from policies.rule import ADVISORY, Config, Setting, resource_policy

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SPOT = "SPOT"

DEFAULT_GPU_TYPES = (
    "g4dn.xlarge",
    "g4dn.2xlarge",
    "g4dn.12xlarge",
    "g5.xlarge",
    "g5.2xlarge",
    "g5.12xlarge",
    "g6.xlarge",
    "g6.12xlarge",
    "g6e.xlarge",
    "g6e.12xlarge",
)
"""Every GPU type of the catalog's g families up to 4 GPUs: enough for any Qwen2.5 size this
project serves; the 8-GPU and p-class machines need a config that allows them on purpose."""

DEFAULT_MAX_HOURLY_USD = 25.0


def instance_types(resource: Resource) -> list[str]:
    """The node group's instance types (EKS launches ``t3.medium`` when none is given)."""
    return [str(t) for t in items(resource.get("instanceTypes"))] or ["t3.medium"]


def _known(instance_type: str) -> catalog.InstanceSpec | None:
    return catalog.instances().get(instance_type)


def is_gpu_group(resource: Resource) -> bool:
    """Whether a node group is a GPU group, by any one of its GPU traits."""
    if resource.type != NODE_GROUP:
        return False
    props = resource.props
    gpu_type = any((spec := _known(t)) is not None and spec.gpu for t in instance_types(resource))
    return (
        gpu_type
        or labels(props).get(topology.ROLE_LABEL) == topology.GPU_ROLE
        or any(mapping(t).get("key") == topology.GPU_TAINT_KEY for t in items(props.get("taints")))
        or "NVIDIA" in str(props.get("amiType") or "").upper()
    )


def is_loadgen_group(resource: Resource) -> bool:
    """Whether a node group runs load generators (labelled so, or tainted so)."""
    if resource.type != NODE_GROUP:
        return False
    props = resource.props
    return labels(props).get(topology.ROLE_LABEL) == topology.LOADGEN_ROLE or any(
        mapping(t).get("key") == topology.LOADGEN_TAINT_KEY for t in items(props.get("taints"))
    )


def max_nodes(resource: Resource) -> float | None:
    """``scalingConfig.maxSize``: the most nodes the group (and so its bill) can grow to."""
    return number(resource.get("scalingConfig", "maxSize"))


def _capacity(resource: Resource) -> catalog.CapacityType:
    return "spot" if str(resource.get("capacityType") or "").upper() == SPOT else "on-demand"


# ------------------------------------------------------------------------------------------------
# gpu-instance-type


ALLOWED_TYPES = Setting(
    "allowedInstanceTypes",
    {"type": "array", "items": {"type": "string"}, "default": list(DEFAULT_GPU_TYPES)},
    "GPU instance types a GPU node group may use.",
)


def _instance_type(resource: Resource, config: Config) -> Iterator[str]:
    if not is_gpu_group(resource):
        return
    allowed = [str(t) for t in config[ALLOWED_TYPES.key]]
    for instance_type in instance_types(resource):
        if instance_type not in allowed:
            yield (
                f"{resource.name}: GPU instance type {instance_type} is not allowed here; use one "
                f"of {', '.join(allowed)}, or allow it in the policy config "
                f"(gpu-instance-type.{ALLOWED_TYPES.key})"
            )


GPU_INSTANCE_TYPE = resource_policy(
    "gpu-instance-type",
    "GPU node groups use an instance type from the allow-list.",
    _instance_type,
    settings=(ALLOWED_TYPES,),
)

# ------------------------------------------------------------------------------------------------
# gpu-nvidia-ami


def _ami(resource: Resource, _config: Config) -> Iterator[str]:
    if not is_gpu_group(resource):
        return
    ami = str(resource.get("amiType") or "")
    if "NVIDIA" not in ami.upper():
        yield (
            f"{resource.name}: amiType {ami or '(unset)'} has no NVIDIA driver, so the GPU never "
            f"shows up in Kubernetes; use {versions.GPU_AMI_TYPE}"
        )


GPU_NVIDIA_AMI = resource_policy(
    "gpu-nvidia-ami",
    "GPU node groups boot an EKS AMI type with the NVIDIA driver.",
    _ami,
)

# ------------------------------------------------------------------------------------------------
# gpu-taint


def _gpu_taint(resource: Resource, _config: Config) -> Iterator[str]:
    if not is_gpu_group(resource):
        return
    taint = (topology.GPU_TAINT_KEY, topology.GPU_TAINT_VALUE, topology.GPU_TAINT_EFFECT)
    if not has_taint(resource.props, *taint):
        yield (
            f"{resource.name}: GPU nodes lack the taint {taint[0]}={taint[1]}:{taint[2]}, so any "
            "pod can land on a GPU node and keep it (and its bill) alive; add it to taints"
        )


GPU_TAINT = resource_policy(
    "gpu-taint",
    "GPU node groups carry the GPU taint, so only GPU workloads are scheduled on them.",
    _gpu_taint,
)

# ------------------------------------------------------------------------------------------------
# gpu-budget


MAX_HOURLY_USD = Setting(
    "maxHourlyUsd",
    {"type": "number", "exclusiveMinimum": 0, "default": DEFAULT_MAX_HOURLY_USD},
    "Ceiling in USD per hour for a GPU node group at its maximum size; the stack's own "
    "qwen-stress:budget.maxHourlyUsd applies when it is lower.",
)


def stack_budget() -> float | None:
    """The stack's own ``qwen-stress:budget.maxHourlyUsd`` (the engine passes stack config)."""
    raw: Any = pulumi.runtime.get_config(f"{NAMESPACE}:budget")
    try:
        return BudgetConfig.model_validate(mapping(raw)).max_hourly_usd
    except ValidationError:
        return None  # the program's own config check names a malformed budget


def stack_region() -> str:
    """The stack's ``aws:region`` (the engine passes stack config), for its price table."""
    region: Any = pulumi.runtime.get_config("aws:region")
    return region if isinstance(region, str) and region else prices.BUNDLED_REGION


def budget(config: Config) -> tuple[float, str]:
    """The budget in force and where it comes from (the lower of stack and policy config)."""
    ceiling = float(config[MAX_HOURLY_USD.key])
    own = stack_budget()
    if own is not None and own <= ceiling:
        return own, f"the stack's {NAMESPACE}:budget.maxHourlyUsd"
    return ceiling, f"the policy config's gpu-budget.{MAX_HOURLY_USD.key}"


def _budget(resource: Resource, config: Config) -> Iterator[str]:
    if not is_gpu_group(resource):
        return
    nodes = max_nodes(resource)
    if nodes is None:
        yield f"{resource.name}: set scalingConfig.maxSize so the GPU group's cost has a ceiling"
        return
    capacity = _capacity(resource)
    table = prices.current(stack_region())
    hourly: dict[str, float] = {}
    for instance_type in instance_types(resource):
        try:
            hourly[instance_type] = table.node_hour_usd(instance_type, capacity)
        except prices.PriceTableError as err:
            yield f"{resource.name}: no price for {instance_type}, so no cost check: {err}"
            return
    dearest = max(hourly, key=lambda t: hourly[t])
    cost = nodes * hourly[dearest]
    limit, source = budget(config)
    if cost > limit:
        fitting = math.floor(limit / hourly[dearest])
        smaller = f"lower maxSize to {fitting}, " if fitting >= 1 else ""
        yield (
            f"{resource.name}: at maxSize {nodes:g} x {dearest} ({capacity}, "
            f"${hourly[dearest]:.3f}/h) the GPU nodes cost ${cost:.2f}/h, above ${limit:.2f}/h "
            f"({source}); {smaller}use a cheaper type or SPOT capacity, or raise the budget"
        )


GPU_BUDGET = resource_policy(
    "gpu-budget",
    "A GPU node group at its maximum size (maxSize x hourly price) stays within the budget.",
    _budget,
    settings=(MAX_HOURLY_USD,),
)

# ------------------------------------------------------------------------------------------------
# node-group-launch-template


def _launch_template(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != NODE_GROUP:
        return
    template: Mapping[str, Any] = mapping(resource.get("launchTemplate"))
    if not (template.get("id") or template.get("name")):
        yield (
            f"{resource.name}: the node group has no launchTemplate, so its instances and "
            "volumes launch without the cost tags (default tags stop at the node group); give "
            "it a launch template whose tagSpecifications carry them"
        )


NODE_GROUP_LAUNCH_TEMPLATE = resource_policy(
    "node-group-launch-template",
    "Node groups launch through a launch template, the only way the cost tags reach the "
    "instances and volumes they start.",
    _launch_template,
)

# ------------------------------------------------------------------------------------------------
# load generators


def _loadgen_taint(resource: Resource, _config: Config) -> Iterator[str]:
    if not is_loadgen_group(resource):
        return
    taint = (
        topology.LOADGEN_TAINT_KEY,
        topology.LOADGEN_TAINT_VALUE,
        topology.LOADGEN_TAINT_EFFECT,
    )
    if not has_taint(resource.props, *taint):
        yield (
            f"{resource.name}: load-generator nodes lack the taint {taint[0]}={taint[1]}:"
            f"{taint[2]}, so other pods can share them and skew the load test's client "
            "timings; add it to taints"
        )


LOADGEN_TAINT = resource_policy(
    "loadgen-taint",
    "Load-generator node groups carry the load-generator taint, so only Locust runs there.",
    _loadgen_taint,
)


def _loadgen_spot(resource: Resource, _config: Config) -> Iterator[str]:
    if is_loadgen_group(resource) and str(resource.get("capacityType") or "").upper() != SPOT:
        yield (
            f"{resource.name}: load generators run on {resource.get('capacityType') or 'ON_DEMAND'}"
            " capacity; use SPOT, which costs less for nodes that live for one run"
        )


LOADGEN_SPOT = resource_policy(
    "loadgen-spot",
    "Load-generator node groups use spot capacity.",
    _loadgen_spot,
    level=ADVISORY,
)

POLICIES = (
    GPU_INSTANCE_TYPE,
    GPU_NVIDIA_AMI,
    GPU_TAINT,
    GPU_BUDGET,
    NODE_GROUP_LAUNCH_TEMPLATE,
    LOADGEN_TAINT,
    LOADGEN_SPOT,
)
