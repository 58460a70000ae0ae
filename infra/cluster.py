"""The EKS control plane: encrypted secrets, audit logs, a restricted endpoint, admin access.

Access uses EKS access entries (authentication mode ``API``) rather than the ``aws-auth``
ConfigMap, so who may administer the cluster is an AWS resource in this stack, created for the
principal that runs ``pulumi up``, and removed with it.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from domain.stack_config import ClusterConfig
from infra import iam

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
CONTROL_PLANE_LOG_RETENTION_DAYS = 7
ADMIN_POLICY_ARN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


class Cluster(pulumi.ComponentResource):
    """``aws.eks.Cluster`` with KMS envelope encryption, logs and an admin access entry."""

    cluster_name: str
    """Known before anything exists: tags and IAM conditions are built from it."""
    name: pulumi.Output[str]
    """The same name as an output, so whatever uses it waits for the cluster."""
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    admin_access: aws.eks.AccessPolicyAssociation
    """The cluster accepts the deployer's Kubernetes calls once this exists."""

    def __init__(
        self,
        name: str,
        cfg: ClusterConfig,
        cluster_name: str,
        subnet_ids: list[pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:infra:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes secrets in {cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=7,
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=f"alias/{cluster_name}-secrets",
            target_key_id=key.key_id,
            opts=child,
        )
        # EKS creates this log group on first write with no expiry; owning it caps retention
        # and deletes it with the stack.
        logs = aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{cluster_name}/cluster",
            retention_in_days=CONTROL_PLANE_LOG_RETENTION_DAYS,
            opts=child,
        )
        role = iam.service_role(
            f"{name}-control-plane", "eks.amazonaws.com", iam.EKS_CLUSTER_POLICIES, parent=self
        )
        key_access = aws.iam.RolePolicy(
            f"{name}-secrets-key",
            role=role.role.id,
            policy=key.arn.apply(lambda arn: json.dumps(iam.secrets_key_policy(arn))),
            opts=child,
        )
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=cluster_name,
            version=cfg.kubernetes_version,
            role_arn=role.role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=True,
                public_access_cidrs=cfg.endpoint_public_access_cidrs,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # The deployer gets an explicit access entry below; the implicit one would
                # collide with it and outlive any change of deployer.
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            # At the end of standard support, upgrade rather than silently move to extended
            # support at six times the hourly price.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs, key_access, *role.grants]),
        )

        # For SSO or assumed-role sessions the caller ARN is an STS session ARN, which an
        # access entry refuses; the session context names the IAM role behind it.
        caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        deployer = aws.iam.get_session_context_output(
            arn=caller.arn, opts=pulumi.InvokeOutputOptions(parent=self)
        ).issuer_arn
        entry = aws.eks.AccessEntry(
            f"{name}-admin",
            cluster_name=cluster.name,
            principal_arn=deployer,
            type="STANDARD",
            opts=child,
        )
        self.admin_access = aws.eks.AccessPolicyAssociation(
            f"{name}-admin",
            cluster_name=cluster.name,
            principal_arn=deployer,
            policy_arn=ADMIN_POLICY_ARN,
            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
        )

        self.cluster_name = cluster_name
        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.certificate_authority = cluster.certificate_authority.data.apply(
            lambda data: data or ""
        )
        self.register_outputs({"name": self.name, "endpoint": self.endpoint, "deployer": deployer})
