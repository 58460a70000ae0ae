"""Kubernetes workloads: pinned images, sized requests, whole GPUs, network policies, Helm pins.

A load test is meant to be repeated; an image or chart that floats changes what is measured
between two runs. Requests are what the scheduler (and the Cluster Autoscaler) plan with, so a
pod without them lands anywhere and grows nodes for no one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from domain import topology
from policies.resources import (
    POD_SPEC_PATHS,
    Resource,
    containers,
    dig,
    k8s_name,
    mapping,
    namespace_of,
    number,
)
from policies.rule import ADVISORY, Config, resource_policy, stack_policy

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")


def _container_name(container: Mapping[str, Any]) -> str:
    return str(container.get("name") or "(unnamed)")


def image_problem(image: str) -> str | None:
    """Why an image reference floats (no tag, ``:latest``), or None when it is pinned."""
    if "@" in image:
        return None  # a digest pins the exact bytes
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag, which means :latest"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the :latest tag"
    return None


def _images(resource: Resource, _config: Config) -> Iterator[str]:
    for container in containers(resource):
        image = str(container.get("image") or "")
        problem = image_problem(image) if image else "names no image"
        if problem:
            yield (
                f"{resource.name}: container {_container_name(container)} image {image!r} "
                f"{problem}; pin a release tag or a digest (image@sha256:...)"
            )


K8S_IMAGE_PINNED = resource_policy(
    "k8s-image-pinned",
    "Container images are pinned to a tag other than latest, or to a digest.",
    _images,
)


def _requests(resource: Resource, _config: Config) -> Iterator[str]:
    for container in containers(resource):
        requests = mapping(dig(container, "resources", "requests"))
        missing = [r for r in ("cpu", "memory") if requests.get(r) in (None, "")]
        if missing:
            yield (
                f"{resource.name}: container {_container_name(container)} requests no "
                f"{' or '.join(missing)}; set resources.requests so the scheduler and the "
                "Cluster Autoscaler plan with its real size"
            )


K8S_RESOURCE_REQUESTS = resource_policy(
    "k8s-resource-requests",
    "Every container requests CPU and memory.",
    _requests,
)


def _quantity(value: Any) -> float | str | None:
    parsed = number(value)
    return parsed if parsed is not None else (None if value is None else str(value))


def _gpus(resource: Resource, _config: Config) -> Iterator[str]:
    for container in containers(resource):
        requested = _quantity(dig(container, "resources", "requests", topology.GPU_RESOURCE))
        limited = _quantity(dig(container, "resources", "limits", topology.GPU_RESOURCE))
        if (requested is not None or limited is not None) and requested != limited:
            yield (
                f"{resource.name}: container {_container_name(container)} requests "
                f"{requested} and limits {limited} {topology.GPU_RESOURCE}; GPUs are not shared, "
                "so set both to the same whole number"
            )


K8S_GPU_REQUESTS_EQUAL_LIMITS = resource_policy(
    "k8s-gpu-requests-equal-limits",
    f"Containers that use GPUs request exactly their limit of {topology.GPU_RESOURCE}.",
    _gpus,
)


def _namespace_policies(
    resources: list[Resource], _config: Config
) -> Iterator[tuple[Resource | None, str]]:
    covered = {namespace_of(r) for r in resources if r.type == NETWORK_POLICY}
    for resource in resources:
        if resource.type in POD_SPEC_PATHS and namespace_of(resource) not in covered:
            yield (
                resource,
                f"{resource.name}: runs pods in namespace {namespace_of(resource)}, which has no "
                "NetworkPolicy in this stack; add one that admits only the traffic it needs",
            )


K8S_NAMESPACE_NETWORK_POLICY = stack_policy(
    "k8s-namespace-network-policy",
    "Every namespace this stack runs pods in has a NetworkPolicy in the same stack.",
    _namespace_policies,
)


def _helm(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type not in HELM_TYPES:
        return
    version = str(resource.get("version") or "")
    if not EXACT_VERSION.match(version):
        chart = resource.get("chart") or k8s_name(resource)
        yield (
            f"{resource.name}: chart {chart} version {version or '(unset: the newest)'} floats; "
            "pin an exact version (domain/versions.py holds this project's pins)"
        )


HELM_CHART_VERSION = resource_policy(
    "helm-chart-version",
    "Helm releases pin an exact chart version.",
    _helm,
    level=ADVISORY,
)

POLICIES = (
    K8S_IMAGE_PINNED,
    K8S_RESOURCE_REQUESTS,
    K8S_GPU_REQUESTS_EQUAL_LIMITS,
    K8S_NAMESPACE_NETWORK_POLICY,
    HELM_CHART_VERSION,
)
