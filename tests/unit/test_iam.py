"""IAM: each role may do only what it needs; no write action on ``*`` without a condition."""

from __future__ import annotations

import json
from typing import Any

from infra import iam
from infra.addons import CLUSTER_AUTOSCALER_NAMESPACE, CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
from tests.pulumi_mocks import ACCOUNT_ID, Program

READ_PREFIXES = ("Describe", "Get", "List")


def _statements(program: Program, role: str = "") -> list[dict[str, Any]]:
    """Permission statements of the inline policies the program creates (of one role)."""
    out = []
    for policy in program.of_type("aws:iam/rolePolicy:RolePolicy"):
        if policy.name.startswith(role):
            out += json.loads(policy.inputs["policy"])["Statement"]
    return out


AUTOSCALER = "addons-cluster-autoscaler"


def _is_write(action: str) -> bool:
    service_action = action.split(":", 1)[1]
    return service_action == "*" or not service_action.startswith(READ_PREFIXES)


def test_no_unconditioned_write_on_every_resource(dev: Program) -> None:
    statements = _statements(dev)
    assert statements, "the program should create the autoscaler's inline policy"
    for statement in statements:
        actions = statement["Action"]
        if statement["Resource"] == "*" and any(_is_write(a) for a in actions):
            assert statement.get("Condition"), f"write on * without a condition: {actions}"


def test_autoscaler_may_only_resize_this_clusters_groups(dev: Program) -> None:
    writes = [s for s in _statements(dev, AUTOSCALER) if any(_is_write(a) for a in s["Action"])]
    (write,) = writes
    assert set(write["Action"]) == {
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    }
    cluster = dev.outputs["clusterName"]
    assert write["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned"}
    }


DOCUMENTED_AUTOSCALER_READS = {
    # The first statement of the "Full Cluster Autoscaler Features Policy (Recommended)" in
    # kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md, as of tag
    # cluster-autoscaler-1.35.2 (the image pinned for Kubernetes 1.35) and master.
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
}


def test_autoscaler_may_read_exactly_what_its_documented_policy_lists(dev: Program) -> None:
    reads = {a for s in _statements(dev, AUTOSCALER) for a in s["Action"] if not _is_write(a)}
    assert reads == DOCUMENTED_AUTOSCALER_READS
    assert "autoscaling:DescribeTags" not in reads  # dropped from the README in 2021


def test_control_plane_may_use_only_its_secrets_key(dev: Program) -> None:
    (statement,) = _statements(dev, "cluster-secrets-key")
    key = dev.one("aws:kms/key:Key")
    assert statement["Resource"] == f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/{key.name}"
    assert set(statement["Action"]) == {
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ListGrants",
        "kms:DescribeKey",
    }
    assert "cluster-secrets-key" in dev.depends_on(dev.one("aws:eks/cluster:Cluster"))


def test_only_expected_managed_policies_are_attached(dev: Program) -> None:
    attached = {
        r.inputs["policyArn"]
        for r in dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attached == {*iam.EKS_CLUSTER_POLICIES, *iam.NODE_POLICIES, *iam.EBS_CSI_POLICIES}


def test_pod_identity_roles_trust_only_their_service_account_in_this_cluster(
    dev: Program,
) -> None:
    roles = {
        r.name: json.loads(r.inputs["assumeRolePolicy"]) for r in dev.of_type("aws:iam/role:Role")
    }
    ca = dev.one("aws:eks/podIdentityAssociation:PodIdentityAssociation").inputs
    (ebs,) = dev.one("aws:eks/addon:Addon", "aws-ebs-csi-driver").inputs["podIdentityAssociations"]
    bound = {
        "addons-cluster-autoscaler": (ca["namespace"], ca["serviceAccount"]),
        # The EBS CSI add-on installs its controller into kube-system.
        "eks-addons-ebs-csi": ("kube-system", ebs["serviceAccount"]),
    }
    for name, (namespace, service_account) in bound.items():
        (statement,) = roles[name]["Statement"]
        assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert set(statement["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
        assert statement["Condition"] == {
            "StringEquals": {
                "aws:RequestTag/eks-cluster-name": dev.outputs["clusterName"],
                "aws:RequestTag/kubernetes-namespace": namespace,
                "aws:RequestTag/kubernetes-service-account": service_account,
            }
        }


def test_node_and_control_plane_roles_trust_their_service(dev: Program) -> None:
    trusted = {
        json.loads(r.inputs["assumeRolePolicy"])["Statement"][0]["Principal"]["Service"]
        for r in dev.of_type("aws:iam/role:Role")
        if r.name in ("cluster-control-plane", "nodes-node")
    }
    assert trusted == {"eks.amazonaws.com", "ec2.amazonaws.com"}


def test_autoscaler_service_account_is_bound_to_its_role(dev: Program) -> None:
    association = dev.one("aws:eks/podIdentityAssociation:PodIdentityAssociation").inputs
    assert association["namespace"] == CLUSTER_AUTOSCALER_NAMESPACE
    assert association["serviceAccount"] == CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
    assert association["roleArn"].split("/")[-1].startswith("addons-cluster-autoscaler")
    release = dev.one("kubernetes:helm.sh/v3:Release", "cluster-autoscaler")
    sa = release.inputs["values"]["rbac"]["serviceAccount"]
    assert (release.inputs["namespace"], sa["name"]) == (
        association["namespace"],
        association["serviceAccount"],
    )
    assert "addons-cluster-autoscaler" in dev.depends_on(release)


def test_ebs_csi_driver_gets_credentials_through_pod_identity(dev: Program) -> None:
    addon = dev.one("aws:eks/addon:Addon", "aws-ebs-csi-driver")
    (association,) = addon.inputs["podIdentityAssociations"]
    assert association["serviceAccount"] == "ebs-csi-controller-sa"
    assert association["roleArn"].split("/")[-1].startswith("eks-addons-ebs-csi")
    assert "eks-addons-eks-pod-identity-agent" in dev.depends_on(addon)
