"""The cost-allocation tags every AWS resource carries, and the launch-template copies of them.

Provider default tags reach every resource the AWS provider creates, but not the instances and
volumes an Auto Scaling group launches; those get the same tags through the launch template's
tag specifications, so the bill of a GPU node is attributed like everything else.
"""

from __future__ import annotations

import pulumi_aws as aws

from domain.stack_config import TagsConfig
from domain.topology import COST_TAGS

LAUNCHED_RESOURCE_TYPES = ("instance", "volume", "network-interface")


def default_tags(tags: TagsConfig, project: str, stack: str) -> dict[str, str]:
    """Tags for the provider's ``default_tags``; the four fixed keys win over ``extra``."""
    fixed = dict(zip(COST_TAGS, (tags.owner, tags.cost_center, project, stack), strict=True))
    return {**tags.extra, **fixed}


def launched_tag_specifications(
    tags: dict[str, str],
) -> list[aws.ec2.LaunchTemplateTagSpecificationArgs]:
    """Tag specifications so instances, volumes and ENIs an ASG launches carry the tags too."""
    return [
        aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
        for kind in LAUNCHED_RESOURCE_TYPES
    ]
