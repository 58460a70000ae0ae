"""Feed resources to the policy pack as the engine does, and read back its diagnostics.

The engine sends each resource to the analyzer's ``Analyze`` (type, URN, camelCase properties in
a protobuf ``Struct`` -- so every number is a float --, resource options and the provider's own
properties) and all of them to ``AnalyzeStack``; a ``--policy-pack-config`` file first reaches it
through ``Configure``, reconciled with each policy's schema defaults. This module builds exactly
those requests from resources registered under mocks (``tests.pulumi_mocks``) or written by hand,
and hands them to the pulumi-policy SDK's own analyzer servicer in-process, so the rules run
through the same deserialisation, config and enforcement code as under ``pulumi preview``.
``tests/integration/test_policy_pack_served.py`` runs the same requests against the pack served
over gRPC.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy.policy import _PolicyAnalyzerServicer

from policies import pack
from tests.pulumi_mocks import ROOT, Program, Resource

POLICY_DIR = ROOT / "policies"
CONFIG_DIR = POLICY_DIR / "config"
LEVELS = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    analyzer_pb2.REMEDIATE: "remediate",
    analyzer_pb2.DISABLED: "disabled",
}
PROTO_LEVELS = {name: level for level, name in LEVELS.items()}
PROVIDER_PREFIX = "pulumi:providers:"


@dataclass(frozen=True)
class EngineResource:
    """One resource as the engine describes it to an analyzer."""

    type: str
    name: str
    props: Mapping[str, Any]
    project: str = "qwen-stress"
    stack: str = "test"
    provider: EngineResource | None = None
    protect: bool = False

    @property
    def urn(self) -> str:
        """``urn:pulumi:<stack>::<project>::<type>::<name>``."""
        return f"urn:pulumi:{self.stack}::{self.project}::{self.type}::{self.name}"


@dataclass(frozen=True)
class Violation:
    """One diagnostic the pack returned."""

    policy: str
    level: str
    message: str
    urn: str


def struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    """Properties as the engine marshals them (a protobuf Struct: numbers become floats)."""
    message = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(values)), message)
    return message


def _provider(resource: EngineResource) -> analyzer_pb2.AnalyzerProviderResource | None:
    if resource.provider is None:
        return None
    p = resource.provider
    return analyzer_pb2.AnalyzerProviderResource(
        type=p.type, name=p.name, urn=p.urn, properties=struct(p.props)
    )


def analyze_request(resource: EngineResource) -> analyzer_pb2.AnalyzeRequest:
    """What the engine sends to ``Analyze`` for one resource."""
    return analyzer_pb2.AnalyzeRequest(
        type=resource.type,
        name=resource.name,
        urn=resource.urn,
        properties=struct(resource.props),
        options=analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect),
        provider=_provider(resource),
    )


def analyze_stack_request(
    resources: Sequence[EngineResource],
) -> analyzer_pb2.AnalyzeStackRequest:
    """What the engine sends to ``AnalyzeStack`` at the end of a preview or update."""
    return analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r.type,
                name=r.name,
                urn=r.urn,
                properties=struct(r.props),
                options=analyzer_pb2.AnalyzerResourceOptions(protect=r.protect),
                provider=_provider(r),
            )
            for r in resources
        ]
    )


def configure_request(config: Mapping[str, Any]) -> analyzer_pb2.ConfigureAnalyzerRequest:
    """The ``Configure`` call the engine makes for a ``--policy-pack-config`` file.

    The engine reconciles the file with the pack: every policy gets its level (the file's
    ``all``, then its own entry, then the policy's default) and its schema defaults for any
    property the file leaves out. An entry that names no policy of the pack is an error.
    """
    by_name = {p.name: p for p in pack.POLICIES}
    unknown = set(config) - set(by_name) - {"all"}
    if unknown:
        raise ValueError(f"the config names policies the pack does not have: {sorted(unknown)}")
    overall = config.get("all")
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for name, policy in by_name.items():
        entry = config.get(name, {})
        if isinstance(entry, str):
            entry = {"enforcementLevel": entry}
        level = entry.get("enforcementLevel") or (overall if isinstance(overall, str) else None)
        level = level or (policy.enforcement_level or pack.DEFAULT_LEVEL).value
        schema = policy.config_schema.properties if policy.config_schema else {}
        properties = {key: s["default"] for key, s in schema.items() if "default" in s}
        properties.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
        request.policyConfig[name].CopyFrom(
            analyzer_pb2.PolicyConfig(
                enforcementLevel=PROTO_LEVELS[level], properties=struct(properties)
            )
        )
    return request


def read_config(kind: str) -> dict[str, Any]:
    """A checked-in ``--policy-pack-config`` file (``preview``, ``production``, ``loadtest``)."""
    document: dict[str, Any] = json.loads((CONFIG_DIR / f"{kind}.json").read_text("utf-8"))
    return document


def engine_config(values: Mapping[str, Any]) -> dict[str, str]:
    """Stack config as the engine passes it to a policy pack: objects and lists as JSON text."""
    return {
        key: json.dumps(value) if isinstance(value, dict | list) else str(value)
        for key, value in values.items()
        if not (isinstance(value, dict) and "secure" in value)
    }


_ANALYZED: dict[tuple[str, str, bytes], list[Violation]] = {}
"""``Analyze`` is a function of the request and the two configs; a session reuses its answers
(mutation tests re-send the same dozens of unchanged resources with one changed)."""


def _violations(response: analyzer_pb2.AnalyzeResponse) -> list[Violation]:
    return [
        Violation(d.policyName, LEVELS[d.enforcementLevel], d.message, d.urn)
        for d in response.diagnostics
    ]


def _servicer() -> Any:
    """The SDK's analyzer servicer for this pack (untyped: it takes and returns the protos)."""
    return _PolicyAnalyzerServicer(
        pack.NAME, "0.1.0", pack.POLICIES, pack.DEFAULT_LEVEL, None, pack.DESCRIPTION
    )


@dataclass
class Analyzer:
    """The pack's analyzer servicer, driven in-process with the engine's requests."""

    policy_config: Mapping[str, Any] | None = None
    stack_config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.servicer = _servicer()
        if self.policy_config is not None:
            self.servicer.Configure(configure_request(self.policy_config), None)

    def _with_stack_config(self) -> None:
        # The served pack sets the same values from PULUMI_CONFIG before every call.
        pulumi.runtime.set_all_config(dict(self.stack_config))

    def analyze(self, resource: EngineResource) -> list[Violation]:
        """Diagnostics of one resource."""
        request = analyze_request(resource)
        key = (
            json.dumps(self.policy_config, sort_keys=True),
            json.dumps(self.stack_config, sort_keys=True),
            request.SerializeToString(deterministic=True),
        )
        if key not in _ANALYZED:
            self._with_stack_config()
            _ANALYZED[key] = _violations(self.servicer.Analyze(request, None))
        return _ANALYZED[key]

    def analyze_stack(self, resources: Sequence[EngineResource]) -> list[Violation]:
        """Diagnostics of the stack policies."""
        self._with_stack_config()
        return _violations(self.servicer.AnalyzeStack(analyze_stack_request(resources), None))

    def check(self, resources: Sequence[EngineResource]) -> list[Violation]:
        """Everything a preview of these resources reports: each resource, then the stack."""
        found = [v for r in resources for v in self.analyze(r)]
        return found + self.analyze_stack(resources)


def _name_of(reference: str) -> str:
    # A provider reference is "<provider URN>::<provider id>"; the URN ends in its name.
    return reference.rsplit("::", 2)[-2]


def engine_resources(
    program: Program, project: str, stack: str, stack_config: Mapping[str, str]
) -> list[EngineResource]:
    """What the engine would send for every resource a program registered under mocks.

    A resource with an explicit provider gets that provider's registered properties; one with
    none gets the package's default provider, whose properties are the stack's ``<package>:*``
    settings (the engine builds default providers from them).
    """
    providers: dict[str, EngineResource] = {}
    for r in program.resources:
        if r.type.startswith(PROVIDER_PREFIX):
            providers[r.name] = EngineResource(r.type, r.name, r.inputs, project, stack)

    def default_provider(resource: Resource) -> EngineResource | None:
        package = resource.type.split(":", 1)[0]
        if package in ("pulumi", "qwen-stress") or ":" not in resource.type:
            return None
        settings = {
            k.split(":", 1)[1]: v for k, v in stack_config.items() if k.startswith(f"{package}:")
        }
        return EngineResource(
            PROVIDER_PREFIX + package, f"default_{package}", settings, project, stack
        )

    def protected(resource: Resource) -> bool:
        opts = program.options.get((resource.type, resource.name))
        return bool(opts and opts.protect)

    found = []
    for r in program.resources:
        provider = providers.get(_name_of(r.provider)) if r.provider else default_provider(r)
        found.append(
            EngineResource(r.type, r.name, r.inputs, project, stack, provider, protected(r))
        )
    return found


def check_program(
    program: Program,
    project: str,
    *,
    stack: str = "test",
    stack_config: Mapping[str, Any] | None = None,
    policy_config: Mapping[str, Any] | None = None,
) -> list[Violation]:
    """Every diagnostic the pack reports on a program registered under mocks.

    ``project`` is the Pulumi project the program runs as (``qwen-stress`` for the platform,
    ``qwen-stress-loadtest`` for a load-test stack): the load-test rules key on it.
    """
    config = engine_config(stack_config or {})
    resources = engine_resources(program, project, stack, config)
    return Analyzer(policy_config, config).check(resources)


def mandatory(violations: Iterable[Violation]) -> list[Violation]:
    """The violations that stop a preview or an update."""
    return [v for v in violations if v.level == "mandatory"]


def fired(violations: Iterable[Violation], level: str = "mandatory") -> set[str]:
    """Names of the policies that reported at a level."""
    return {v.policy for v in violations if v.level == level}


def describe(violations: Iterable[Violation]) -> str:
    """One line per violation, for assertion messages."""
    return "\n".join(f"[{v.level}] {v.policy}: {v.message}" for v in violations)


def config_files() -> list[Path]:
    """Every checked-in ``--policy-pack-config`` file."""
    return sorted(CONFIG_DIR.glob("*.json"))
