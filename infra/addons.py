"""Cluster add-ons installed with Helm: autoscaler, GPU device plugin, Prometheus, KEDA.

Each is one ``helm.v3.Release`` whose values are plain dicts built by a function here, so tests
read exactly what Helm will receive. Versions come from ``domain.versions``; names, labels and
taints from ``domain.topology``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from domain import topology, versions
from domain.stack_config import ClusterAutoscalerConfig, StackConfig
from infra import iam
from infra.cluster import Cluster

CLUSTER_AUTOSCALER_NAMESPACE = "kube-system"
CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
DEVICE_PLUGIN_NAMESPACE = "kube-system"
DEFAULT_STORAGE_CLASS = "gp3"
PROMETHEUS_RETENTION = "3d"
"""Long enough to re-query a run's window afterwards; runs keep their own copies."""
PROMETHEUS_RETENTION_SIZE = "8GB"
HELM_TIMEOUT_S = 900

SYSTEM_NODES = {topology.ROLE_LABEL: topology.SYSTEM_ROLE}
GPU_TOLERATION = {
    "key": topology.GPU_TAINT_KEY,
    "operator": "Exists",
    "effect": topology.GPU_TAINT_EFFECT,
}


def cluster_autoscaler_values(
    cfg: ClusterAutoscalerConfig, cluster_name: str, region: str, kubernetes_version: str
) -> dict[str, Any]:
    """Values of the cluster-autoscaler chart (keys from its values.yaml)."""
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"tag": versions.KUBERNETES[kubernetes_version].cluster_autoscaler_tag},
        "rbac": {"serviceAccount": {"create": True, "name": CLUSTER_AUTOSCALER_SERVICE_ACCOUNT}},
        "extraArgs": {
            "scale-down-unneeded-time": cfg.scale_down_unneeded_time,
            "scale-down-delay-after-add": cfg.scale_down_delay_after_add,
            "expander": cfg.expander,
            "balance-similar-node-groups": True,
            # GPU nodes carry only DaemonSets from kube-system (the taint keeps the rest off),
            # so this matters for the system group: CoreDNS spreading its replicas must not
            # pin a second system node for good. CoreDNS has a PodDisruptionBudget.
            "skip-nodes-with-system-pods": False,
            # Prometheus keeps its data in an emptyDir: the node holding it stays, so a test's
            # metrics are never evicted mid-run.
            "skip-nodes-with-local-storage": True,
        },
        "nodeSelector": SYSTEM_NODES,
        "priorityClassName": "system-cluster-critical",
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}},
    }


def device_plugin_values() -> dict[str, Any]:
    """Values of the nvidia-device-plugin chart: GPU nodes only, tolerating their taint.

    The chart's default affinity asks for Node Feature Discovery labels that EKS nodes do not
    have, so it is replaced by the role label the GPU node group sets.
    """
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": topology.ROLE_LABEL,
                                    "operator": "In",
                                    "values": [topology.GPU_ROLE],
                                }
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": [GPU_TOLERATION],
        "priorityClassName": "system-node-critical",
    }


def prometheus_values() -> dict[str, Any]:
    """Values of kube-prometheus-stack: short retention, monitors from any namespace."""
    return {
        "alertmanager": {"enabled": False},
        "grafana": {"enabled": False},
        # EKS runs these three on the managed control plane, out of Prometheus's reach.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        # The EKS kube-proxy add-on binds its metrics to 127.0.0.1 by default: a target always down.
        "kubeProxy": {"enabled": False},
        "prometheusOperator": {"nodeSelector": SYSTEM_NODES},
        "kube-state-metrics": {
            "nodeSelector": SYSTEM_NODES,
            # KSM exports no Kubernetes label unless allowed (its --metric-labels-allowlist, the
            # chart's metricLabelsAllowlist, empty by default): the load test counts the GPU
            # nodes by role (domain/fleet_queries.py) on kube_node_labels.
            "metricLabelsAllowlist": [
                f"nodes=[{topology.ROLE_LABEL},{topology.ACCELERATOR_LABEL}]"
            ],
        },
        "prometheus": {
            "prometheusSpec": {
                "retention": PROMETHEUS_RETENTION,
                "retentionSize": PROMETHEUS_RETENTION_SIZE,
                "scrapeInterval": f"{topology.PROMETHEUS_SCRAPE_INTERVAL_S}s",
                # Select ServiceMonitors, PodMonitors, rules and probes in every namespace,
                # not only those labelled with this release: the vLLM service brings its own.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
                "nodeSelector": SYSTEM_NODES,
                "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}},
            }
        },
    }


def keda_values() -> dict[str, Any]:
    """Values of the keda chart: CRDs installed, every component on system nodes."""
    return {"crds": {"install": True}, "nodeSelector": SYSTEM_NODES}


class Addons(pulumi.ComponentResource):
    """The Helm releases, plus the autoscaler's Pod Identity role.

    Its ``opts`` carry both providers (``aws`` for the role, ``kubernetes`` for the releases);
    children inherit them. ``depends_on`` is what the releases wait for.
    """

    cluster_autoscaler: k8s.helm.v3.Release
    device_plugin: k8s.helm.v3.Release
    prometheus: k8s.helm.v3.Release
    keda: k8s.helm.v3.Release
    storage_class: k8s.storage.v1.StorageClass

    def __init__(
        self,
        name: str,
        *,
        cfg: StackConfig,
        eks: Cluster,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:infra:Addons", name, None, opts)
        ca_role = iam.pod_identity_role(
            f"{name}-cluster-autoscaler",
            cluster_name=eks.cluster_name,
            namespace=CLUSTER_AUTOSCALER_NAMESPACE,
            service_account=CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
            parent=self,
            inline_policy=iam.cluster_autoscaler_policy(eks.cluster_name),
        )
        ca_identity = aws.eks.PodIdentityAssociation(
            f"{name}-cluster-autoscaler",
            cluster_name=eks.name,
            namespace=CLUSTER_AUTOSCALER_NAMESPACE,
            service_account=CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
            role_arn=ca_role.role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=ca_role.grants),
        )
        after = list(depends_on)

        def release(
            chart: versions.Chart,
            release_name: str,
            namespace: pulumi.Input[str],
            values: dict[str, Any],
            extra: Sequence[pulumi.Resource] = (),
        ) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                f"{name}-{release_name}",
                k8s.helm.v3.ReleaseArgs(
                    # An explicit name: Pulumi would otherwise suffix it, and the in-cluster
                    # service names the workloads use derive from it.
                    name=release_name,
                    chart=chart.chart,
                    version=chart.version,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
                    namespace=namespace,
                    values=values,
                    timeout=HELM_TIMEOUT_S,
                    cleanup_on_fail=True,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*after, *extra]),
            )

        def namespace(ns: str) -> k8s.core.v1.Namespace:
            return k8s.core.v1.Namespace(
                f"{name}-{ns}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=ns),
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )

        self.cluster_autoscaler = release(
            versions.CLUSTER_AUTOSCALER,
            "cluster-autoscaler",
            CLUSTER_AUTOSCALER_NAMESPACE,
            cluster_autoscaler_values(
                cfg.cluster_autoscaler,
                eks.cluster_name,
                cfg.region,
                cfg.cluster.kubernetes_version,
            ),
            extra=[ca_identity],
        )
        self.device_plugin = release(
            versions.NVIDIA_DEVICE_PLUGIN,
            "nvidia-device-plugin",
            DEVICE_PLUGIN_NAMESPACE,
            device_plugin_values(),
        )
        monitoring = namespace(topology.MONITORING_NAMESPACE)
        self.prometheus = release(
            versions.KUBE_PROMETHEUS_STACK,
            topology.PROMETHEUS_RELEASE,
            monitoring.metadata.name,
            prometheus_values(),
        )
        keda_ns = namespace(topology.KEDA_NAMESPACE)
        self.keda = release(versions.KEDA, "keda", keda_ns.metadata.name, keda_values())
        # EKS ships no default StorageClass; claims without one would stay Pending.
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-{DEFAULT_STORAGE_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DEFAULT_STORAGE_CLASS,
                annotations={"storageclass.kubernetes.io/is-default-class": "true"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        self.register_outputs(
            {
                "releases": json.dumps(
                    {c.chart: c.version for c in versions.CHARTS}, sort_keys=True
                ),
                "clusterAutoscalerRole": ca_role.role.arn,
            }
        )
