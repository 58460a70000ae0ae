"""EKS managed add-ons: networking, DNS, Pod Identity and the EBS CSI driver.

They are created once the node groups exist: CoreDNS and the EBS CSI controller need a node to
become active, and until then EKS's own bootstrap copies of the VPC CNI, kube-proxy and CoreDNS
let nodes join; ``OVERWRITE`` on create takes those over.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from graphlib import TopologicalSorter

import pulumi
import pulumi_aws as aws

from domain import versions
from infra import iam
from infra.cluster import Cluster

EBS_CSI_NAMESPACE = "kube-system"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
CONFIGURATION: dict[str, dict[str, str]] = {
    # The VPC CNI accepts NetworkPolicy objects but enforces none until this is on (EKS user
    # guide, "Restrict Pod network traffic with Kubernetes network policies"); without it the
    # vLLM service's ingress policy would be decoration.
    "vpc-cni": {"enableNetworkPolicy": "true"},
}
"""Add-on configuration values (each add-on's own JSON schema), by add-on name."""
NEEDS: dict[str, tuple[str, ...]] = {
    # The EBS CSI driver gets its AWS credentials through Pod Identity, served by the agent.
    "aws-ebs-csi-driver": ("eks-pod-identity-agent",),
}
"""Add-ons that must exist before another one, by the add-on that waits."""


def creation_order(names: Sequence[str]) -> list[str]:
    """``names`` with every add-on after those it needs, whatever order ``names`` lists them in.

    A needed add-on missing from ``names`` is a mistake in ``versions.EKS_ADDONS``: it raises.
    """
    missing = sorted({n for name in names for n in NEEDS.get(name, ()) if n not in names})
    if missing:
        raise ValueError(f"versions.EKS_ADDONS lacks {', '.join(missing)}, which others need")
    return list(TopologicalSorter({name: NEEDS.get(name, ()) for name in names}).static_order())


class EksAddons(pulumi.ComponentResource):
    """The EKS add-ons in ``versions.EKS_ADDONS``, at EKS's default build for the version.

    ``depends_on`` is the node group they wait for.
    """

    addons: dict[str, aws.eks.Addon]

    def __init__(
        self,
        name: str,
        eks: Cluster,
        kubernetes_version: str,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:infra:EksAddons", name, None, opts)
        ebs_role = iam.pod_identity_role(
            f"{name}-ebs-csi",
            cluster_name=eks.cluster_name,
            namespace=EBS_CSI_NAMESPACE,
            service_account=EBS_CSI_SERVICE_ACCOUNT,
            parent=self,
            managed_policies=iam.EBS_CSI_POLICIES,
        )
        self.addons = {}
        for addon in creation_order(versions.EKS_ADDONS):
            version = aws.eks.get_addon_version_output(
                addon_name=addon,
                kubernetes_version=kubernetes_version,
                opts=pulumi.InvokeOutputOptions(parent=self),
            ).version
            identity: list[aws.eks.AddonPodIdentityAssociationArgs] = []
            waits_for = [*depends_on, *(self.addons[n] for n in NEEDS.get(addon, ()))]
            if addon == "aws-ebs-csi-driver":
                identity = [
                    aws.eks.AddonPodIdentityAssociationArgs(
                        role_arn=ebs_role.role.arn, service_account=EBS_CSI_SERVICE_ACCOUNT
                    )
                ]
                waits_for += ebs_role.grants
            self.addons[addon] = aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=eks.name,
                addon_name=addon,
                addon_version=version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE",
                configuration_values=(
                    json.dumps(CONFIGURATION[addon]) if addon in CONFIGURATION else None
                ),
                pod_identity_associations=identity or None,
                opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
            )
        self.register_outputs({key: a.addon_version for key, a in self.addons.items()})
