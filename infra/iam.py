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
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
)
"""Read actions the Cluster Autoscaler's AWS provider documents (cloudprovider/aws/README.md)."""
CLUSTER_AUTOSCALER_WRITE = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


def assume_role_policy(service: str) -> PolicyDocument:
    """Trust policy for an AWS service principal.

    ``sts:TagSession`` is what EKS Pod Identity (``pods.eks.amazonaws.com``) needs besides
    ``sts:AssumeRole``; EKS itself accepts it too.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
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

    EKS tags a managed node group's ASG with ``k8s.io/cluster-autoscaler/<cluster>: owned``
    (the node groups here set it explicitly too), so the condition confines the two write
    actions to this cluster's groups even though ASG ARNs are not known in advance.
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
    inline_policy: PolicyDocument | None = None,
) -> ServiceRole:
    """A role for an AWS service principal with managed policies and an optional inline one."""
    opts = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(name, assume_role_policy=json.dumps(assume_role_policy(service)), opts=opts)
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
