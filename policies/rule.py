"""Build CrossGuard policies from plain check functions, with declared config defaults.

A check takes a ``Resource`` (or every resource of the stack) and the policy's config, and yields
one message per violation. The wrapper here turns it into the SDK's policy object, fills the
config in from the schema's defaults (the engine only does so when it is given a config), and
lets an unknown preview value reach the SDK, which reports it as "can't run during preview".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.resources import Resource

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

Config = Mapping[str, Any]
Check = Callable[[Resource, Config], Iterable[str]]
StackCheck = Callable[[list[Resource], Config], Iterable[tuple[Resource | None, str]]]
"""Yields (the resource at fault, or None for the stack as a whole; the message)."""


@dataclass(frozen=True)
class Setting:
    """One configurable property of a policy: its key, JSON schema (with a default) and meaning."""

    key: str
    schema: dict[str, Any]
    description: str

    @property
    def default(self) -> Any:
        """The value a policy uses when no ``--policy-pack-config`` sets it."""
        return self.schema["default"]

    def json_schema(self) -> dict[str, Any]:
        """The property's schema as the engine validates config files against it."""
        return {**self.schema, "description": self.description}


def _schema(settings: tuple[Setting, ...]) -> PolicyConfigSchema | None:
    if not settings:
        return None
    return PolicyConfigSchema({s.key: s.json_schema() for s in settings})


def _config(settings: tuple[Setting, ...], given: Config) -> dict[str, Any]:
    return {**{s.key: s.default for s in settings}, **given}


def resource_policy(
    name: str,
    description: str,
    check: Check,
    *,
    level: EnforcementLevel = MANDATORY,
    settings: tuple[Setting, ...] = (),
) -> ResourceValidationPolicy:
    """A policy run on each resource before it is created or changed."""

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in check(Resource.of_args(args), _config(settings, args.get_config())):
            report(message, None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=_schema(settings),
    )


def stack_policy(
    name: str,
    description: str,
    check: StackCheck,
    *,
    level: EnforcementLevel = MANDATORY,
    settings: tuple[Setting, ...] = (),
) -> StackValidationPolicy:
    """A policy run once on every resource of the stack together (relations between them)."""

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [Resource.of_stack(r) for r in args.resources]
        for culprit, message in check(resources, _config(settings, args.get_config())):
            report(message, culprit.urn if culprit is not None else None)

    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=_schema(settings),
    )
