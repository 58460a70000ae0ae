"""Cost-allocation tags on every AWS resource that takes tags.

The bill is split by these tags; a resource without them is money nobody can attribute. The
provider's default tags count (the platform sets the four keys there once), so a resource passes
when its own tags and its provider's together carry every key with a value.
"""

from __future__ import annotations

from collections.abc import Iterator

from domain.topology import COST_TAGS, RUN_ID_TAG
from policies.resources import Resource, default_tags, tag_map
from policies.rule import Config, resource_policy
from policies.taggable import takes_tags


def required_tags(resource: Resource) -> tuple[str, ...]:
    """The cost tags a resource of this stack must carry (load tests also name their run)."""
    return (*COST_TAGS, RUN_ID_TAG) if resource.in_load_test_stack else COST_TAGS


def _check(resource: Resource, _config: Config) -> Iterator[str]:
    if not resource.type.startswith("aws:"):
        return
    taggable = takes_tags(resource.type)
    # A type newer than the installed SDK is judged by whether it was given tags at all.
    if taggable is False or (taggable is None and "tags" not in resource.props):
        return
    tags = {**default_tags(resource.provider), **tag_map(resource.props.get("tags"))}
    missing = [key for key in required_tags(resource) if not tags.get(key, "").strip()]
    if missing:
        yield (
            f"{resource.name} ({resource.type}) has no value for the cost tag(s) "
            f"{', '.join(missing)}; set them in the AWS provider's defaultTags (the platform "
            "takes them from qwen-stress:tags) or in the resource's tags"
        )


COST_TAGS_POLICY = resource_policy(
    "cost-tags",
    "Every taggable AWS resource carries the cost tags owner, cost-center, project and stack "
    "(and run-id in load-test stacks), counting the provider's default tags.",
    _check,
)
