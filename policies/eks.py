"""The EKS control plane: an endpoint not open to the internet, secrets under a rotating key.

EKS opens a public endpoint to ``0.0.0.0/0`` when ``publicAccessCidrs`` is left out, so an unset
list is as open as an explicit one. Envelope encryption is checked on the cluster, rotation on
every KMS key of the stack (the cluster's key is one of them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from policies.resources import Resource, items, mapping, truthy
from policies.rule import Config, resource_policy

CLUSTER = "aws:eks/cluster:Cluster"
KMS_KEY = "aws:kms/key:Key"
SYMMETRIC = "SYMMETRIC_DEFAULT"


def whole_internet(cidr: str) -> bool:
    """Whether a CIDR block admits every address (``0.0.0.0/0``, ``::/0``, or any /0)."""
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def _endpoint(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != CLUSTER:
        return
    vpc: Mapping[str, Any] = mapping(resource.get("vpcConfig"))
    public = vpc.get("endpointPublicAccess")
    if public is False or str(public).lower() == "false":
        return
    cidrs = [str(c) for c in items(vpc.get("publicAccessCidrs"))]
    open_to = [c for c in cidrs if whole_internet(c)] or ([] if cidrs else ["0.0.0.0/0 (unset)"])
    if open_to:
        yield (
            f"{resource.name}: the public Kubernetes API endpoint is open to {', '.join(open_to)}; "
            "set vpcConfig.publicAccessCidrs to the addresses you deploy from "
            "(qwen-stress:cluster.endpointPublicAccessCidrs) or turn public access off"
        )


EKS_PUBLIC_ENDPOINT = resource_policy(
    "eks-public-endpoint",
    "The EKS public endpoint is not open to 0.0.0.0/0 or ::/0 (nor left unset, which is the same).",
    _endpoint,
)


def _encryption(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != CLUSTER:
        return
    config: Mapping[str, Any] = mapping(resource.get("encryptionConfig"))
    key = mapping(config.get("provider")).get("keyArn")
    scope = [str(r) for r in items(config.get("resources"))]
    if not key or "secrets" not in scope:
        yield (
            f"{resource.name}: Kubernetes secrets are not envelope-encrypted (encryptionConfig "
            f"key {key or 'unset'}, resources {scope or 'unset'}); set encryptionConfig with a "
            "KMS key that rotates and resources = [secrets]"
        )


EKS_SECRETS_ENCRYPTION = resource_policy(
    "eks-secrets-encryption",
    "EKS encrypts Kubernetes secrets with a KMS key (encryptionConfig, resources = secrets).",
    _encryption,
)


def _rotation(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != KMS_KEY:
        return
    spec = str(resource.get("customerMasterKeySpec") or resource.get("keySpec") or SYMMETRIC)
    if spec != SYMMETRIC:
        return  # KMS rotates symmetric keys only; asymmetric ones cannot be asked to
    if not truthy(resource.get("enableKeyRotation")):
        yield (
            f"{resource.name}: enableKeyRotation is {resource.get('enableKeyRotation')}; set it "
            "to true so the key material rotates yearly"
        )


KMS_KEY_ROTATION = resource_policy(
    "kms-key-rotation",
    "Symmetric KMS keys (the one encrypting the cluster's secrets among them) rotate.",
    _rotation,
)

POLICIES = (EKS_PUBLIC_ENDPOINT, EKS_SECRETS_ENCRYPTION, KMS_KEY_ROTATION)
