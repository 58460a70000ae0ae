"""What a rule sees of one resource, and the small readers every rule shares.

The engine sends a resource to ``Analyze`` (its inputs, before it exists) and every resource to
``AnalyzeStack`` (their outputs); rules take the same ``Resource`` view of both, so one check
serves both. Property names are the provider's camelCase ones, numbers arrive as floats, and
structured provider settings (the AWS provider's ``defaultTags``) may arrive as an object or as
JSON text: the readers here accept every shape the engine sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyResource, ResourceValidationArgs

from domain.topology import LOADTEST_PROJECT

URN_PREFIX = "urn:pulumi:"


@dataclass(frozen=True)
class Resource:
    """One resource as a rule sees it: type, name, URN, properties, provider settings, options."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    provider: Mapping[str, Any]
    """The properties of the resource's provider (its explicit one, or the default one)."""
    protect: bool

    @classmethod
    def of_args(cls, args: ResourceValidationArgs) -> Resource:
        """The view of a resource the engine sent to ``Analyze``."""
        return cls._of(args.resource_type, args.name, args.urn, args.props, args)

    @classmethod
    def of_stack(cls, resource: PolicyResource) -> Resource:
        """The view of one resource the engine sent to ``AnalyzeStack``."""
        return cls._of(
            resource.resource_type, resource.name, resource.urn, resource.props, resource
        )

    @classmethod
    def _of(
        cls,
        type_: str,
        name: str,
        urn: str,
        props: Mapping[str, Any],
        source: ResourceValidationArgs | PolicyResource,
    ) -> Resource:
        provider = source.provider.props if source.provider is not None else {}
        return cls(type_, name, urn, props, provider, bool(source.opts.protect))

    @property
    def project(self) -> str:
        """The Pulumi project, from the URN (``urn:pulumi:<stack>::<project>::<type>::<name>``)."""
        return project_of(self.urn)

    @property
    def in_load_test_stack(self) -> bool:
        """Whether this resource belongs to an ephemeral load-test stack."""
        return self.project == LOADTEST_PROJECT

    def get(self, *path: str | int) -> Any:
        """The property at ``path`` (``get("vpcConfig", "publicAccessCidrs")``), or None."""
        return dig(self.props, *path)


def project_of(urn: str) -> str:
    """The project part of a URN; empty when the text is not a Pulumi URN."""
    if not urn.startswith(URN_PREFIX):
        return ""
    parts = urn[len(URN_PREFIX) :].split("::")
    return parts[1] if len(parts) > 1 else ""


def dig(value: Any, *path: str | int) -> Any:
    """Follow keys and indexes into nested properties; None where any step is missing."""
    for step in path:
        if isinstance(step, int):
            if not is_list(value) or not -len(value) <= step < len(value):
                return None
            value = value[step]
        elif isinstance(value, Mapping) and step in value:
            value = value[step]
        else:
            return None
    return value


def is_list(value: Any) -> bool:
    """A JSON array as the SDK hands it over (a list or its read-only proxy), not a string."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def items(value: Any) -> list[Any]:
    """The elements of an array property; an absent or scalar value has none."""
    return list(value) if is_list(value) else []


def mapping(value: Any) -> Mapping[str, Any]:
    """An object property, decoding JSON text (how provider settings may arrive); else empty."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, Mapping) else {}


def number(value: Any) -> float | None:
    """A numeric property (floats from the engine, or numeric text); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def truthy(value: Any) -> bool:
    """A boolean property, which some providers type as text (``encrypted: "true"``)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def tag_map(value: Any) -> dict[str, str]:
    """Tags as a dict, from an object or from a list of ``{key, value}`` (Auto Scaling groups)."""
    if is_list(value):
        return {
            str(t["key"]): str(t.get("value", ""))
            for t in value
            if isinstance(t, Mapping) and "key" in t
        }
    return {str(k): "" if v is None else str(v) for k, v in mapping(value).items()}


def default_tags(provider: Mapping[str, Any]) -> dict[str, str]:
    """The AWS provider's ``defaultTags.tags`` (object or JSON text), which every resource gets."""
    return tag_map(mapping(provider.get("defaultTags")).get("tags"))


def taint_effect(kubernetes_effect: str) -> str:
    """EKS spells taint effects ``NO_SCHEDULE`` where Kubernetes spells ``NoSchedule``."""
    return "".join(
        f"_{c}" if c.isupper() and i else c for i, c in enumerate(kubernetes_effect)
    ).upper()


def has_taint(props: Mapping[str, Any], key: str, value: str, effect: str) -> bool:
    """Whether an EKS node group's ``taints`` hold exactly this taint."""
    wanted = (key, value, taint_effect(effect))
    return any(
        (dig(t, "key"), dig(t, "value"), dig(t, "effect")) == wanted
        for t in items(props.get("taints"))
    )


def labels(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """An EKS node group's Kubernetes labels."""
    return mapping(props.get("labels"))


POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
"""Kubernetes types that run pods, and the path to their pod spec."""

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def containers(resource: Resource) -> Iterator[Mapping[str, Any]]:
    """Every container of a workload (init, regular and ephemeral); none for other types."""
    path = POD_SPEC_PATHS.get(resource.type)
    if path is None:
        return
    spec = resource.get(*path)
    for kind in CONTAINER_LISTS:
        for container in items(dig(spec, kind)):
            if isinstance(container, Mapping):
                yield container


def namespace_of(resource: Resource) -> str:
    """A namespaced Kubernetes object's namespace (``default`` when the manifest names none)."""
    value = resource.get("metadata", "namespace")
    return value if isinstance(value, str) and value else "default"


def k8s_name(resource: Resource) -> str:
    """A Kubernetes object's ``metadata.name``, or the Pulumi name when it has none yet."""
    value = resource.get("metadata", "name")
    return value if isinstance(value, str) and value else resource.name
