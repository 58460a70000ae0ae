"""Each rule of the policy pack, with passing and failing resources in the engine's shapes.

Resources are written as the engine sends them: camelCase properties, numbers as floats, the
provider's own properties beside the resource's (the AWS provider's ``defaultTags`` as JSON text
or as an object), secrets in their signature wrapper, unknown preview values as sentinels.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from domain import topology
from tests.policy_harness import (
    Analyzer,
    EngineResource,
    Violation,
    describe,
    fired,
    mandatory,
)

PLATFORM = "qwen-stress"
LOADTEST = topology.LOADTEST_PROJECT
TAGS = {"owner": "platform-team", "cost-center": "llm", "project": PLATFORM, "stack": "dev"}
SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def aws_provider(tags: Any = None, *, as_json: bool = True) -> EngineResource:
    """The AWS provider as the engine describes it; defaultTags as JSON text or as an object."""
    default_tags = {"tags": TAGS if tags is None else tags}
    return EngineResource(
        "pulumi:providers:aws",
        "platform-aws",
        {
            "region": "us-east-1",
            "defaultTags": json.dumps(default_tags) if as_json else default_tags,
        },
        stack="dev",
    )


def aws(
    type_: str,
    props: dict[str, Any],
    *,
    name: str = "r",
    provider: EngineResource | None = None,
    project: str = PLATFORM,
    protect: bool = False,
) -> EngineResource:
    return EngineResource(
        type_, name, props, project, "dev", provider or aws_provider(), protect=protect
    )


def k8s(
    type_: str, props: dict[str, Any], *, name: str = "obj", project: str = PLATFORM
) -> EngineResource:
    provider = EngineResource(
        "pulumi:providers:kubernetes", "k8s", {"kubeconfig": {**SECRET_SIG, "value": "{}"}}
    )
    return EngineResource(type_, name, props, project, "dev", provider)


def check(
    resource: EngineResource,
    *,
    policy_config: dict[str, Any] | None = None,
    stack_config: dict[str, str] | None = None,
) -> list[Violation]:
    return Analyzer(policy_config, stack_config or {}).analyze(resource)


def rules(resource: EngineResource, **kwargs: Any) -> set[str]:
    """The mandatory rules a resource breaks."""
    return fired(check(resource, **kwargs))


# ------------------------------------------------------------------------------------------------
# cost-tags


ROLE = "aws:iam/role:Role"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": []})


def test_provider_default_tags_count_whether_sent_as_json_text_or_as_an_object() -> None:
    for as_json in (True, False):
        role = aws(ROLE, {"assumeRolePolicy": TRUST}, provider=aws_provider(as_json=as_json))
        assert rules(role) == set()


def test_a_taggable_resource_without_cost_tags_is_refused_naming_the_missing_keys() -> None:
    provider = aws_provider({"owner": "platform-team", "project": PLATFORM})
    violations = check(aws(ROLE, {"assumeRolePolicy": TRUST}, name="node-role", provider=provider))
    assert fired(violations) == {"cost-tags"}
    (message,) = [v.message for v in violations]
    assert "node-role" in message and "cost-center, stack" in message


def test_resource_tags_complete_what_the_provider_lacks_and_empty_values_do_not_count() -> None:
    provider = aws_provider({"owner": "platform-team", "project": PLATFORM})
    own = {"cost-center": "llm", "stack": "dev"}
    assert rules(aws(ROLE, {"tags": own}, provider=provider)) == set()
    assert rules(aws(ROLE, {"tags": {**own, "stack": " "}}, provider=provider)) == {"cost-tags"}


def test_secret_tag_values_are_read_through_their_wrapper() -> None:
    provider = aws_provider({})
    tags = {**SECRET_SIG, "value": TAGS}
    assert rules(aws(ROLE, {"tags": tags}, provider=provider)) == set()


def test_auto_scaling_group_tags_are_a_list_of_key_value_pairs() -> None:
    group = "aws:autoscaling/group:Group"
    listed = [{"key": k, "value": v, "propagateAtLaunch": True} for k, v in TAGS.items()]
    assert rules(aws(group, {"tags": listed}, provider=aws_provider({}))) == set()
    assert rules(aws(group, {"tags": listed[:2]}, provider=aws_provider({}))) == {"cost-tags"}


def test_resources_that_take_no_tags_are_not_asked_for_them() -> None:
    bare = aws_provider({})
    for type_ in (
        "aws:iam/rolePolicy:RolePolicy",
        "aws:autoscaling/tag:Tag",
        "aws:kms/alias:Alias",
    ):
        assert rules(aws(type_, {}, provider=bare)) == set(), type_


def test_load_test_stacks_also_need_the_run_id_tag() -> None:
    role = aws(ROLE, {"assumeRolePolicy": TRUST}, project=LOADTEST)
    assert rules(role) == {"cost-tags"}
    tagged = aws(
        ROLE,
        {"assumeRolePolicy": TRUST},
        project=LOADTEST,
        provider=aws_provider({**TAGS, topology.RUN_ID_TAG: "run-1"}),
    )
    assert rules(tagged) == set()


# ------------------------------------------------------------------------------------------------
# GPU node groups


NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GPU_GROUP: dict[str, Any] = {
    "clusterName": "qwen-dev-dev",
    "nodeRoleArn": "arn:aws:iam::123456789012:role/nodes",
    "subnetIds": ["subnet-1", "subnet-2"],
    "amiType": "AL2023_x86_64_NVIDIA",
    "instanceTypes": ["g4dn.xlarge"],
    "capacityType": "ON_DEMAND",
    "scalingConfig": {"minSize": 0.0, "maxSize": 4.0, "desiredSize": 0.0},
    "labels": {topology.ROLE_LABEL: topology.GPU_ROLE},
    "taints": [{"key": topology.GPU_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"}],
    "launchTemplate": {"id": "lt-0123456789", "version": "1"},
}


def gpu_group(**changes: Any) -> EngineResource:
    props = copy.deepcopy(GPU_GROUP)
    for key, value in changes.items():
        if value is None:
            props.pop(key)
        else:
            props[key] = value
    return aws(NODE_GROUP, props, name="nodes-gpu")


def test_a_well_formed_gpu_node_group_passes() -> None:
    assert check(gpu_group()) == []


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"instanceTypes": ["g4dn.metal"]}, "gpu-instance-type"),
        ({"amiType": "AL2023_x86_64_STANDARD"}, "gpu-nvidia-ami"),
        ({"taints": None}, "gpu-taint"),
        (
            {
                "taints": [
                    {"key": topology.GPU_TAINT_KEY, "value": "true", "effect": "PREFER_NO_SCHEDULE"}
                ]
            },
            "gpu-taint",
        ),
        ({"scalingConfig": {"minSize": 0.0, "maxSize": 60.0, "desiredSize": 0.0}}, "gpu-budget"),
        ({"launchTemplate": None}, "node-group-launch-template"),
    ],
)
def test_each_gpu_node_group_rule_refuses_its_fault(changes: dict[str, Any], rule: str) -> None:
    assert rule in rules(gpu_group(**changes))


def test_a_gpu_group_stays_recognised_when_it_loses_one_gpu_trait() -> None:
    # Without the label, taint and NVIDIA AMI, the GPU instance type alone identifies it.
    stripped = gpu_group(labels={}, taints=None, amiType="AL2023_x86_64_STANDARD")
    assert {"gpu-taint", "gpu-nvidia-ami"} <= rules(stripped)


def test_cpu_node_groups_are_not_judged_by_the_gpu_rules() -> None:
    system = gpu_group(
        instanceTypes=["c6i.2xlarge"],
        amiType="AL2023_x86_64_STANDARD",
        labels={topology.ROLE_LABEL: topology.SYSTEM_ROLE},
        taints=None,
        scalingConfig={"minSize": 1.0, "maxSize": 200.0, "desiredSize": 1.0},
    )
    assert check(system) == []


def test_the_instance_allow_list_comes_from_the_policy_config() -> None:
    narrowed = {"gpu-instance-type": {"allowedInstanceTypes": ["g5.xlarge"]}}
    violations = check(gpu_group(), policy_config=narrowed)
    assert fired(violations) == {"gpu-instance-type"}
    assert "g4dn.xlarge is not allowed" in violations[0].message
    assert "g5.xlarge" in violations[0].message


def test_the_budget_is_the_stack_s_own_when_it_is_below_the_policy_ceiling() -> None:
    group = gpu_group()  # 4 x g4dn.xlarge on demand = $2.104/h
    assert rules(group, stack_config={"qwen-stress:budget": '{"maxHourlyUsd": 3}'}) == set()
    violations = check(group, stack_config={"qwen-stress:budget": '{"maxHourlyUsd": 2}'})
    assert fired(violations) == {"gpu-budget"}
    message = violations[0].message
    assert "$2.10/h" in message and "$2.00/h" in message
    assert "qwen-stress:budget.maxHourlyUsd" in message and "lower maxSize to 3" in message


def test_a_stack_budget_above_the_policy_ceiling_does_not_lift_it() -> None:
    group = gpu_group(scalingConfig={"minSize": 0.0, "maxSize": 10.0, "desiredSize": 0.0})
    lavish = {"qwen-stress:budget": '{"maxHourlyUsd": 1000}'}
    ceiling = {"gpu-budget": {"maxHourlyUsd": 5}}
    violations = check(group, policy_config=ceiling, stack_config=lavish)
    assert fired(violations) == {"gpu-budget"}
    assert "gpu-budget.maxHourlyUsd" in violations[0].message


def test_spot_capacity_is_priced_at_its_worst_observed_price() -> None:
    # 20 x g4dn.xlarge: $10.52/h on demand, at most 20 x $0.2 (spot high) ... within $10.
    many = {"minSize": 0.0, "maxSize": 20.0, "desiredSize": 0.0}
    budget = {"gpu-budget": {"maxHourlyUsd": 10}}
    assert "gpu-budget" in rules(gpu_group(scalingConfig=many), policy_config=budget)
    assert rules(gpu_group(scalingConfig=many, capacityType="SPOT"), policy_config=budget) == set()


def test_an_uncatalogued_gpu_type_cannot_be_priced_and_is_refused() -> None:
    allow = {"gpu-instance-type": {"allowedInstanceTypes": ["g7.xlarge"]}}
    violations = check(
        gpu_group(instanceTypes=["g7.xlarge"], labels={topology.ROLE_LABEL: "gpu"}),
        policy_config=allow,
    )
    assert fired(violations) == {"gpu-budget"}
    assert "no price for g7.xlarge" in violations[0].message


# ------------------------------------------------------------------------------------------------
# load generators


LOADGEN_GROUP: dict[str, Any] = {
    **GPU_GROUP,
    "amiType": "AL2023_x86_64_STANDARD",
    "instanceTypes": ["c6i.2xlarge"],
    "capacityType": "SPOT",
    "labels": {topology.ROLE_LABEL: topology.LOADGEN_ROLE},
    "taints": [
        {"key": topology.LOADGEN_TAINT_KEY, "value": "true", "effect": "NO_SCHEDULE"},
    ],
}


def test_load_generator_groups_are_tainted_and_advised_to_run_on_spot() -> None:
    assert check(aws(NODE_GROUP, LOADGEN_GROUP, project=LOADTEST, provider=run_provider())) == []
    untainted = aws(NODE_GROUP, {**LOADGEN_GROUP, "taints": []}, provider=run_provider())
    assert rules(untainted) == {"loadgen-taint"}
    on_demand = check(aws(NODE_GROUP, {**LOADGEN_GROUP, "capacityType": "ON_DEMAND"}))
    assert mandatory(on_demand) == []
    assert fired(on_demand, "advisory") == {"loadgen-spot"}


def run_provider() -> EngineResource:
    return aws_provider({**TAGS, topology.RUN_ID_TAG: "run-1"})


# ------------------------------------------------------------------------------------------------
# launch templates


LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def template(**changes: Any) -> EngineResource:
    props: dict[str, Any] = {
        "blockDeviceMappings": [
            {
                "deviceName": "/dev/xvda",
                "ebs": {"volumeSize": 150.0, "volumeType": "gp3", "encrypted": "true"},
            }
        ],
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1.0,
        },
        "tagSpecifications": [
            {"resourceType": kind, "tags": dict(TAGS)} for kind in ("instance", "volume")
        ],
    }
    props.update(changes)
    return aws(LAUNCH_TEMPLATE, props, name="nodes-gpu")


def test_a_well_formed_launch_template_passes() -> None:
    assert check(template()) == []


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        (
            {"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "optional"}},
            "launch-template-imdsv2",
        ),
        ({"metadataOptions": None}, "launch-template-imdsv2"),
        (
            {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]},
            "launch-template-encrypted-volumes",
        ),
        ({"blockDeviceMappings": None}, "launch-template-encrypted-volumes"),
        (
            {"tagSpecifications": [{"resourceType": "instance", "tags": dict(TAGS)}]},
            "launch-template-tags",
        ),
        (
            {
                "tagSpecifications": [
                    {"resourceType": "instance", "tags": dict(TAGS)},
                    {"resourceType": "volume", "tags": {"owner": "x"}},
                ]
            },
            "launch-template-tags",
        ),
    ],
)
def test_each_launch_template_rule_refuses_its_fault(changes: dict[str, Any], rule: str) -> None:
    assert rules(template(**changes)) == {rule}


def test_imds_turned_off_entirely_passes() -> None:
    assert rules(template(metadataOptions={"httpEndpoint": "disabled"})) == set()


def test_launch_templates_of_a_load_test_tag_what_they_launch_with_the_run_id() -> None:
    specs = [
        {"resourceType": kind, "tags": {**TAGS, topology.RUN_ID_TAG: "run-1"}}
        for kind in ("instance", "volume")
    ]
    base = template(tagSpecifications=specs)
    ok = EngineResource(base.type, base.name, base.props, LOADTEST, "run-1", run_provider())
    assert check(ok) == []
    no_run = template()
    bad = EngineResource(no_run.type, no_run.name, no_run.props, LOADTEST, "run-1", run_provider())
    assert rules(bad) == {"launch-template-tags"}


# ------------------------------------------------------------------------------------------------
# EKS and KMS


CLUSTER = "aws:eks/cluster:Cluster"


def cluster(**changes: Any) -> EngineResource:
    props: dict[str, Any] = {
        "name": "qwen-dev-dev",
        "version": "1.35",
        "vpcConfig": {
            "endpointPublicAccess": True,
            "endpointPrivateAccess": True,
            "publicAccessCidrs": ["198.51.100.7/32"],
            "subnetIds": ["subnet-1", "subnet-2"],
        },
        "encryptionConfig": {
            "provider": {"keyArn": "arn:aws:kms:us-east-1:123456789012:key/k"},
            "resources": ["secrets"],
        },
    }
    props.update(changes)
    return aws(CLUSTER, props, name="cluster-eks")


def test_a_restricted_encrypted_cluster_passes() -> None:
    assert check(cluster()) == []


@pytest.mark.parametrize("cidrs", [["0.0.0.0/0"], ["198.51.100.7/32", "::/0"], None, []])
def test_a_public_endpoint_open_to_everyone_is_refused(cidrs: list[str] | None) -> None:
    vpc = {"endpointPublicAccess": True, "subnetIds": ["subnet-1"]}
    if cidrs is not None:
        vpc["publicAccessCidrs"] = cidrs
    violations = check(cluster(vpcConfig=vpc))
    assert fired(violations) == {"eks-public-endpoint"}
    assert "cluster-eks" in violations[0].message


def test_a_private_only_endpoint_needs_no_cidrs() -> None:
    vpc = {"endpointPublicAccess": False, "endpointPrivateAccess": True, "subnetIds": ["s"]}
    assert check(cluster(vpcConfig=vpc)) == []


@pytest.mark.parametrize(
    "encryption",
    [None, {"provider": {"keyArn": "arn:k"}, "resources": []}, {"resources": ["secrets"]}],
)
def test_secrets_must_be_envelope_encrypted(encryption: dict[str, Any] | None) -> None:
    changed = cluster(encryptionConfig=encryption)
    if encryption is None:
        changed = aws(CLUSTER, {k: v for k, v in changed.props.items() if k != "encryptionConfig"})
    assert rules(changed) == {"eks-secrets-encryption"}


def test_symmetric_kms_keys_rotate_and_asymmetric_ones_are_left_alone() -> None:
    key = "aws:kms/key:Key"
    assert rules(aws(key, {"enableKeyRotation": True})) == set()
    assert rules(aws(key, {"enableKeyRotation": False})) == {"kms-key-rotation"}
    assert rules(aws(key, {})) == {"kms-key-rotation"}
    assert rules(aws(key, {"customerMasterKeySpec": "RSA_2048"})) == set()


# ------------------------------------------------------------------------------------------------
# IAM


ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def role_policy(*statements: dict[str, Any], as_json: bool = True) -> EngineResource:
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    return aws(
        ROLE_POLICY,
        {"role": "r", "policy": json.dumps(document) if as_json else document},
        name="grant",
    )


ADMIN = {"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"}


@pytest.mark.parametrize("as_json", [True, False])
def test_allow_everything_on_everything_is_refused(as_json: bool) -> None:
    violations = check(role_policy(ADMIN, as_json=as_json))
    assert fired(violations) == {"iam-no-admin"}
    assert "grant" in violations[0].message and "All" in violations[0].message


def test_narrower_or_denying_statements_pass() -> None:
    assert rules(role_policy({**ADMIN, "Effect": "Deny"})) == set()
    assert rules(role_policy({**ADMIN, "Resource": "arn:aws:s3:::bucket/*"})) == set()
    assert rules(role_policy({**ADMIN, "Action": ["s3:GetObject"]})) == set()


def test_administrator_access_attachments_and_inline_role_policies_are_refused() -> None:
    admin_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
    attachment = aws(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", {"role": "r", "policyArn": admin_arn}
    )
    assert rules(attachment) == {"iam-no-admin"}
    inline = {"name": "all", "policy": json.dumps({"Statement": ADMIN})}
    assert rules(aws(ROLE, {"assumeRolePolicy": TRUST, "inlinePolicies": [inline]})) == {
        "iam-no-admin"
    }


SCALE = {
    "Sid": "ScaleOwnNodeGroups",
    "Effect": "Allow",
    "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
    "Resource": "*",
    "Condition": {
        "StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/qwen-dev-dev": "owned"}
    },
}


def test_autoscaler_writes_conditioned_on_the_cluster_tag_pass() -> None:
    assert check(role_policy(SCALE)) == []
    scoped = {k: v for k, v in SCALE.items() if k != "Condition"}
    scoped["Resource"] = (
        "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:u:autoScalingGroupName/g"
    )
    assert check(role_policy(scoped)) == []


@pytest.mark.parametrize("actions", [SCALE["Action"], "autoscaling:*", ["AutoScaling:Set*"]])
def test_unconditioned_autoscaler_writes_on_any_group_are_refused(actions: Any) -> None:
    loose = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    violations = check(role_policy(loose))
    assert fired(violations) == {"iam-autoscaler-condition"}
    assert "cluster-autoscaler/<cluster>" in violations[0].message


def test_read_only_autoscaling_actions_need_no_condition() -> None:
    describe_only = {"Effect": "Allow", "Action": "autoscaling:Describe*", "Resource": "*"}
    assert check(role_policy(describe_only)) == []


# ------------------------------------------------------------------------------------------------
# security groups


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (
            "aws:ec2/securityGroup:SecurityGroup",
            {
                "ingress": [
                    {
                        "fromPort": 443.0,
                        "toPort": 443.0,
                        "protocol": "tcp",
                        "cidrBlocks": ["0.0.0.0/0"],
                    }
                ]
            },
        ),
        (
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
            {
                "ingress": [
                    {"fromPort": 0.0, "toPort": 0.0, "protocol": "-1", "ipv6CidrBlocks": ["::/0"]}
                ]
            },
        ),
        (
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            {
                "type": "ingress",
                "fromPort": 22.0,
                "toPort": 22.0,
                "protocol": "tcp",
                "cidrBlocks": ["0.0.0.0/0"],
            },
        ),
        (
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            {"ipProtocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "cidrIpv4": "0.0.0.0/0"},
        ),
    ],
)
def test_ingress_from_the_whole_internet_is_refused(type_: str, props: dict[str, Any]) -> None:
    assert rules(aws(type_, props)) == {"security-group-ingress"}


def test_ingress_from_named_networks_and_open_egress_pass() -> None:
    group = "aws:ec2/securityGroup:SecurityGroup"
    props = {
        "ingress": [
            {"fromPort": 443.0, "toPort": 443.0, "protocol": "tcp", "cidrBlocks": ["10.0.0.0/16"]}
        ],
        "egress": [{"fromPort": 0.0, "toPort": 0.0, "protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}],
    }
    assert rules(aws(group, props)) == set()
    egress_rule = {
        "type": "egress",
        "protocol": "-1",
        "fromPort": 0.0,
        "toPort": 0.0,
        "cidrBlocks": ["0.0.0.0/0"],
    }
    assert rules(aws("aws:ec2/securityGroupRule:SecurityGroupRule", egress_rule)) == set()


# ------------------------------------------------------------------------------------------------
# Kubernetes workloads


DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def container(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.28.0",
        "resources": {
            "requests": {"cpu": "3", "memory": "11Gi", topology.GPU_RESOURCE: "1"},
            "limits": {"memory": "11Gi", topology.GPU_RESOURCE: "1"},
        },
    }
    body.update(changes)
    return body


def deployment(*containers: dict[str, Any], namespace: str = "vllm") -> EngineResource:
    spec = {"containers": list(containers or [container()])}
    return k8s(
        DEPLOYMENT,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "vllm", "namespace": namespace},
            "spec": {
                "replicas": 1.0,
                "selector": {"matchLabels": {"app": "vllm"}},
                "template": {"metadata": {"labels": {"app": "vllm"}}, "spec": spec},
            },
        },
        name="qwen-deployment",
    )


def test_a_pinned_sized_gpu_deployment_passes() -> None:
    assert check(deployment()) == []


@pytest.mark.parametrize(
    "image",
    ["vllm/vllm-openai:latest", "vllm/vllm-openai", "registry.local:5000/vllm", ""],
)
def test_floating_images_are_refused(image: str) -> None:
    violations = check(deployment(container(image=image)))
    assert fired(violations) == {"k8s-image-pinned"}
    assert "vllm" in violations[0].message


@pytest.mark.parametrize(
    "image",
    [
        "registry.local:5000/vllm:v1",
        "vllm/vllm-openai@sha256:" + "a" * 64,
        "locustio/locust:2.43.1",
    ],
)
def test_tagged_or_digest_images_pass(image: str) -> None:
    assert rules(deployment(container(image=image))) == set()


def test_init_containers_are_checked_too() -> None:
    props = copy.deepcopy(dict(deployment().props))
    props["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "fetch", "image": "busybox", "resources": {"requests": {"cpu": "1"}}}
    ]
    assert rules(k8s(DEPLOYMENT, props)) == {"k8s-image-pinned", "k8s-resource-requests"}


@pytest.mark.parametrize(
    "requests",
    [{"memory": "1Gi"}, {"cpu": "1"}, {}],
)
def test_cpu_and_memory_requests_are_required(requests: dict[str, str]) -> None:
    sized = container(resources={"requests": requests})
    assert rules(deployment(sized)) == {"k8s-resource-requests"}


@pytest.mark.parametrize(
    ("requested", "limited"),
    [("1", "2"), ("1", None), (None, "1")],
)
def test_gpu_requests_must_equal_gpu_limits(requested: str | None, limited: str | None) -> None:
    requests: dict[str, Any] = {"cpu": "1", "memory": "1Gi"}
    limits: dict[str, Any] = {}
    if requested is not None:
        requests[topology.GPU_RESOURCE] = requested
    if limited is not None:
        limits[topology.GPU_RESOURCE] = limited
    violations = check(deployment(container(resources={"requests": requests, "limits": limits})))
    assert fired(violations) == {"k8s-gpu-requests-equal-limits"}


def test_gpu_quantities_compare_as_numbers() -> None:
    resources = {
        "requests": {"cpu": "1", "memory": "1Gi", topology.GPU_RESOURCE: "1"},
        "limits": {topology.GPU_RESOURCE: 1.0},
    }
    assert rules(deployment(container(resources=resources))) == set()


@pytest.mark.parametrize("version", ["", "^1.2.0", "2.x", "latest", "~9.59"])
def test_floating_helm_chart_versions_are_advised_against(version: str) -> None:
    release = k8s(
        "kubernetes:helm.sh/v3:Release",
        {"chart": "keda", "version": version, "namespace": "keda"},
        name="addons-keda",
    )
    violations = check(release)
    assert mandatory(violations) == []
    assert fired(violations, "advisory") == {"helm-chart-version"}
    assert check(k8s(release.type, {**release.props, "version": "2.20.2"})) == []


# ------------------------------------------------------------------------------------------------
# load-test stacks


JOB = "kubernetes:batch/v1:Job"


def job(**spec_changes: Any) -> EngineResource:
    spec: dict[str, Any] = {
        "backoffLimit": 0.0,
        "activeDeadlineSeconds": 5400.0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    container(
                        image="locustio/locust:2.43.1",
                        resources={"requests": {"cpu": "1", "memory": "1Gi"}},
                    )
                ],
            }
        },
    }
    for key, value in spec_changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return k8s(
        JOB,
        {"metadata": {"name": "locust-master", "namespace": "lt-run-1"}, "spec": spec},
        name="loadtest-job-locust-master",
        project=LOADTEST,
    )


def test_a_bounded_load_test_job_passes() -> None:
    assert check(job()) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"backoffLimit": None},
        {"backoffLimit": 1.0},
        {"activeDeadlineSeconds": None},
        {"activeDeadlineSeconds": 0.0},
        {"activeDeadlineSeconds": 90000.0},
    ],
)
def test_load_test_jobs_must_end_on_their_own(changes: dict[str, Any]) -> None:
    violations = check(job(**changes))
    assert fired(violations) == {"loadtest-job-limits"}, describe(violations)


def test_the_job_deadline_ceiling_comes_from_the_policy_config() -> None:
    config = {"loadtest-job-limits": {"maxActiveDeadlineSeconds": 3600}}
    assert rules(job(), policy_config=config) == {"loadtest-job-limits"}


def test_jobs_of_the_platform_stack_are_not_load_test_jobs() -> None:
    platform_job = job(backoffLimit=None)
    unbounded = EngineResource(
        platform_job.type,
        platform_job.name,
        platform_job.props,
        PLATFORM,
        "dev",
        platform_job.provider,
    )
    assert check(unbounded) == []


NAMESPACE = "kubernetes:core/v1:Namespace"


def namespace(annotations: dict[str, str] | None) -> EngineResource:
    metadata: dict[str, Any] = {
        "name": "lt-run-1",
        "labels": {topology.ROLE_LABEL: topology.LOADTEST_ROLE},
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    return k8s(NAMESPACE, {"metadata": metadata}, name="loadtest-namespace", project=LOADTEST)


@pytest.mark.parametrize("expires", ["2026-12-01T12:00:00Z", "2026-12-01T12:00:00+00:00"])
def test_a_load_test_namespace_with_a_utc_expiry_passes(expires: str) -> None:
    assert check(namespace({topology.EXPIRES_ANNOTATION: expires})) == []


@pytest.mark.parametrize(
    ("annotations", "why"),
    [
        (None, "is missing"),
        ({topology.EXPIRES_ANNOTATION: "tomorrow"}, "not an ISO 8601 time"),
        ({topology.EXPIRES_ANNOTATION: "2026-12-01T12:00:00"}, "no time zone"),
    ],
)
def test_a_load_test_namespace_without_a_usable_expiry_is_refused(
    annotations: dict[str, str] | None, why: str
) -> None:
    violations = check(namespace(annotations))
    assert fired(violations) == {"loadtest-namespace-expiry"}
    assert why in violations[0].message


def test_nothing_in_a_load_test_stack_may_be_protected() -> None:
    protected = aws(
        ROLE, {"assumeRolePolicy": TRUST}, project=LOADTEST, provider=run_provider(), protect=True
    )
    assert rules(protected) == {"loadtest-no-protect"}
    platform = aws(ROLE, {"assumeRolePolicy": TRUST}, protect=True)
    assert rules(platform) == set()


def test_load_test_stacks_open_no_load_balancer() -> None:
    service = "kubernetes:core/v1:Service"
    spec = {"selector": {"app": "locust"}, "ports": [{"port": 8089.0}]}
    body = {"metadata": {"name": "locust-master", "namespace": "lt-run-1"}}
    balanced = k8s(service, {**body, "spec": {**spec, "type": "LoadBalancer"}}, project=LOADTEST)
    assert rules(balanced) == {"loadtest-no-load-balancer"}
    assert (
        check(k8s(service, {**body, "spec": {**spec, "type": "ClusterIP"}}, project=LOADTEST)) == []
    )


# ------------------------------------------------------------------------------------------------
# preview: values not known yet


def test_an_unknown_preview_value_is_reported_as_advisory_not_as_a_violation() -> None:
    violations = check(gpu_group(amiType=UNKNOWN_STRING))
    assert mandatory(violations) == []
    assert any("can't run policy 'gpu-nvidia-ami'" in v.message for v in violations)


# ------------------------------------------------------------------------------------------------
# stack rules


def _stack(*resources: EngineResource) -> list[Violation]:
    return Analyzer().analyze_stack(list(resources))


def network_policy(namespace: str) -> EngineResource:
    return k8s(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        {"metadata": {"name": "vllm", "namespace": namespace}, "spec": {"podSelector": {}}},
        name=f"np-{namespace}",
    )


def test_every_namespace_with_pods_needs_a_network_policy() -> None:
    assert _stack(deployment(), network_policy("vllm")) == []
    violations = _stack(deployment(), network_policy("other"))
    assert fired(violations) == {"k8s-namespace-network-policy"}
    assert violations[0].urn == deployment().urn
    assert "namespace vllm" in violations[0].message


def scaled_object(max_replicas: float | None) -> EngineResource:
    spec: dict[str, Any] = {"scaleTargetRef": {"name": "vllm"}, "minReplicaCount": 1.0}
    if max_replicas is not None:
        spec["maxReplicaCount"] = max_replicas
    return k8s(
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        {"metadata": {"name": "vllm", "namespace": "vllm"}, "spec": spec},
        name="qwen-scaled-object",
    )


def test_the_scaled_object_fits_the_gpu_nodes() -> None:
    workload = [deployment(), network_policy("vllm"), gpu_group()]  # 4 nodes x 1 GPU
    assert _stack(*workload, scaled_object(4.0)) == []
    violations = _stack(*workload, scaled_object(5.0))
    assert fired(violations) == {"keda-max-replicas-fit"}
    assert "5 x 1 GPU(s) per replica = 5 GPUs" in violations[0].message
    assert "nodes-gpu maxSize 4 x 1 GPU(s)" in violations[0].message


def test_an_unset_max_replica_count_is_keda_s_default_of_100() -> None:
    violations = _stack(deployment(), network_policy("vllm"), gpu_group(), scaled_object(None))
    assert fired(violations) == {"keda-max-replicas-fit"}


def test_gpu_replicas_with_no_gpu_node_group_cannot_fit() -> None:
    violations = _stack(deployment(), network_policy("vllm"), scaled_object(1.0))
    assert "no GPU node group in this stack" in violations[0].message


def test_a_scaled_object_of_a_cpu_workload_is_not_bounded_by_gpus() -> None:
    cpu = container(resources={"requests": {"cpu": "1", "memory": "1Gi"}})
    assert _stack(deployment(cpu), network_policy("vllm"), scaled_object(50.0)) == []
