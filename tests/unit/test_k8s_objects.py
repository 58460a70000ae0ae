"""Every core Kubernetes object the whole program renders validates against the cluster's schema."""

from __future__ import annotations

import pytest

from domain import topology
from tests.k8s_manifests import is_core, manifests, schema_errors
from tests.pulumi_mocks import stack_config
from tests.unit.conftest import example


@pytest.mark.parametrize("stack", ["dev", "a10g"])
def test_rendered_objects_validate_against_the_kubernetes_schema(stack: str) -> None:
    version = stack_config(stack)["qwen-stress:cluster"]["kubernetesVersion"]
    objects = [m for m in manifests(example(stack)) if is_core(m)]
    assert {(m["kind"], m["metadata"]["name"]) for m in objects} >= {
        ("Namespace", topology.MONITORING_NAMESPACE),
        ("Namespace", topology.KEDA_NAMESPACE),
        ("StorageClass", "gp3"),
        ("Namespace", topology.VLLM_NAMESPACE),
        ("Deployment", "vllm"),
        ("Service", "vllm"),
        ("NetworkPolicy", "vllm"),
        ("PodDisruptionBudget", "vllm"),
    }
    errors = [e for m in objects for e in schema_errors(m, version)]
    assert errors == []


def test_default_storage_class_provisions_encrypted_gp3_through_the_csi_driver() -> None:
    (storage,) = [m for m in manifests(example("dev")) if m["kind"] == "StorageClass"]
    assert storage["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert storage["provisioner"] == "ebs.csi.aws.com"
    assert storage["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert storage["volumeBindingMode"] == "WaitForFirstConsumer"
