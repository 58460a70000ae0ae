"""The real programs, as registered under mocks, pass the pack; targeted mutations fail it.

``PROGRAMS`` lists every program the pack must accept as it is (the example platform stacks and
the ephemeral load-test stack): each entry is a function that registers the program's resources
under mocks, the project it runs as and the stack config the engine would pass; a new program
is one more line there. Each mutation changes one thing a reviewer could get wrong in the
registered resources of a real program and must make exactly the expected rule(s) fire. A
synthetic load-test stack, written by hand in the engine's shapes, covers the load-test rules
independently of the program.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import pulumi
import pytest

from domain import topology
from loadtest.cloud.spec import LoadGenOptions
from loadtest.cloud.stack import program as loadtest_program
from tests.loadtest_specs import LOCK, WHEEL, spec
from tests.policy_harness import (
    Analyzer,
    EngineResource,
    check_program,
    describe,
    engine_config,
    engine_resources,
    fired,
    mandatory,
    read_config,
)
from tests.pulumi_mocks import Program, run_function, stack_config
from tests.unit.conftest import example

PLATFORM = "qwen-stress"


@dataclass(frozen=True)
class Registered:
    """A program as registered under mocks, with the project and config it runs with."""

    program: Callable[[], Program]
    project: str
    stack: str
    config: Callable[[], dict[str, Any]]


@cache
def load_test(code: str = "image", nodes: str = "new") -> Program:
    """The ephemeral load-test stack's program (``loadtest/cloud/stack.py``) under mocks."""
    # The system nodes carry two workers: a plan small enough for them when they are used.
    run = spec(
        peak_users=100 if nodes == "existing" else 400,
        code=WHEEL if code == "wheel" else None,
        loadgen=LoadGenOptions(nodes=nodes),
    )
    return run_function(loadtest_program(run, lock=LOCK), stack=run.run_id)


LOADTEST_STACK = "20260101-120000-capacity"

PROGRAMS: dict[str, Registered] = {
    "dev": Registered(lambda: example("dev"), PLATFORM, "dev", lambda: stack_config("dev")),
    "a10g": Registered(lambda: example("a10g"), PLATFORM, "a10g", lambda: stack_config("a10g")),
    "load test, image": Registered(load_test, topology.LOADTEST_PROJECT, LOADTEST_STACK, dict),
    "load test, wheel": Registered(
        lambda: load_test("wheel"), topology.LOADTEST_PROJECT, LOADTEST_STACK, dict
    ),
    "load test, system nodes": Registered(
        lambda: load_test(nodes="existing"), topology.LOADTEST_PROJECT, LOADTEST_STACK, dict
    ),
}
"""Every program the pack must pass: the example platform stacks and the load-test stack."""
PLATFORM_PROGRAMS = ("dev", "a10g")


def run(
    registered: Registered,
    program: Program | None = None,
    *,
    policy_config: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> list[Any]:
    return check_program(
        program or registered.program(),
        registered.project,
        stack=registered.stack,
        stack_config=registered.config() if config is None else config,
        policy_config=policy_config,
    )


@pytest.mark.parametrize("kind", [None, "preview", "production"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_registered_programs_pass_with_no_mandatory_violation(name: str, kind: str | None) -> None:
    violations = run(PROGRAMS[name], policy_config=read_config(kind) if kind else None)
    assert mandatory(violations) == [], describe(violations)


def test_the_example_stacks_are_actually_analysed() -> None:
    """Guards the test above: the stacks hold what the rules look at, and the pack reads it."""
    program = example("dev")
    types = {r.type for r in program.resources}
    assert {
        "aws:eks/nodeGroup:NodeGroup",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:eks/cluster:Cluster",
        "aws:kms/key:Key",
        "aws:iam/rolePolicy:RolePolicy",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        "kubernetes:helm.sh/v3:Release",
    } <= types
    provider = next(r for r in program.resources if r.type == "pulumi:providers:aws")
    assert isinstance(provider.inputs["defaultTags"], str), "default tags reach policies as JSON"


# ------------------------------------------------------------------------------------------------
# mutations


Change = Callable[[dict[str, Any]], None]


def mutate(program: Program, type_: str, name: str, change: Change) -> Program:
    """A copy of the program with one registered resource's inputs changed."""
    found = 0
    resources = []
    for resource in program.resources:
        if resource.type == type_ and resource.name == name:
            inputs = copy.deepcopy(resource.inputs)
            change(inputs)
            resources.append(replace(resource, inputs=inputs))
            found += 1
        else:
            resources.append(resource)
    assert found == 1, f"no single {type_} named {name}"
    return replace(program, resources=resources)


def without(program: Program, type_: str) -> Program:
    """A copy of the program without any resource of one type."""
    return replace(program, resources=[r for r in program.resources if r.type != type_])


def _path(inputs: dict[str, Any], *keys: str | int) -> Any:
    for key in keys:
        inputs = inputs[key]  # type: ignore[index]
    return inputs


def setting(*keys: str | int, value: Any) -> Change:
    """Set one nested input."""

    def change(inputs: dict[str, Any]) -> None:
        _path(inputs, *keys[:-1])[keys[-1]] = value

    return change


def dropping(*keys: str | int) -> Change:
    """Remove one nested input."""

    def change(inputs: dict[str, Any]) -> None:
        del _path(inputs, *keys[:-1])[keys[-1]]

    return change


def json_document(key: str, edit: Callable[[dict[str, Any]], None]) -> Change:
    """Edit a policy document held as JSON text."""

    def change(inputs: dict[str, Any]) -> None:
        document = json.loads(inputs[key])
        edit(document)
        inputs[key] = json.dumps(document)

    return change


def _default_tags_without_owner(inputs: dict[str, Any]) -> None:
    tags = json.loads(inputs["defaultTags"])
    del tags["tags"]["owner"]
    inputs["defaultTags"] = json.dumps(tags)


def _admin_statement(document: dict[str, Any]) -> None:
    document["Statement"].append({"Effect": "Allow", "Action": "*", "Resource": "*"})


def _drop_conditions(document: dict[str, Any]) -> None:
    for statement in document["Statement"]:
        statement.pop("Condition", None)


CONTAINER = ("spec", "template", "spec", "containers", 0)
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
CLUSTER = "aws:eks/cluster:Cluster"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


@dataclass(frozen=True)
class Mutation:
    """One targeted change of a registered resource, and the rules it must make fire."""

    type: str
    name: str
    change: Change
    rules: set[str]


MUTATIONS: dict[str, Mutation] = {
    "provider default tags lose owner": Mutation(
        "pulumi:providers:aws", "platform-aws", _default_tags_without_owner, {"cost-tags"}
    ),
    "GPU group on an 8-GPU p4d": Mutation(
        NODE_GROUP,
        "nodes-gpu",
        setting("instanceTypes", value=["p4d.24xlarge"]),
        {"gpu-instance-type", "gpu-budget"},
    ),
    "GPU group on a CPU AMI": Mutation(
        NODE_GROUP,
        "nodes-gpu",
        setting("amiType", value="AL2023_x86_64_STANDARD"),
        {"gpu-nvidia-ami"},
    ),
    "GPU group without its taint": Mutation(
        NODE_GROUP, "nodes-gpu", dropping("taints"), {"gpu-taint"}
    ),
    "GPU group grows to 50 nodes": Mutation(
        NODE_GROUP, "nodes-gpu", setting("scalingConfig", "maxSize", value=50.0), {"gpu-budget"}
    ),
    "GPU group without a launch template": Mutation(
        NODE_GROUP, "nodes-gpu", dropping("launchTemplate"), {"node-group-launch-template"}
    ),
    "launch template does not tag volumes": Mutation(
        LAUNCH_TEMPLATE,
        "nodes-gpu",
        setting(
            "tagSpecifications",
            value=[
                {
                    "resourceType": "instance",
                    "tags": {"owner": "o", "cost-center": "c", "project": "p", "stack": "s"},
                }
            ],
        ),
        {"launch-template-tags"},
    ),
    "launch template allows IMDSv1": Mutation(
        LAUNCH_TEMPLATE,
        "nodes-gpu",
        setting("metadataOptions", "httpTokens", value="optional"),
        {"launch-template-imdsv2"},
    ),
    "launch template with an unencrypted volume": Mutation(
        LAUNCH_TEMPLATE,
        "nodes-system",
        setting("blockDeviceMappings", 0, "ebs", "encrypted", value="false"),
        {"launch-template-encrypted-volumes"},
    ),
    "EKS endpoint open to the internet": Mutation(
        CLUSTER,
        "cluster-eks",
        setting("vpcConfig", "publicAccessCidrs", value=["0.0.0.0/0"]),
        {"eks-public-endpoint"},
    ),
    "EKS endpoint CIDRs left unset": Mutation(
        CLUSTER, "cluster-eks", dropping("vpcConfig", "publicAccessCidrs"), {"eks-public-endpoint"}
    ),
    "EKS secrets not encrypted": Mutation(
        CLUSTER, "cluster-eks", dropping("encryptionConfig"), {"eks-secrets-encryption"}
    ),
    "KMS key does not rotate": Mutation(
        "aws:kms/key:Key",
        "cluster-secrets",
        setting("enableKeyRotation", value=False),
        {"kms-key-rotation"},
    ),
    "role policy allows * on *": Mutation(
        "aws:iam/rolePolicy:RolePolicy",
        "cluster-secrets-key",
        json_document("policy", _admin_statement),
        {"iam-no-admin"},
    ),
    "autoscaler may scale any group": Mutation(
        "aws:iam/rolePolicy:RolePolicy",
        "addons-cluster-autoscaler",
        json_document("policy", _drop_conditions),
        {"iam-autoscaler-condition"},
    ),
    "default security group open to the internet": Mutation(
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "network-default-sg",
        setting(
            "ingress",
            value=[
                {"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "cidrBlocks": ["0.0.0.0/0"]}
            ],
        ),
        {"security-group-ingress"},
    ),
    "vLLM image on :latest": Mutation(
        DEPLOYMENT,
        "qwen-deployment",
        setting(*CONTAINER, "image", value="vllm/vllm-openai:latest"),
        {"k8s-image-pinned"},
    ),
    "vLLM requests 2 GPUs but limits 1": Mutation(
        DEPLOYMENT,
        "qwen-deployment",
        setting(*CONTAINER, "resources", "requests", topology.GPU_RESOURCE, value="2"),
        {"k8s-gpu-requests-equal-limits"},
    ),
    "vLLM requests no CPU": Mutation(
        DEPLOYMENT,
        "qwen-deployment",
        dropping(*CONTAINER, "resources", "requests", "cpu"),
        {"k8s-resource-requests"},
    ),
    "ScaledObject asks for more GPU replicas than the nodes hold": Mutation(
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        "qwen-scaled-object",
        setting("spec", "maxReplicaCount", value=6.0),
        {"keda-max-replicas-fit"},
    ),
}


@pytest.mark.parametrize("name", PLATFORM_PROGRAMS)
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mutation_fails_exactly_its_rule(name: str, mutation: str) -> None:
    registered, m = PROGRAMS[name], MUTATIONS[mutation]
    violations = run(registered, mutate(registered.program(), m.type, m.name, m.change))
    assert fired(violations) == m.rules, describe(violations)


def _run_tags_without_run_id(inputs: dict[str, Any]) -> None:
    tags = json.loads(inputs["defaultTags"])
    del tags["tags"][topology.RUN_ID_TAG]
    inputs["defaultTags"] = json.dumps(tags)


LOAD_TEST_PROGRAM_MUTATIONS: dict[str, Mutation] = {
    "master Job retries": Mutation(
        "kubernetes:batch/v1:Job",
        "loadtest-job-locust-master",
        setting("spec", "backoffLimit", value=1.0),
        {"loadtest-job-limits"},
    ),
    "worker Job has no deadline": Mutation(
        "kubernetes:batch/v1:Job",
        "loadtest-job-locust-worker",
        dropping("spec", "activeDeadlineSeconds"),
        {"loadtest-job-limits"},
    ),
    "namespace without its expiry": Mutation(
        "kubernetes:core/v1:Namespace",
        "loadtest-namespace",
        dropping("metadata", "annotations"),
        {"loadtest-namespace-expiry"},
    ),
    "master behind a LoadBalancer": Mutation(
        "kubernetes:core/v1:Service",
        "loadtest-service-locust-master",
        setting("spec", "type", value="LoadBalancer"),
        {"loadtest-no-load-balancer"},
    ),
    "load generators without their taint": Mutation(
        NODE_GROUP, "loadtest-nodes", dropping("taints"), {"loadgen-taint"}
    ),
    "provider default tags without the run id": Mutation(
        "pulumi:providers:aws", "loadtest-aws", _run_tags_without_run_id, {"cost-tags"}
    ),
    "launch template tags nothing it launches": Mutation(
        LAUNCH_TEMPLATE, "loadtest-nodes", dropping("tagSpecifications"), {"launch-template-tags"}
    ),
}


@pytest.mark.parametrize("mutation", sorted(LOAD_TEST_PROGRAM_MUTATIONS))
def test_each_mutation_of_the_load_test_program_fails_exactly_its_rule(mutation: str) -> None:
    registered, m = PROGRAMS["load test, image"], LOAD_TEST_PROGRAM_MUTATIONS[mutation]
    violations = run(registered, mutate(registered.program(), m.type, m.name, m.change))
    assert fired(violations) == m.rules, describe(violations)


def test_a_protected_resource_in_the_load_test_program_fails_the_no_protect_rule() -> None:
    registered = PROGRAMS["load test, image"]
    program = registered.program()
    key = ("kubernetes:core/v1:Namespace", "loadtest-namespace")
    options = {**program.options, key: pulumi.ResourceOptions(protect=True)}
    violations = run(registered, replace(program, options=options))
    assert fired(violations) == {"loadtest-no-protect"}, describe(violations)


def test_a_missing_network_policy_fails_the_stack_rule() -> None:
    registered = PROGRAMS["dev"]
    program = without(registered.program(), "kubernetes:networking.k8s.io/v1:NetworkPolicy")
    violations = run(registered, program)
    assert fired(violations) == {"k8s-namespace-network-policy"}, describe(violations)


def test_a_stack_budget_below_the_gpu_nodes_cost_fails_the_budget_rule() -> None:
    registered = PROGRAMS["dev"]  # 5 x g4dn.xlarge = $2.63/h
    config = {**registered.config(), "qwen-stress:budget": {"maxHourlyUsd": 2}}
    violations = run(registered, config=config)
    assert fired(violations) == {"gpu-budget"}, describe(violations)


def test_the_preview_config_refuses_an_allowed_by_default_multi_gpu_type() -> None:
    registered = PROGRAMS["a10g"]
    program = mutate(
        registered.program(),
        NODE_GROUP,
        "nodes-gpu",
        setting("scalingConfig", "maxSize", value=1.0),
    )
    program = mutate(
        program, NODE_GROUP, "nodes-gpu", setting("instanceTypes", value=["g5.12xlarge"])
    )
    assert fired(run(registered, program)) == set()
    preview = run(registered, program, policy_config=read_config("preview"))
    assert fired(preview) == {"gpu-instance-type"}, describe(preview)


def test_a_floating_helm_chart_is_advised_against_without_stopping_a_preview() -> None:
    registered = PROGRAMS["dev"]
    program = mutate(
        registered.program(),
        "kubernetes:helm.sh/v3:Release",
        "addons-keda",
        setting("version", value=""),
    )
    violations = run(registered, program)
    assert mandatory(violations) == []
    assert fired(violations, "advisory") == {"helm-chart-version"}
    production = run(registered, program, policy_config=read_config("production"))
    assert fired(production) == {"helm-chart-version"}


def test_engine_config_passes_structured_stack_settings_as_json_text() -> None:
    flat = engine_config({"qwen-stress:budget": {"maxHourlyUsd": 4}, "aws:region": "us-east-1"})
    assert flat == {"qwen-stress:budget": '{"maxHourlyUsd": 4}', "aws:region": "us-east-1"}


def test_engine_resources_carry_the_explicit_provider_s_properties() -> None:
    program = example("dev")
    resources = engine_resources(program, PLATFORM, "dev", engine_config(stack_config("dev")))
    group = next(r for r in resources if r.name == "nodes-gpu" and r.type == NODE_GROUP)
    assert isinstance(group.provider, EngineResource)
    assert group.provider.name == "platform-aws"
    assert "owner" in group.provider.props["defaultTags"]


# ------------------------------------------------------------------------------------------------
# a load-test stack, written in the shapes the load-test program registers


LOADTEST = topology.LOADTEST_PROJECT
RUN = "run-20261130-0712"
RUN_TAGS = {
    "owner": "platform-team",
    "cost-center": "llm",
    "project": LOADTEST,
    "stack": RUN,
    topology.RUN_ID_TAG: RUN,
}
NAMESPACE = f"lt-{RUN}"


def _loadtest_stack() -> list[EngineResource]:
    aws_provider = EngineResource(
        "pulumi:providers:aws",
        "loadtest-aws",
        {"region": "us-east-1", "defaultTags": json.dumps({"tags": RUN_TAGS})},
        LOADTEST,
        RUN,
    )
    k8s_provider = EngineResource(
        "pulumi:providers:kubernetes", "loadtest-k8s", {"kubeconfig": "{}"}, LOADTEST, RUN
    )

    def aws(type_: str, name: str, props: dict[str, Any]) -> EngineResource:
        return EngineResource(type_, name, props, LOADTEST, RUN, aws_provider)

    def k8s(type_: str, name: str, props: dict[str, Any]) -> EngineResource:
        return EngineResource(type_, name, props, LOADTEST, RUN, k8s_provider)

    locust = {
        "name": "locust",
        "image": "locustio/locust:2.43.1",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
    }

    def job(role: str, parallelism: float) -> EngineResource:
        return k8s(
            "kubernetes:batch/v1:Job",
            f"loadtest-job-locust-{role}",
            {
                "metadata": {"name": f"locust-{role}", "namespace": NAMESPACE},
                "spec": {
                    "parallelism": parallelism,
                    "backoffLimit": 0.0,
                    "activeDeadlineSeconds": 10800.0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "nodeSelector": {topology.ROLE_LABEL: topology.LOADGEN_ROLE},
                            "containers": [{**locust, "args": [f"--{role}"]}],
                        }
                    },
                },
            },
        )

    return [
        aws_provider,
        k8s_provider,
        aws(
            "aws:ec2/launchTemplate:LaunchTemplate",
            "loadtest-nodes",
            {
                "blockDeviceMappings": [
                    {"deviceName": "/dev/xvda", "ebs": {"volumeSize": 50.0, "encrypted": "true"}}
                ],
                "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required"},
                "tagSpecifications": [
                    {"resourceType": kind, "tags": RUN_TAGS}
                    for kind in ("instance", "volume", "network-interface")
                ],
            },
        ),
        aws(
            "aws:eks/nodeGroup:NodeGroup",
            "loadtest-nodes",
            {
                "clusterName": "qwen-dev-dev",
                "amiType": "AL2023_x86_64_STANDARD",
                "instanceTypes": ["c6i.2xlarge"],
                "capacityType": "SPOT",
                "scalingConfig": {"minSize": 2.0, "maxSize": 2.0, "desiredSize": 2.0},
                "launchTemplate": {"id": "lt-0abc", "version": "1"},
                "labels": {topology.ROLE_LABEL: topology.LOADGEN_ROLE},
                "taints": [
                    {"key": topology.LOADGEN_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}
                ],
            },
        ),
        k8s(
            "kubernetes:core/v1:Namespace",
            "loadtest-namespace",
            {
                "metadata": {
                    "name": NAMESPACE,
                    "labels": {topology.ROLE_LABEL: topology.LOADTEST_ROLE},
                    "annotations": {topology.EXPIRES_ANNOTATION: "2026-11-30T11:12:00Z"},
                }
            },
        ),
        job("master", 1.0),
        job("worker", 4.0),
        k8s(
            "kubernetes:core/v1:Service",
            "loadtest-service-locust-master",
            {
                "metadata": {"name": "locust-master", "namespace": NAMESPACE},
                "spec": {"type": "ClusterIP", "ports": [{"port": 5557.0}, {"port": 8089.0}]},
            },
        ),
        k8s(
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "loadtest-networkpolicy-locust",
            {
                "metadata": {"name": "locust", "namespace": NAMESPACE},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            },
        ),
    ]


def _edit(
    resources: list[EngineResource], type_: str, name: str, change: Change
) -> list[EngineResource]:
    edited = []
    for resource in resources:
        if resource.type == type_ and resource.name == name:
            props = copy.deepcopy(dict(resource.props))
            change(props)
            edited.append(replace(resource, props=props))
        else:
            edited.append(resource)
    return edited


def test_a_well_formed_load_test_stack_passes() -> None:
    violations = Analyzer().check(_loadtest_stack())
    assert violations == [], describe(violations)


JOB = "kubernetes:batch/v1:Job"
UNTAGGED_RUN = [
    {"resourceType": kind, "tags": {t: v for t, v in RUN_TAGS.items() if t != "run-id"}}
    for kind in ("instance", "volume")
]
LOADTEST_MUTATIONS: dict[str, Mutation] = {
    "master Job retries": Mutation(
        JOB,
        "loadtest-job-locust-master",
        setting("spec", "backoffLimit", value=3.0),
        {"loadtest-job-limits"},
    ),
    "worker Job has no deadline": Mutation(
        JOB,
        "loadtest-job-locust-worker",
        dropping("spec", "activeDeadlineSeconds"),
        {"loadtest-job-limits"},
    ),
    "namespace has no expiry": Mutation(
        "kubernetes:core/v1:Namespace",
        "loadtest-namespace",
        dropping("metadata", "annotations"),
        {"loadtest-namespace-expiry"},
    ),
    "master exposed by a LoadBalancer": Mutation(
        "kubernetes:core/v1:Service",
        "loadtest-service-locust-master",
        setting("spec", "type", value="LoadBalancer"),
        {"loadtest-no-load-balancer"},
    ),
    "no NetworkPolicy for the Locust pods": Mutation(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "loadtest-networkpolicy-locust",
        setting("metadata", "namespace", value="elsewhere"),
        {"k8s-namespace-network-policy"},
    ),
    "launch template tags lack the run id": Mutation(
        LAUNCH_TEMPLATE,
        "loadtest-nodes",
        setting("tagSpecifications", value=UNTAGGED_RUN),
        {"launch-template-tags"},
    ),
    "load generators without their taint": Mutation(
        NODE_GROUP, "loadtest-nodes", dropping("taints"), {"loadgen-taint"}
    ),
    "load generators on demand": Mutation(
        NODE_GROUP, "loadtest-nodes", setting("capacityType", value="ON_DEMAND"), set()
    ),
}


@pytest.mark.parametrize("mutation", sorted(LOADTEST_MUTATIONS))
def test_each_load_test_mutation_fails_exactly_its_rule(mutation: str) -> None:
    m = LOADTEST_MUTATIONS[mutation]
    violations = Analyzer().check(_edit(_loadtest_stack(), m.type, m.name, m.change))
    assert fired(violations) == m.rules, describe(violations)


def test_on_demand_load_generators_are_advised_to_use_spot() -> None:
    m = LOADTEST_MUTATIONS["load generators on demand"]
    violations = Analyzer().check(_edit(_loadtest_stack(), m.type, m.name, m.change))
    assert fired(violations, "advisory") == {"loadgen-spot"}


def test_protected_or_run_id_less_load_test_resources_are_refused() -> None:
    resources = _loadtest_stack()
    protected = [replace(r, protect=True) if r.type == JOB else r for r in resources]
    assert fired(Analyzer().check(protected)) == {"loadtest-no-protect"}
    provider = resources[0]
    tags = {**RUN_TAGS, topology.RUN_ID_TAG: ""}
    untagged = replace(
        provider, props={**provider.props, "defaultTags": json.dumps({"tags": tags})}
    )
    rebound = [replace(r, provider=untagged) if r.provider == provider else r for r in resources]
    violations = Analyzer().check(rebound)
    assert fired(violations) == {"cost-tags"}, describe(violations)
    assert len(violations) == 2, "the launch template and the node group take tags"
