"""Cluster add-ons: pinned charts, the values each receives, EKS add-ons and their order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domain import fleet_queries, topology, versions
from domain.stack_config import StackConfig
from infra import eks_addons
from tests.pulumi_mocks import Program, run_program

RELEASE = "kubernetes:helm.sh/v3:Release"


def _values(program: Program, release: str) -> dict[str, Any]:
    values: dict[str, Any] = program.one(RELEASE, release).inputs["values"]
    return values


def test_every_release_is_a_pinned_chart_with_a_fixed_name(dev: Program) -> None:
    releases = dev.of_type(RELEASE)
    assert len(releases) == len(versions.CHARTS)
    pinned = {(c.repo, c.chart, c.version) for c in versions.CHARTS}
    for release in releases:
        inputs = release.inputs
        assert (inputs["repositoryOpts"]["repo"], inputs["chart"], inputs["version"]) in pinned
        assert inputs["name"] == release.name.removeprefix("addons-")
        assert "cluster-admin" in dev.depends_on(release)  # the provider's identity may act


def test_autoscaler_discovers_this_cluster_with_configured_timings(dev: Program) -> None:
    values = _values(dev, "cluster-autoscaler")
    assert values["cloudProvider"] == "aws"
    assert values["autoDiscovery"] == {"clusterName": dev.outputs["clusterName"]}
    assert values["awsRegion"] == dev.outputs["region"]
    assert values["nodeSelector"] == {topology.ROLE_LABEL: topology.SYSTEM_ROLE}
    args = values["extraArgs"]
    assert args["scale-down-unneeded-time"] == "5m"
    assert args["scale-down-delay-after-add"] == "5m"
    assert args["expander"] == "least-waste"
    assert args["balance-similar-node-groups"] is True
    assert args["skip-nodes-with-system-pods"] is False


def test_autoscaler_settings_come_from_config() -> None:
    settings = {"scaleDownUnneededTime": "2m", "scaleDownDelayAfterAdd": "3m", "expander": "random"}
    program = run_program("dev", overrides={"qwen-stress:clusterAutoscaler": settings})
    args = _values(program, "cluster-autoscaler")["extraArgs"]
    assert (args["scale-down-unneeded-time"], args["scale-down-delay-after-add"]) == ("2m", "3m")
    assert args["expander"] == "random"


def test_autoscaler_image_matches_the_kubernetes_minor(
    dev: Program, dev_config: StackConfig
) -> None:
    tag = _values(dev, "cluster-autoscaler")["image"]["tag"]
    assert tag.startswith(f"v{dev_config.cluster.kubernetes_version}.")


def test_device_plugin_runs_on_gpu_nodes_only_and_tolerates_their_taint(dev: Program) -> None:
    values = _values(dev, "nvidia-device-plugin")
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": topology.ROLE_LABEL, "operator": "In", "values": ["gpu"]}]}
    ]
    gpu_labels = dev.one("aws:eks/nodeGroup:NodeGroup", "gpu").inputs["labels"]
    assert gpu_labels[topology.ROLE_LABEL] == "gpu"
    taint = dev.one("aws:eks/nodeGroup:NodeGroup", "gpu").inputs["taints"][0]
    assert {"key": taint["key"], "operator": "Exists", "effect": "NoSchedule"} in values[
        "tolerations"
    ]


def test_prometheus_keeps_little_and_watches_every_namespace(dev: Program) -> None:
    release = dev.one(RELEASE, "kube-prometheus-stack").inputs
    spec = release["values"]["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False
    assert spec["retention"].endswith("d") and int(spec["retention"][:-1]) <= 7
    # The in-cluster URL every workload uses is derived from the release name and namespace.
    assert topology.PROMETHEUS_URL.startswith(
        f"http://{release['name']}-prometheus.{release['namespace']}.svc:"
    )
    assert dev.outputs["prometheusUrl"] == topology.PROMETHEUS_URL


def test_kube_state_metrics_exports_the_node_labels_the_load_test_counts_by(
    dev: Program,
) -> None:
    ksm = _values(dev, "kube-prometheus-stack")["kube-state-metrics"]
    (nodes,) = [rule for rule in ksm["metricLabelsAllowlist"] if rule.startswith("nodes=")]
    allowed = nodes.removeprefix("nodes=[").removesuffix("]").split(",")
    assert topology.ROLE_LABEL in allowed
    # ... under the name the fleet queries select on.
    assert fleet_queries.NODE_ROLE_LABEL == "label_qwen_stress_io_role"
    queries = fleet_queries.FleetQueries("m", 1, ()).hours(60)
    assert f'{fleet_queries.NODE_ROLE_LABEL}="{topology.GPU_ROLE}"' in queries["gpu_hours"]


def test_keda_installs_its_crds_in_its_namespace(dev: Program) -> None:
    release = dev.one(RELEASE, "keda").inputs
    assert release["namespace"] == topology.KEDA_NAMESPACE
    assert release["values"]["crds"] == {"install": True}
    assert release["values"]["nodeSelector"] == {topology.ROLE_LABEL: topology.SYSTEM_ROLE}


def test_eks_addons_use_the_default_build_of_the_pinned_version(dev: Program) -> None:
    addons = {a.inputs["addonName"]: a for a in dev.of_type("aws:eks/addon:Addon")}
    assert set(addons) == set(versions.EKS_ADDONS)
    for name, addon in addons.items():
        # The mocked get_addon_version echoes what it was asked for.
        assert addon.inputs["addonVersion"] == f"{name}-for-1.35-eksbuild.1"
        assert addon.inputs["resolveConflictsOnCreate"] == "OVERWRITE"
        assert "nodes-system" in dev.depends_on(addon)


def test_vpc_cni_enforces_network_policies(dev: Program) -> None:
    """The vLLM NetworkPolicy only restricts anything if the CNI enforces policies."""
    addons = {a.inputs["addonName"]: a.inputs for a in dev.of_type("aws:eks/addon:Addon")}
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert dev.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")


def test_the_ebs_driver_waits_for_the_pod_identity_agent_whatever_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``versions.EKS_ADDONS`` names the add-ons, it is no creation order: reversed, it works."""
    reordered = tuple(reversed(versions.EKS_ADDONS))
    assert reordered.index("aws-ebs-csi-driver") < reordered.index("eks-pod-identity-agent")
    monkeypatch.setattr(versions, "EKS_ADDONS", reordered)
    program = run_program("dev")
    addons = {a.inputs["addonName"]: a for a in program.of_type("aws:eks/addon:Addon")}
    assert set(addons) == set(versions.EKS_ADDONS)
    ebs = addons["aws-ebs-csi-driver"]
    assert addons["eks-pod-identity-agent"].name in program.depends_on(ebs)
    assert ebs.inputs["podIdentityAssociations"][0]["serviceAccount"] == "ebs-csi-controller-sa"


def test_an_addon_list_missing_what_another_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="EKS_ADDONS lacks eks-pod-identity-agent"):
        eks_addons.creation_order(("vpc-cni", "aws-ebs-csi-driver"))
