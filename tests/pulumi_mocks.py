"""Run the real ``__main__.py`` under ``pulumi.runtime.set_mocks`` and record what it registers.

No Pulumi CLI and no cloud: every resource the program declares is captured with its resolved
inputs, every stack output with its value and secrecy, so tests assert what a reviewer would.
"""

from __future__ import annotations

import asyncio
import json
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "qwen-stress"
ACCOUNT_ID = "123456789012"

# Outputs the cloud would compute, by resource type; inputs are echoed back as outputs too.
ComputedOutputs = Callable[[pulumi.runtime.MockResourceArgs], dict[str, Any]]


def _role(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    name = f"{args.name}-0a1b2c3"  # AWS autonaming appends a random suffix
    return {"name": name, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"}


def _node_group(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    name = f"{args.name}-20261128"
    return {
        "nodeGroupName": name,
        "arn": f"arn:aws:eks:us-east-1:{ACCOUNT_ID}:nodegroup/{name}",
        "resources": [{"autoscalingGroups": [{"name": f"eks-{name}-asg"}]}],
        "status": "ACTIVE",
    }


COMPUTED_OUTPUTS: dict[str, ComputedOutputs] = {
    "aws:eks/cluster:Cluster": lambda args: {
        "endpoint": f"https://{args.inputs['name']}.gr7.us-east-1.eks.amazonaws.com",
        "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"},
        "arn": f"arn:aws:eks:us-east-1:{ACCOUNT_ID}:cluster/{args.inputs['name']}",
        "status": "ACTIVE",
    },
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:iam/role:Role": _role,
    "aws:ec2/launchTemplate:LaunchTemplate": lambda args: {
        "latestVersion": 1,
        "arn": f"arn:aws:ec2:us-east-1:{ACCOUNT_ID}:launch-template/lt-{args.name}",
    },
    "aws:kms/key:Key": lambda args: {
        "arn": f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/{args.name}",
        "keyId": args.name,
    },
    # A fixed stand-in of the requested length: tests can see it is used, never a real secret.
    "random:index/randomPassword:RandomPassword": lambda args: {
        "result": "m" * int(args.inputs.get("length", 16))
    },
}


def _session_context(args: Mapping[str, Any]) -> dict[str, Any]:
    """What AWS answers: an assumed-role session ARN maps to the IAM role ARN behind it.

    The session ARN drops the role's path; the provider looks the role up (iam:GetRole) to
    restore it, and EKS refuses an access entry for an SSO role without it. IAM Identity
    Center roles live under ``aws-reserved/sso.amazonaws.com/``.
    """
    arn = str(args["arn"])
    issuer = arn
    if ":assumed-role/" in arn:
        account = arn.split(":")[4]
        role = arn.split(":assumed-role/")[1].split("/", maxsplit=1)[0]
        path = "aws-reserved/sso.amazonaws.com/" if role.startswith("AWSReservedSSO_") else ""
        issuer = f"arn:aws:iam::{account}:role/{path}{role}"
    return {"arn": arn, "issuerArn": issuer, "id": arn, "issuerId": "", "issuerName": ""}


def offerings(args: Mapping[str, Any], zones: list[str]) -> dict[str, Any]:
    """What EC2 answers for instance-type offerings: one (type, zone) row per pair offered."""
    (types,) = [f["values"] for f in args["filters"] if f["name"] == "instance-type"]
    rows = [(t, z) for t in types for z in zones]
    return {
        "instanceTypes": [t for t, _ in rows],
        "locations": [z for _, z in rows],
        "locationTypes": ["availability-zone"] * len(rows),
        "id": "offerings",
    }


CallResult = Callable[[Mapping[str, Any]], dict[str, Any]]
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
"""The zones the region mock has, each offering every instance type."""

# Results of provider functions (invokes), by token.
CALL_RESULTS: dict[str, CallResult] = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": lambda _args: {
        "names": ZONES,
        "zoneIds": ["use1-az1", "use1-az2", "use1-az4", "use1-az6"],
    },
    # Every requested type in every zone the getAvailabilityZones mock lists.
    "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": lambda args: offerings(
        args, ZONES
    ),
    "aws:index/getCallerIdentity:getCallerIdentity": lambda _args: {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/deployer",
        "userId": "AIDAEXAMPLE",
        "id": ACCOUNT_ID,
    },
    "aws:index/getPartition:getPartition": lambda _args: {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "id": "aws",
    },
    "aws:index/getRegion:getRegion": lambda _args: {"name": "us-east-1", "region": "us-east-1"},
    "aws:iam/getSessionContext:getSessionContext": _session_context,
    "aws:eks/getAddonVersion:getAddonVersion": lambda args: {
        "addonName": args["addonName"],
        "kubernetesVersion": args["kubernetesVersion"],
        # Encodes what was asked, so a test can see the Kubernetes version reached the invoke.
        "version": f"{args['addonName']}-for-{args['kubernetesVersion']}-eksbuild.1",
        "id": args["addonName"],
    },
}


@dataclass(frozen=True)
class Resource:
    """One registered resource: its type token, logical name and resolved inputs."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


@dataclass
class Program:
    """Everything one run of the program registered."""

    resources: list[Resource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    calls: list[str] = field(default_factory=list)
    options: dict[tuple[str, str], pulumi.ResourceOptions] = field(default_factory=dict)
    """Resource options by (type, name): what the mocks' inputs cannot show."""

    def depends_on(self, resource: Resource) -> set[str]:
        """Names of the resources one resource explicitly depends on."""
        opts = self.options.get((resource.type, resource.name))
        deps = (opts.depends_on if opts else None) or []
        return {str(getattr(d, "_name", d)) for d in deps}  # type: ignore[union-attr]

    def waits_for(self, resource: Resource) -> set[str]:
        """Names of everything a resource waits for through chains of explicit dependencies.

        Pulumi orders creation along these chains, and deletion in reverse.
        """
        seen: set[str] = set()
        todo = list(self.depends_on(resource))
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                # Names are unique per type only (a node group and its launch template share one).
                for r in self.resources:
                    if r.name == name:
                        todo += self.depends_on(r)
        return seen

    def of_type(self, type_token: str) -> list[Resource]:
        """Every resource of one type (``aws:eks/nodeGroup:NodeGroup``)."""
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name_contains: str = "") -> Resource:
        """The single resource of a type whose name contains a fragment; fails otherwise."""
        found = [r for r in self.of_type(type_token) if name_contains in r.name]
        names = [r.name for r in self.of_type(type_token)]
        assert len(found) == 1, f"expected one {type_token} matching {name_contains!r}: {names}"
        return found[0]


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.calls: list[str] = []
        self.options: dict[tuple[str, str], pulumi.ResourceOptions] = {}

    def record_options(
        self, args: pulumi.ResourceTransformationArgs
    ) -> pulumi.ResourceTransformationResult | None:
        """A stack transformation that keeps each resource's options and changes nothing."""
        self.options[(args.type_, args.name)] = args.opts
        return None

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Resource(args.typ, args.name, dict(args.inputs), args.provider))
        outputs = dict(args.inputs)
        computed = COMPUTED_OUTPUTS.get(args.typ)
        if computed is not None:
            outputs.update(computed(args))
        return f"{args.name}-id", outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append(args.token)
        result = CALL_RESULTS.get(args.token)
        if result is None:
            raise AssertionError(f"the program invoked {args.token}, which the mocks do not know")
        # The mock monitor iterates the failures list, so "no failures" is [] (None breaks it).
        return result(args.args), []


def stack_config(stack: str) -> dict[str, Any]:
    """The ``config:`` map of ``Pulumi.<stack>.yaml``."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return dict(document.get("config") or {})


def example_stacks() -> list[str]:
    """Every example stack shipped in the repository."""
    return sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))


def _ensure_event_loop() -> None:
    """The new root stack needs a current event loop, which an earlier ``asyncio.run()`` unsets."""
    policy = asyncio.get_event_loop_policy()
    try:
        loop: asyncio.AbstractEventLoop | None = policy.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        policy.set_event_loop(policy.new_event_loop())


def _run(
    body: Callable[[], None],
    config: Mapping[str, str],
    *,
    stack: str,
    preview: bool,
    secret_keys: list[str] | None = None,
) -> Program:
    """Run ``body`` as the Pulumi program of ``stack`` under fresh mocks; return what it did."""
    mocks = _Mocks()
    # A fresh root stack: set_mocks keeps the previous run's, and with it that run's exports
    # and the stack transformation below, which would then record into the previous Program.
    pulumi.runtime.reset_options(project=PROJECT, stack=stack, preview=preview)
    _ensure_event_loop()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(dict(config), secret_keys=secret_keys)

    def program() -> None:
        pulumi.runtime.register_stack_transformation(mocks.record_options)
        body()

    try:
        _sync_await(run_pulumi_func(program))
    except Exception as err:
        # Tests of refused configurations check that nothing was registered before the error.
        err.add_note(f"resources registered before the error: {len(mocks.resources)}")
        raise
    return _collect(mocks)


def run_function(
    body: Callable[[], None], config: Mapping[str, str] | None = None, stack: str = "test"
) -> Program:
    """Run ``body`` as if it were a Pulumi program (to test one component on its own)."""
    return _run(body, config or {}, stack=stack, preview=False)


def _collect(mocks: _Mocks) -> Program:
    root = get_root_resource()
    raw_outputs: dict[str, Any] = dict(getattr(root, "outputs", {}))
    outputs: dict[str, Any] = {}
    secret: set[str] = set()
    for name, value in raw_outputs.items():
        out = pulumi.Output.from_input(value)
        outputs[name] = _sync_await(out.future())
        if _sync_await(out.is_secret()):
            secret.add(name)
    return Program(mocks.resources, outputs, secret, mocks.calls, mocks.options)


def run_program(
    stack: str = "dev",
    overrides: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    preview: bool = True,
) -> Program:
    """Run ``__main__.py`` with a stack file's config, plus overrides, under mocks.

    ``preview`` defaults to what ``pulumi preview`` (and a CI preview stack) runs; pass False
    for what ``pulumi up`` runs. ``overrides`` replace whole keys
    (``{"qwen-stress:gpu": {...}}``); a value of ``None`` removes the key. ``secrets`` are set
    as secret config values, as ``pulumi config set --secret`` would.
    """
    values = stack_config(stack)
    for key, value in (overrides or {}).items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    flat = {
        k: json.dumps(v) if isinstance(v, dict | list) else str(v)
        for k, v in values.items()
        if not (isinstance(v, dict) and "secure" in v)
    }
    flat.update(secrets or {})

    def main() -> None:
        runpy.run_path(str(ROOT / "__main__.py"))

    return _run(main, flat, stack=stack, preview=preview, secret_keys=list(secrets or {}))
