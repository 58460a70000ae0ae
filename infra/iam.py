"""IAM roles and policies of the platform, as plain documents tests can read.

Every policy document is built by a pure function, so a test can assert what each role may do
(no write action on ``*`` without a condition) without a cloud. The roles themselves are created
by the component that owns them, as its children.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

PolicyDocument = dict[str, Any]

EKS_CLUSTER_POLICIES = ("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",)
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    # The VPC CNI runs with the node's credentials; it needs ENI and IP management.
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
)
EBS_CSI_POLICIES = ("arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",)

CLUSTER_AUTOSCALER_DESCRIBE = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
)
"""Read actions of the "Full Cluster Autoscaler Features Policy" in the AWS provider's README
(kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md, tag
cluster-autoscaler-1.35.2 and master). ``autoscaling:DescribeTags`` is not among them: auto
discovery filters ``DescribeAutoScalingGroups`` by tag instead (commit 285500ed2c, "reduce
auto-discovery API calls", first released in 1.25.0), and the 1.35 provider never calls it."""
CLUSTER_AUTOSCALER_WRITE = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"


def assume_role_policy(service: str, condition: PolicyDocument | None = None) -> PolicyDocument:
    """Trust policy for an AWS service principal, optionally narrowed by a condition.

    ``sts:TagSession`` is what EKS Pod Identity (``pods.eks.amazonaws.com``) needs besides
    ``sts:AssumeRole``; EKS itself accepts it too.
    """
    statement: PolicyDocument = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def pod_identity_condition(
    cluster_name: str, namespace: str, service_account: str
) -> PolicyDocument:
    """Only this cluster's ``namespace/service_account`` may assume the role.

    EKS Pod Identity tags every session with the cluster, namespace and service account it
    serves (EKS user guide, "Create IAM role with trust policy required by EKS Pod Identity");
    without the condition, a Pod Identity association anywhere in the account could hand the
    role to any pod.
    """
    return {
        "StringEquals": {
            "aws:RequestTag/eks-cluster-name": cluster_name,
            "aws:RequestTag/kubernetes-namespace": namespace,
            "aws:RequestTag/kubernetes-service-account": service_account,
        }
    }


def secrets_key_policy(key_arn: str) -> PolicyDocument:
    """What the control plane needs of the KMS key that envelope-encrypts secrets, and only it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EnvelopeEncryption",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                "Resource": key_arn,
            }
        ],
    }


def cluster_autoscaler_policy(cluster_name: str) -> PolicyDocument:
    """Describe anything; resize or shrink only Auto Scaling groups this cluster owns.

    EKS tags every managed node group's ASG with ``k8s.io/cluster-autoscaler/<cluster>: owned``,
    so the condition confines the two write actions to this cluster's groups even though ASG
    ARNs are not known in advance.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Action": list(CLUSTER_AUTOSCALER_DESCRIBE),
                "Resource": "*",
            },
            {
                "Sid": "ScaleOwnNodeGroups",
                "Effect": "Allow",
                "Action": list(CLUSTER_AUTOSCALER_WRITE),
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"
                    }
                },
            },
        ],
    }


@dataclass(frozen=True)
class ServiceRole:
    """A role and the grants attached to it.

    Whatever uses the role depends on ``grants`` too: a node group created before its policies
    are attached fails to join, and IAM gives no ordering of its own.
    """

    role: aws.iam.Role
    grants: list[pulumi.Resource]


def service_role(
    name: str,
    service: str,
    managed_policies: tuple[str, ...],
    parent: pulumi.Resource,
    *,
    inline_policy: PolicyDocument | None = None,
    trust_condition: PolicyDocument | None = None,
) -> ServiceRole:
    """A role for an AWS service principal with managed policies and an optional inline one."""
    opts = pulumi.ResourceOptions(parent=parent)
    trust = assume_role_policy(service, trust_condition)
    role = aws.iam.Role(name, assume_role_policy=json.dumps(trust), opts=opts)
    grants: list[pulumi.Resource] = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{arn.rsplit('/', 1)[-1]}", role=role.name, policy_arn=arn, opts=opts
        )
        for arn in managed_policies
    ]
    if inline_policy is not None:
        grants.append(
            aws.iam.RolePolicy(name, role=role.id, policy=json.dumps(inline_policy), opts=opts)
        )
    return ServiceRole(role, grants)


def pod_identity_role(
    name: str,
    *,
    cluster_name: str,
    namespace: str,
    service_account: str,
    parent: pulumi.Resource,
    managed_policies: tuple[str, ...] = (),
    inline_policy: PolicyDocument | None = None,
) -> ServiceRole:
    """A role that only one service account of this cluster gets through EKS Pod Identity."""
    return service_role(
        name,
        POD_IDENTITY_SERVICE,
        managed_policies,
        parent,
        inline_policy=inline_policy,
        trust_condition=pod_identity_condition(cluster_name, namespace, service_account),
    )
