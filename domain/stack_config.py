"""Typed stack configuration, read and validated once, before any resource is registered.

Every setting lives under the ``qwen-stress:`` namespace as a structured object
(``qwen-stress:gpu``, ``qwen-stress:network``, ...). ``StackConfig`` is the one model; each
component takes only the section it needs. A wrong value raises ``ConfigError`` naming the key,
the value and the fix, so ``pulumi preview`` fails in seconds instead of ``pulumi up`` failing
half-way through creating a cluster.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from domain import catalog, hourly_cost, versions
from domain.autoscaling import AutoscalingSpec
from domain.durations import parse_duration
from domain.fit import FitError, FitResult, check_fit, scheduler_defaults
from domain.hourly_cost import HourlyCost
from domain.model_config import ModelConfig
from domain.prices import PriceTable, PriceTableError
from domain.prices import current as current_prices
from domain.validation import check_order, error_lines
from domain.yaml_input import YamlInputError, read_yaml_file

NAMESPACE = "qwen-stress"
SECRET_KEYS = ("apiKey", "hfToken")
_CONFIG = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)
# TEST-NET-1..3 (RFC 5737): addresses reserved for examples, never routed on the internet.
_DOCUMENTATION_NETWORKS = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)


class ConfigError(ValueError):
    """A stack setting is wrong; the message names the key, the value and what to do."""


class ClusterConfig(BaseModel):
    """``qwen-stress:cluster``: the EKS control plane and its system node group."""

    model_config = _CONFIG

    name_prefix: str = Field(
        default="qwen-stress",
        description="Prefix of the cluster name: a letter, then up to 19 of a-z, 0-9 and -.",
    )
    kubernetes_version: str = Field(
        default=versions.DEFAULT_KUBERNETES_VERSION,
        description="EKS minor version pinned in domain/versions.py; the autoscaler image follows.",
    )
    endpoint_public_access_cidrs: list[str] = Field(
        min_length=1,
        description="CIDRs allowed to reach the public API endpoint (where you deploy from); "
        "`pulumi up` refuses the examples' documentation address 203.0.113.10/32.",
    )
    system_instance_type: str = Field(
        default="c6i.2xlarge",
        description="On-demand instance type of the system node group (add-ons, Prometheus).",
    )
    system_min_nodes: int = Field(default=1, ge=1, description="System node group minimum.")
    system_max_nodes: int = Field(default=2, ge=1, description="System node group maximum.")

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", value):
            raise ValueError(
                f"{value!r} must start with a letter and hold at most 20 lowercase letters, "
                "digits or hyphens (it prefixes IAM role and cluster names, which have limits)"
            )
        return value

    @field_validator("kubernetes_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in versions.KUBERNETES:
            known = ", ".join(f'"{v}"' for v in versions.KUBERNETES)
            raise ValueError(
                f"{value!r} is not a Kubernetes version this project's chart and Cluster "
                f"Autoscaler pins were checked against; use {known} (or add a row to "
                "domain/versions.py after checking the pins)"
            )
        return value

    @field_validator("endpoint_public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            if _ipv4_network(cidr).prefixlen == 0:
                raise ValueError(
                    f"{cidr} opens the Kubernetes API to the whole internet; use the address "
                    "you deploy from, e.g. $(curl -s https://checkip.amazonaws.com)/32"
                )
        return value

    @field_validator("system_instance_type")
    @classmethod
    def _system_type(cls, value: str) -> str:
        catalog.instance(value)
        return value

    def placeholder_cidrs(self) -> list[str]:
        """Endpoint CIDRs inside the RFC 5737 documentation ranges, which nobody deploys from.

        The example stacks ship one so they preview as they are; ``pulumi up`` with it would
        build a cluster (15 minutes, billed) whose API the Helm releases then cannot reach.
        """
        return [
            cidr
            for cidr in self.endpoint_public_access_cidrs
            if any(_ipv4_network(cidr).subnet_of(doc) for doc in _DOCUMENTATION_NETWORKS)
        ]

    @model_validator(mode="after")
    def _system_bounds(self) -> ClusterConfig:
        check_order(
            ("systemMinNodes", self.system_min_nodes),
            ("systemMaxNodes", self.system_max_nodes),
            fix="raise systemMaxNodes",
        )
        return self


def _ipv4_network(cidr: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(cidr, strict=True)
    except ValueError as err:
        raise ValueError(f"{cidr!r} is not an IPv4 CIDR block like 10.0.0.0/16 ({err})") from None


class NetworkConfig(BaseModel):
    """``qwen-stress:network``: the VPC the cluster runs in."""

    model_config = _CONFIG

    cidr: str = Field(default="10.0.0.0/16", description="VPC CIDR, /16 to /20.")
    az_count: int = Field(
        default=2, description="Availability zones, 2 to 4 (EKS needs at least 2)."
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        default="single",
        description="`single` NAT gateway (cheap) or `perAz` (survives a zone outage).",
    )

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        net = _ipv4_network(value)
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(
                f"{value} is a /{net.prefixlen}; use a /16 to /20 so every AZ gets a public and a "
                "private subnet with room for pod IPs (the VPC CNI gives each pod a VPC address)"
            )
        return value

    @field_validator("az_count")
    @classmethod
    def _azs(cls, value: int) -> int:
        if not 2 <= value <= 4:
            raise ValueError(
                f"{value} availability zones: EKS needs subnets in at least 2, and this project "
                "lays out at most 4; use 2 (cheapest) or 3"
            )
        return value

    @property
    def nat_gateway_count(self) -> int:
        """NAT gateways the VPC gets: one, or one per availability zone."""
        return 1 if self.nat_gateways == "single" else self.az_count


class GpuConfig(BaseModel):
    """``qwen-stress:gpu``: the GPU managed node group the Cluster Autoscaler sizes."""

    model_config = _CONFIG

    instance_type: str = Field(
        default="g4dn.xlarge", description="GPU instance type (from the catalog)."
    )
    capacity_type: Literal["on-demand", "spot"] = Field(
        default="on-demand", description="`on-demand` or `spot` (priced at its worst observed)."
    )
    min_nodes: int = Field(
        default=0, ge=0, description="Fewest GPU nodes; 0 lets the autoscaler remove them all."
    )
    max_nodes: int = Field(
        default=2, description="Most GPU nodes the autoscaler may start (at least 1)."
    )
    disk_gib: int = Field(
        default=150,
        alias="diskGiB",
        description="gp3 root volume in GiB, 100 to 2000; holds the vLLM image and weights.",
    )

    @field_validator("instance_type")
    @classmethod
    def _gpu_type(cls, value: str) -> str:
        spec = catalog.instance(value)
        if spec.gpu is None:
            options = ", ".join(i.instance_type for i in catalog.gpu_instances()[:5])
            raise ValueError(f"{value} has no GPU; use a GPU instance type such as {options}")
        return value

    @field_validator("max_nodes")
    @classmethod
    def _max(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"{value}: the GPU group needs maxNodes of at least 1 to serve at all")
        return value

    @field_validator("disk_gib")
    @classmethod
    def _disk(cls, value: int) -> int:
        if not 100 <= value <= 2000:
            raise ValueError(
                f"{value} GiB: use 100 to 2000; the vLLM image alone is 10-20 GB and model "
                "weights are cached on the node"
            )
        return value

    @model_validator(mode="after")
    def _bounds(self) -> GpuConfig:
        check_order(
            ("minNodes", self.min_nodes),
            ("maxNodes", self.max_nodes),
            fix="raise maxNodes or lower minNodes",
        )
        return self

    @property
    def instance(self) -> catalog.InstanceSpec:
        """The catalog entry of the GPU instance type."""
        return catalog.instance(self.instance_type)


class TagsConfig(BaseModel):
    """``qwen-stress:tags``: cost-allocation tags applied to every AWS resource."""

    model_config = _CONFIG

    owner: str = Field(min_length=1, description="Who to ask about this stack (tag `owner`).")
    cost_center: str = Field(min_length=1, description="Where the bill goes (tag `cost-center`).")
    extra: dict[str, str] = Field(
        default_factory=dict, description="More tags, as `{key: value}`, on every resource."
    )

    @field_validator("extra")
    @classmethod
    def _extra(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.lower().startswith("aws:") or not 1 <= len(key) <= 128:
                raise ValueError(
                    f"tag key {key!r}: AWS refuses keys that start with 'aws:' or are longer "
                    "than 128 characters; rename it"
                )
        return value


class ClusterAutoscalerConfig(BaseModel):
    """``qwen-stress:clusterAutoscaler``: how fast idle GPU nodes go away."""

    model_config = _CONFIG

    scale_down_unneeded_time: str = Field(
        default="5m",
        description="Idle time before a node goes, 1m to 1h (upstream: 10m; idle GPUs cost).",
    )
    scale_down_delay_after_add: str = Field(
        default="5m",
        description="Wait after a scale-up before any scale-down, 1m to 1h (upstream: 10m).",
    )
    expander: Literal["least-waste", "most-pods", "random"] = Field(
        default="least-waste",
        description="`least-waste`, `most-pods` or `random`: which group grows when several could.",
    )

    @field_validator("scale_down_unneeded_time", "scale_down_delay_after_add")
    @classmethod
    def _duration(cls, value: str) -> str:
        seconds = parse_duration(value, bare_unit=None)
        if not 60 <= seconds <= 3600:
            raise ValueError(
                f"{value}: use 1m to 1h; shorter churns nodes mid-test, longer pays for idle GPUs"
            )
        return value


class BudgetConfig(BaseModel):
    """``qwen-stress:budget``: refuse configurations that can cost more than this per hour."""

    model_config = _CONFIG

    max_hourly_usd: float | None = Field(
        default=None, gt=0, description="Refuse a stack whose maximum size costs more per hour."
    )


class StackConfig(BaseModel):
    """Every ``qwen-stress:*`` setting of one stack, validated together."""

    model_config = _CONFIG

    region: str = Field(default="us-east-1", description="From aws:region.")
    profile: str | None = Field(
        default=None,
        description="From aws:profile: the AWS CLI profile for the platform and its kubeconfig.",
    )
    cluster: ClusterConfig
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    tags: TagsConfig
    cluster_autoscaler: ClusterAutoscalerConfig = Field(default_factory=ClusterAutoscalerConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    api_key: SecretStr | None = Field(default=None, description="vLLM API key (secret).")
    hf_token: SecretStr | None = Field(default=None, description="Hugging Face token (secret).")

    @property
    def fit(self) -> FitResult:
        """The model/GPU fit of one replica (vLLM's start-up arithmetic)."""
        return check_fit(
            self.model.name,
            self.gpu.instance_type,
            max_model_len=self.model.max_model_len,
            gpu_memory_utilization=self.model.gpu_memory_utilization,
            tensor_parallel=self.model.tensor_parallel,
        )

    def hourly_cost(self, prices: PriceTable | None = None) -> HourlyCost:
        """The stack's cost per hour, line by line, at minimum and maximum size.

        Control plane, NAT gateways, system and GPU nodes (spot at its worst recent price),
        from ``prices`` or the table in use for the stack's region (``domain.prices``).
        """
        table = prices or current_prices(self.region)
        nat = self.network.nat_gateway_count
        cluster, gpu = self.cluster, self.gpu
        lines = [
            hourly_cost.control_plane(table),
            hourly_cost.nat_gateways(table, nat),
            hourly_cost.node_group(
                table,
                "system_nodes",
                cluster.system_instance_type,
                "on-demand",
                cluster.system_min_nodes,
                cluster.system_max_nodes,
            ),
            hourly_cost.node_group(
                table,
                "gpu_nodes",
                gpu.instance_type,
                gpu.capacity_type,
                gpu.min_nodes,
                gpu.max_nodes,
            ),
        ]
        return hourly_cost.combine(lines, table, hourly_cost.region_note(table, self.region))

    def min_hourly_usd(self, prices: PriceTable | None = None) -> float:
        """USD per hour at minimum size: control plane, NAT, minimum system and GPU nodes."""
        return self.hourly_cost(prices).min_usd

    def max_hourly_usd(self, prices: PriceTable | None = None) -> float:
        """USD per hour at maximum size; what ``budget.maxHourlyUsd`` is checked against."""
        return self.hourly_cost(prices).max_usd


def _cross_check(cfg: StackConfig) -> list[str]:
    """Checks that span sections; each line names the keys involved and the fix.

    None depends on another passing: a model that does not fit is reported together with a
    replica count the node group cannot hold and a budget the stack exceeds, so one edit of
    the stack file fixes them all.
    """
    errors: list[str] = []
    try:
        max_num_seqs: int | None = cfg.fit.max_num_seqs
    except FitError as err:
        errors.append(f"{NAMESPACE}:{err.setting}: {err}")
        # vLLM's scheduler cap depends on the GPU alone: the autoscaling check still runs.
        gpu = cfg.gpu.instance.gpu
        max_num_seqs = scheduler_defaults(gpu)[0] if gpu is not None else None
    if max_num_seqs is not None:
        errors += [
            f"{NAMESPACE}:autoscaling.{line}"
            for line in cfg.autoscaling.scheduler_errors(max_num_seqs)
        ]
    gpus_per_node = cfg.gpu.instance.gpu_count
    gpus_per_replica = cfg.model.tensor_parallel
    needed = cfg.autoscaling.max_replicas * gpus_per_replica
    available = cfg.gpu.max_nodes * gpus_per_node
    if needed > available:
        errors.append(
            f"{NAMESPACE}:autoscaling.maxReplicas: {cfg.autoscaling.max_replicas} replicas x "
            f"{gpus_per_replica} GPU(s) = {needed} GPUs, but gpu.maxNodes {cfg.gpu.max_nodes} "
            f"x {gpus_per_node} GPU(s) per {cfg.gpu.instance_type} = {available}; raise "
            f"gpu.maxNodes to {math.ceil(needed / gpus_per_node)} or lower "
            "autoscaling.maxReplicas"
        )
    limit = cfg.budget.max_hourly_usd
    try:
        cost = cfg.hourly_cost()
    except PriceTableError as err:
        key = "gpu.instanceType" if cfg.gpu.instance_type in str(err) else "cluster"
        return [*errors, f"{NAMESPACE}:{key}: {err}"]
    if limit is not None and cost.max_usd > limit:
        errors.append(
            f"{NAMESPACE}:budget.maxHourlyUsd: at maximum size this stack costs "
            f"${cost.max_usd:.2f}/h ({cost.prices.label()}), above the budget of "
            f"${limit:.2f}/h; lower "
            "gpu.maxNodes, use a cheaper gpu.instanceType or capacityType spot, or raise the budget"
        )
    return errors


def _decode(key: str, raw: Any) -> Any:
    """Pulumi hands structured values to the program as JSON text; YAML files give objects.

    An empty value (``pulumi config set qwen-stress:gpu ""``, or ``qwen-stress:gpu:`` with
    nothing after it in the stack file) is refused as empty: it is neither JSON nor a default.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ConfigError(
            f"{NAMESPACE}:{key} is set but empty; give it a value (see README, Configuration) "
            f"or remove it with `pulumi config rm {NAMESPACE}:{key}` to use the default"
        )
    if isinstance(raw, str) and key not in SECRET_KEYS and raw[:1] in "{[":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{NAMESPACE}:{key} is not valid JSON: {err}") from None
    return raw


_HEADER = "invalid stack configuration:\n  "


def _format(err: ValidationError) -> list[str]:
    return error_lines(
        err,
        lambda loc: f"{NAMESPACE}:{loc}" if loc else NAMESPACE,
        missing="is required; set it in Pulumi.<stack>.yaml (see README, Configuration)",
        unknown="is not a setting this project knows; check the spelling against the README",
    )


def parse(
    values: Mapping[str, Any], region: str | None = None, profile: str | None = None
) -> StackConfig:
    """Build the typed config from ``{"qwen-stress:<key>": value}`` pairs (other keys ignored).

    Raises ``ConfigError`` listing every wrong key at once, so one edit fixes them all.
    """
    prefix = NAMESPACE + ":"
    data: dict[str, Any] = {}
    unreadable: list[str] = []
    for name, raw in values.items():
        if name.startswith(prefix):
            key = name.removeprefix(prefix)
            try:
                data[key] = _decode(key, raw)
            except ConfigError as err:
                unreadable.append(str(err))
    if unreadable:
        raise ConfigError(_HEADER + "\n  ".join(unreadable))
    if region:
        data["region"] = region
    if profile:
        data["profile"] = profile
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_HEADER + "\n  ".join(_format(err))) from None
    errors = _cross_check(cfg)
    if errors:
        raise ConfigError(_HEADER + "\n  ".join(errors))
    return cfg


def stack_name(path: Path) -> str | None:
    """``dev`` from ``Pulumi.dev.yaml`` (or ``.yml``) at any path; None for another name."""
    for suffix in (".yaml", ".yml"):
        stack = path.name.removeprefix("Pulumi.").removesuffix(suffix)
        if path.name == f"Pulumi.{stack}{suffix}" and stack:
            return stack
    return None


def load_stack_file(path: Path) -> StackConfig:
    """Read a ``Pulumi.<stack>.yaml`` file directly, for local rehearsals of that stack.

    Encrypted values (``secure:``) cannot be read without the Pulumi CLI and are left unset:
    the local target generates its own API key. Every error names the file: a rehearsal may be
    pointed at any file, and an error about settings alone would not say which one.
    """
    try:
        document = read_yaml_file(path, "stack file")
    except YamlInputError as err:
        raise ConfigError(str(err)) from None
    if document is None:
        raise ConfigError(
            f"stack file {path} is empty; it needs a 'config:' mapping of qwen-stress:* "
            "settings (see Pulumi.dev.yaml)"
        )
    if not isinstance(document, dict):
        raise ConfigError(
            f"stack file {path} holds a {type(document).__name__}, not a mapping with a "
            "'config:' key (see Pulumi.dev.yaml)"
        )
    values = document.get("config") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: 'config' must be a mapping of keys to values")
    plain = {k: v for k, v in values.items() if not (isinstance(v, dict) and "secure" in v)}
    region = plain.get("aws:region")
    try:
        return parse(plain, region=region if isinstance(region, str) else None)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
