"""Whether an AWS resource type takes tags, read from the installed pulumi_aws SDK.

A hand-kept list of taggable types would go stale with every provider release; the SDK's own
``<Resource>Args`` class has a ``tags`` property exactly when the resource takes tags, so the
answer follows the provider version the stack is deployed with.
"""

from __future__ import annotations

import importlib
from functools import cache


def _module_and_class(type_token: str) -> tuple[str, str] | None:
    """``aws:ec2/launchTemplate:LaunchTemplate`` -> (``pulumi_aws.ec2``, ``LaunchTemplate``)."""
    parts = type_token.split(":")
    if len(parts) != 3 or parts[0] != "aws":
        return None
    module = parts[1].split("/", 1)[0]
    return ("pulumi_aws" if module == "index" else f"pulumi_aws.{module}", parts[2])


@cache
def takes_tags(type_token: str) -> bool | None:
    """True or False for a type the SDK knows; None for a type it does not (newer provider)."""
    located = _module_and_class(type_token)
    if located is None:
        return None
    module_name, class_name = located
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    args_class = getattr(module, f"{class_name}Args", None)
    if args_class is None:
        return None
    return hasattr(args_class, "tags")
