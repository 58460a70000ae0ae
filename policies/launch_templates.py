"""EC2 launch templates of node groups: IMDSv2, encrypted volumes, cost tags on what they launch.

Provider default tags stop at the launch template itself; the instances, volumes and network
interfaces an Auto Scaling group launches are tagged only through ``tagSpecifications``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.resources import Resource, items, mapping, tag_map, truthy
from policies.rule import Config, resource_policy
from policies.tags import required_tags

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
TAGGED_KINDS = ("instance", "volume")
"""What a launched node bills for: the instance and its EBS volumes."""


def _imdsv2(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != LAUNCH_TEMPLATE:
        return
    options = mapping(resource.get("metadataOptions"))
    if str(options.get("httpEndpoint") or "") == "disabled":
        return  # no metadata service at all is stricter still
    tokens = options.get("httpTokens")
    if tokens != "required":
        yield (
            f"{resource.name}: metadataOptions.httpTokens is {tokens or 'unset (optional)'}; "
            "set it to required (IMDSv2), so a request forged through a pod cannot read the "
            "node's credentials"
        )


LAUNCH_TEMPLATE_IMDSV2 = resource_policy(
    "launch-template-imdsv2",
    "Launch templates require IMDSv2 (metadataOptions.httpTokens = required).",
    _imdsv2,
)


def _encrypted(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != LAUNCH_TEMPLATE:
        return
    mappings = [m for m in items(resource.get("blockDeviceMappings")) if isinstance(m, Mapping)]
    volumes = [(m.get("deviceName") or "?", mapping(m.get("ebs"))) for m in mappings if "ebs" in m]
    if not volumes:
        yield (
            f"{resource.name}: no blockDeviceMappings, so the root volume's encryption is left "
            "to the account default; map the root device with ebs.encrypted = true"
        )
    for device, ebs in volumes:
        if not truthy(ebs.get("encrypted")):
            yield (
                f"{resource.name}: the EBS volume on {device} has encrypted = "
                f"{ebs.get('encrypted')!r}; set it to true (model weights and caches live there)"
            )


LAUNCH_TEMPLATE_ENCRYPTED_VOLUMES = resource_policy(
    "launch-template-encrypted-volumes",
    "Launch templates map their EBS volumes with encryption on.",
    _encrypted,
)


def _spec_tags(resource: Resource) -> dict[str, dict[str, str]]:
    specs: dict[str, dict[str, str]] = {}
    for spec in items(resource.get("tagSpecifications")):
        spec_map: Mapping[str, Any] = mapping(spec)
        kind = str(spec_map.get("resourceType") or "")
        specs[kind] = {**specs.get(kind, {}), **tag_map(spec_map.get("tags"))}
    return specs


def _tag_propagation(resource: Resource, _config: Config) -> Iterator[str]:
    if resource.type != LAUNCH_TEMPLATE:
        return
    specs = _spec_tags(resource)
    for kind in TAGGED_KINDS:
        tags = specs.get(kind)
        if tags is None:
            yield (
                f"{resource.name}: no tagSpecifications for {kind}, so launched {kind}s carry "
                f"no cost tags; add one with {', '.join(required_tags(resource))}"
            )
            continue
        missing = [k for k in required_tags(resource) if not tags.get(k, "").strip()]
        if missing:
            yield (
                f"{resource.name}: the {kind} tagSpecification lacks {', '.join(missing)}; copy "
                "the provider's default tags into it"
            )


LAUNCH_TEMPLATE_TAGS = resource_policy(
    "launch-template-tags",
    "Launch templates tag the instances and volumes they launch with the cost tags.",
    _tag_propagation,
)

POLICIES = (LAUNCH_TEMPLATE_TAGS, LAUNCH_TEMPLATE_IMDSV2, LAUNCH_TEMPLATE_ENCRYPTED_VOLUMES)
