"""Security groups: no inbound rule from the whole internet.

Ingress is written in three places in the AWS provider: inline ``ingress`` blocks of a (default)
security group, ``SecurityGroupRule`` resources of type ``ingress``, and the newer
``vpc.SecurityGroupIngressRule`` resources; all three are read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.eks import whole_internet
from policies.resources import Resource, items, mapping
from policies.rule import Config, resource_policy

GROUPS = (
    "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
)
RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def _cidrs(block: Mapping[str, Any], *keys: str) -> list[str]:
    found: list[str] = []
    for key in keys:
        value = block.get(key)
        found += [str(v) for v in items(value)] if not isinstance(value, str) else [value]
    return found


def ingress_sources(resource: Resource) -> list[str]:
    """Every CIDR block a resource admits inbound traffic from."""
    if resource.type in GROUPS:
        return [
            cidr
            for block in items(resource.get("ingress"))
            for cidr in _cidrs(mapping(block), "cidrBlocks", "ipv6CidrBlocks")
        ]
    if resource.type == RULE and resource.get("type") == "ingress":
        return _cidrs(resource.props, "cidrBlocks", "ipv6CidrBlocks")
    if resource.type == INGRESS_RULE:
        return _cidrs(resource.props, "cidrIpv4", "cidrIpv6")
    return []


def _check(resource: Resource, _config: Config) -> Iterator[str]:
    open_to = sorted({c for c in ingress_sources(resource) if whole_internet(c)})
    if open_to:
        yield (
            f"{resource.name}: admits inbound traffic from {', '.join(open_to)}; name the "
            "networks that need to connect, or reach the service through the cluster instead"
        )


SECURITY_GROUP_INGRESS = resource_policy(
    "security-group-ingress",
    "No security group admits inbound traffic from the whole internet (0.0.0.0/0 or ::/0).",
    _check,
)

POLICIES = (SECURITY_GROUP_INGRESS,)
