"""Run an inline Pulumi program under mocks and keep what it would create (the rehearsal's ``up``).

``pulumi.runtime.set_mocks`` replaces the engine: every resource the program registers comes
to ``new_resource`` with its resolved inputs, and nothing leaves this process. Checked against
pulumi 3.272 (``pulumi/runtime/mocks.py``, ``stack.py``): ``run_pulumi_func`` runs a program
with a root ``Stack`` resource (so ``pulumi.export`` works) and ``_sync_await`` drives its
event loop, as the project's tests do (``tests/pulumi_mocks.py``); the loop is this thread's
own, since the orchestrator runs ``up`` in a worker thread. Secrets arrive wrapped in Pulumi's
secret signature; ``public`` replaces them with ``[secret]`` for the files a reviewer reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
"""How a secret value crosses the mock boundary: ``{sig key: sig value, "value": ...}``."""
SECRET_SHOWN = "[secret]"
KUBERNETES_OBJECT = "kubernetes:"
NOT_OBJECTS = ("pulumi:providers:kubernetes",)

COMPUTED: dict[str, Callable[[pulumi.runtime.MockResourceArgs], dict[str, Any]]] = {
    "aws:eks/nodeGroup:NodeGroup": lambda a: {
        "nodeGroupName": a.inputs.get("nodeGroupName", a.name),
        "status": "ACTIVE",
    },
    "aws:ec2/launchTemplate:LaunchTemplate": lambda a: {"latestVersion": 1},
}
"""Outputs the cloud would compute that the program reads back (the rest echo the inputs)."""


@dataclass(frozen=True)
class RenderedResource:
    """One resource as the program registered it: type token, logical name, resolved inputs."""

    type: str
    name: str
    inputs: dict[str, Any]
    """Secrets still wrapped (``reveal`` unwraps, ``public`` hides)."""


@dataclass(frozen=True)
class Rendered:
    """Everything one run of the program registered, and its stack outputs."""

    resources: list[RenderedResource]
    outputs: dict[str, Any]

    def objects(self) -> list[dict[str, Any]]:
        """The Kubernetes objects as manifests (secrets revealed: for local use only)."""
        return [manifest(r, reveal) for r in self.resources if is_object(r)]


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG[0]) == SECRET_SIG[1]


def _walk(value: Any, secret: Callable[[Any], Any]) -> Any:
    if _is_secret(value):
        return secret(value.get("value"))
    if isinstance(value, float) and value.is_integer():
        return int(value)  # numbers cross the mock boundary as protobuf doubles
    if isinstance(value, dict):
        return {k: _walk(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, secret) for v in value]
    return value


def reveal(value: Any) -> Any:
    """``value`` with its secrets unwrapped."""
    return _walk(value, reveal)


def _hidden(inner: Any) -> Any:
    # A secret map (a Secret's ``stringData``) keeps its keys: they name what it holds.
    if isinstance(inner, dict):
        return {key: SECRET_SHOWN for key in inner}
    return SECRET_SHOWN


def public(value: Any) -> Any:
    """``value`` with every secret shown as ``[secret]`` (a secret map's keys stay readable)."""
    return _walk(value, _hidden)


def is_object(resource: RenderedResource) -> bool:
    """A Kubernetes object (not a provider)."""
    return resource.type.startswith(KUBERNETES_OBJECT) and resource.type not in NOT_OBJECTS


def manifest(resource: RenderedResource, values: Callable[[Any], Any] = public) -> dict[str, Any]:
    """A Kubernetes object's body as ``kubectl apply`` would receive it from Pulumi."""
    body: dict[str, Any] = values(dict(resource.inputs))
    body["metadata"] = {"name": resource.name, **(body.get("metadata") or {})}
    return body


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[RenderedResource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(RenderedResource(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        computed = COMPUTED.get(args.typ)
        if computed is not None:
            outputs.update(computed(args))
        return f"{args.name}-rehearsal", outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        raise RuntimeError(f"the load-test program invoked {args.token}; the rehearsal cannot")


def render(program: Callable[[], None], *, project: str, stack: str) -> Rendered:
    """Run ``program`` under mocks in this thread; what it registered and exported."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    _sync_await(run_pulumi_func(program))
    root = get_root_resource()
    outputs: dict[str, Any] = {}
    for name, value in dict(getattr(root, "outputs", {})).items():
        outputs[name] = _sync_await(pulumi.Output.from_input(value).future())
    return Rendered(mocks.resources, outputs)
