"""The vLLM service on the GPU nodes: one ComponentResource, plain Kubernetes objects under it.

Namespace, API-key Secret, Deployment, Service, ServiceMonitor, PodDisruptionBudget,
NetworkPolicy and the KEDA ScaledObject. Everything it needs arrives typed and already checked
(``ModelConfig``, ``AutoscalingSpec``, ``FitResult``); the Kubernetes provider comes in through
``opts``, and what must run first (GPU nodes, device plugin, the KEDA and Prometheus operator
releases) through ``depends_on``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from domain import topology
from domain.autoscaling import AutoscalingSpec
from domain.catalog import GIB, CapacityType, InstanceSpec
from domain.fit import FitResult
from domain.model_config import ModelConfig
from domain.prices import PriceTable
from domain.prices import current as current_prices
from domain.versions import VLLM_IMAGE, VLLM_UID
from domain.vllm_args import (
    API_KEY_ENV,
    HF_TOKEN_ENV,
    HOME_DIR,
    MODEL_CACHE_DIR,
    PRESTOP_SECONDS,
    STARTUP_BUDGET_SECONDS,
    TERMINATION_GRACE_SECONDS,
    vllm_launch,
)
from workloads import keda

if TYPE_CHECKING:
    from domain.stack_config import StackConfig

NAME = topology.VLLM_DEPLOYMENT
"""Name of the Deployment, Service and friends: the Service's DNS name is fixed by it."""
HTTP_PORT_NAME = "http"

ROLLOUT_DEADLINE_SECONDS = 2 * STARTUP_BUDGET_SECONDS
"""How long a rollout may go without a new pod turning ready: a node from zero, the image pull
and the startup budget. Both the Deployment's ``progressDeadlineSeconds`` (whose default of
600 s would mark an ordinary cold start as failed) and Pulumi's wait use it."""

CHECKOV_SKIPS = {
    "CKV_K8S_11": (
        "no CPU limit: CFS throttling stalls vLLM's scheduler loop and tokenizer, which shows up "
        "as TTFT, the very thing measured; the GPU node is tainted, so nothing else competes"
    ),
    "CKV_K8S_15": (
        "IfNotPresent: the image is 10-20 GB and pinned to a release tag; Always would add a "
        "registry round trip (and Docker Hub rate limits) to every cold start"
    ),
    "CKV_K8S_35": (
        "vLLM reads its API key only from VLLM_API_KEY or --api-key; the env var keeps it off "
        "the command line, and HF_TOKEN is where huggingface_hub looks"
    ),
    "CKV_K8S_43": (
        "pinned to the release tag in domain/versions.py; the digest was not verifiable "
        "offline, and a tag on vllm/vllm-openai is not re-pushed after release"
    ),
}
"""Checkov findings accepted on the Deployment, each with its reason (rendered as
``checkov.io/skipN`` annotations, so the reason travels with the object)."""


Body = Any
"""A Kubernetes object body as a dict literal. pulumi_kubernetes types these as TypedDicts whose
fields are Input unions, which mypy cannot infer nested literals against; the offline schema
tests validate every body instead."""


def _labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "inference",
    }


def _meta(
    name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> k8s.meta.v1.ObjectMetaArgsDict:
    meta: k8s.meta.v1.ObjectMetaArgsDict = {"name": name, "namespace": namespace, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _checkov_annotations() -> dict[str, str]:
    return {
        f"checkov.io/skip{i}": f"{check}={reason}"
        for i, (check, reason) in enumerate(sorted(CHECKOV_SKIPS.items()), start=1)
    }


def host_requests(instance: InstanceSpec, gpus: int) -> tuple[int, int]:
    """CPUs and GiB of memory one replica of ``gpus`` GPUs requests.

    Its share of the node, less room for the kubelet's reservation and the DaemonSets (VPC CNI,
    kube-proxy, Pod Identity agent, EBS CSI node, device plugin, node exporter).
    """
    share = gpus / instance.gpu_count
    cpu = max(1, math.floor(instance.vcpu * share) - 1)
    memory_gib = max(4, math.floor(instance.memory_gib * share * 0.7))
    return cpu, memory_gib


def _model_cache_gib(fit: FitResult) -> int:
    # Room for the checkpoint plus the tokenizer and config files, with slack for a re-download.
    return math.ceil(fit.model.weight_bytes * 1.5 / GIB) + 5


class VllmService(pulumi.ComponentResource):
    """vLLM serving one Qwen2.5 checkpoint, scaled by KEDA on vLLM's own queue metrics."""

    namespace: str
    service_host: str
    port: int
    served_model_name: str
    api_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        model: ModelConfig,
        autoscaling: AutoscalingSpec,
        fit: FitResult,
        capacity_type: CapacityType = "on-demand",
        prices: PriceTable | None = None,
        api_key: pulumi.Input[str] | None = None,
        hf_token: pulumi.Input[str] | None = None,
        namespace: str = topology.VLLM_NAMESPACE,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("qwen-stress:workloads:VllmService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = _labels(name)
        self.namespace = namespace
        self.port = topology.VLLM_PORT
        self.served_model_name = model.served
        self.service_host = f"{NAME}.{namespace}.svc.cluster.local"
        self.fit = fit

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": namespace,
                "labels": {
                    topology.ROLE_LABEL: topology.GPU_ROLE,
                    # The pod below meets the restricted profile; keep anything looser out.
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
            # Every other object depends on the namespace, so this one list orders them all: created
            # once the GPU nodes, device plugin and CRDs exist (the Deployment's wait starts when a
            # pod can schedule), deleted while nodes still run the drain and KEDA removes its
            # finalizer. A component's depends_on would not reach its children.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])

        if api_key is None:
            api_key = random.RandomPassword(
                f"{name}-api-key", length=48, special=False, opts=child
            ).result
        self.api_key = pulumi.Output.secret(api_key)
        secret_data: dict[str, pulumi.Input[str]] = {"api-key": self.api_key}
        if hf_token is not None:
            secret_data["hf-token"] = pulumi.Output.secret(hf_token)
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=_meta(f"{NAME}-credentials", namespace, labels),
            type="Opaque",
            string_data=secret_data,
            opts=in_ns,
        )

        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=_meta(NAME, namespace, labels),
            automount_service_account_token=False,
            opts=in_ns,
        )

        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=_meta(
                NAME,
                namespace,
                labels,
                {
                    **_checkov_annotations(),
                    # A cold start (node boot, image pull, weights) outlasts Pulumi's 10 minutes.
                    "pulumi.com/timeoutSeconds": str(ROLLOUT_DEADLINE_SECONDS),
                },
            ),
            spec=self._deployment_spec(
                labels, model, fit, secret_name=f"{NAME}-credentials", hf=hf_token is not None
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, secret, account]),
        )

        service_spec: Body = {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": topology.VLLM_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        }
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=_meta(NAME, namespace, labels),
            spec=service_spec,
            opts=in_ns,
        )

        k8s.apiextensions.CustomResource(
            f"{name}-service-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata={
                "name": NAME,
                "namespace": namespace,
                # kube-prometheus-stack selects ServiceMonitors by its release label by default.
                "labels": {**labels, "release": topology.PROMETHEUS_RELEASE},
            },
            spec={
                "selector": {"matchLabels": labels},
                "namespaceSelector": {"matchNames": [namespace]},
                "endpoints": [
                    {
                        "port": HTTP_PORT_NAME,
                        "path": "/metrics",
                        # Scrape at least as often as KEDA polls, or it scales on stale samples.
                        "interval": f"{autoscaling.scrape_interval_seconds}s",
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[service]),
        )

        # One replica at a time: node rotation proceeds, capacity never drops by more.
        pdb_spec: Body = {"maxUnavailable": 1, "selector": {"matchLabels": labels}}
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=_meta(NAME, namespace, labels),
            spec=pdb_spec,
            opts=in_ns,
        )

        # vLLM's API key guards only /v1, /v2, /inference and /cohere (API_KEY_GUARDED_PREFIXES):
        # /invocations runs the same inference without it, /pause and /abort_requests stop the
        # service. This policy is what keeps everyone else off the port: load-test namespaces,
        # the Prometheus server (not the rest of monitoring) and the vLLM pods themselves.
        policy_spec: Body = {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {topology.ROLE_LABEL: topology.LOADTEST_ROLE}
                            }
                        },
                        {
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": topology.MONITORING_NAMESPACE
                                }
                            },
                            "podSelector": {"matchLabels": dict(topology.PROMETHEUS_POD_LABELS)},
                        },
                        {"podSelector": {}},
                    ],
                    "ports": [{"port": topology.VLLM_PORT, "protocol": "TCP"}],
                }
            ],
        }
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=_meta(NAME, namespace, labels),
            spec=policy_spec,
            opts=in_ns,
        )

        k8s.apiextensions.CustomResource(
            f"{name}-scaled-object",
            api_version=keda.API_VERSION,
            kind="ScaledObject",
            metadata=_meta(NAME, namespace, labels),
            spec=keda.scaled_object_spec(
                autoscaling, deployment=NAME, namespace=namespace, served_name=model.served
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )

        self.hourly_usd_per_replica = fit.hourly_usd_per_replica(capacity_type, prices)
        self.register_outputs(self.exports())

    @classmethod
    def from_config(
        cls,
        name: str,
        cfg: StackConfig,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> VllmService:
        """The service a stack's validated configuration describes."""
        return cls(
            name,
            model=cfg.model,
            autoscaling=cfg.autoscaling,
            fit=cfg.fit,
            capacity_type=cfg.gpu.capacity_type,
            prices=current_prices(cfg.region),
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            hf_token=cfg.hf_token.get_secret_value() if cfg.hf_token else None,
            depends_on=depends_on,
            opts=opts,
        )

    @staticmethod
    def _deployment_spec(
        labels: dict[str, str], model: ModelConfig, fit: FitResult, *, secret_name: str, hf: bool
    ) -> Body:
        launch = vllm_launch(model, fit)
        cpu_count, memory_gib = host_requests(fit.instance, fit.gpus_per_replica)
        cpu, memory = str(cpu_count), f"{memory_gib}Gi"
        gpus = str(fit.gpus_per_replica)
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in launch.env.items()]
        env.append(
            {
                "name": API_KEY_ENV,
                "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "api-key"}},
            }
        )
        if hf:
            env.append(
                {
                    "name": HF_TOKEN_ENV,
                    "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "hf-token"}},
                }
            )
        health = {"path": "/health", "port": HTTP_PORT_NAME}
        container = {
            "name": NAME,
            "image": VLLM_IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "args": launch.args,
            "env": env,
            "ports": [
                {"name": HTTP_PORT_NAME, "containerPort": topology.VLLM_PORT, "protocol": "TCP"}
            ],
            "resources": {
                "requests": {"cpu": cpu, "memory": memory, topology.GPU_RESOURCE: gpus},
                "limits": {"memory": memory, topology.GPU_RESOURCE: gpus},
            },
            "startupProbe": {
                "httpGet": health,
                "periodSeconds": 10,
                "timeoutSeconds": 5,
                "failureThreshold": STARTUP_BUDGET_SECONDS // 10,
            },
            "readinessProbe": {
                "httpGet": health,
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "httpGet": health,
                "periodSeconds": 15,
                "timeoutSeconds": 5,
                "failureThreshold": 4,
            },
            # Keep serving while the endpoint removal propagates; then SIGTERM starts the drain.
            "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "shm", "mountPath": "/dev/shm"},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "home", "mountPath": HOME_DIR},
                {"name": "model-cache", "mountPath": MODEL_CACHE_DIR},
            ],
        }
        return {
            "selector": {"matchLabels": labels},
            "progressDeadlineSeconds": ROLLOUT_DEADLINE_SECONDS,
            # Replicas are KEDA's: leaving the field unset keeps `pulumi up` from resetting them.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        # Evicting a replica to pack nodes costs a multi-minute cold start mid-test.
                        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                    },
                },
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": False,
                    # A Service named vllm would inject VLLM_PORT=tcp://..., which vLLM reads.
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "nodeSelector": {topology.ROLE_LABEL: topology.GPU_ROLE},
                    "tolerations": [
                        {
                            "key": topology.GPU_TAINT_KEY,
                            "operator": "Equal",
                            "value": topology.GPU_TAINT_VALUE,
                            "effect": topology.GPU_TAINT_EFFECT,
                        }
                    ],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": VLLM_UID,
                        "runAsGroup": VLLM_UID,
                        "fsGroup": VLLM_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        # NCCL and vLLM's worker processes exchange tensors through /dev/shm.
                        {
                            "name": "shm",
                            "emptyDir": {
                                "medium": "Memory",
                                "sizeLimit": f"{2 * fit.tensor_parallel}Gi",
                            },
                        },
                        {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}},
                        {"name": "home", "emptyDir": {"sizeLimit": "16Gi"}},
                        {
                            "name": "model-cache",
                            "emptyDir": {"sizeLimit": f"{_model_cache_gib(fit)}Gi"},
                        },
                    ],
                },
            },
        }

    def exports(self) -> dict[str, Any]:
        """Stack outputs the load-test runner and reports read (camelCase, as exported)."""
        return {
            "vllmNamespace": self.namespace,
            "vllmServiceHost": self.service_host,
            "vllmServicePort": self.port,
            "vllmBaseUrl": f"http://{self.service_host}:{self.port}/v1",
            "servedModelName": self.served_model_name,
            "modelName": self.fit.model.name,
            "vllmImage": VLLM_IMAGE,
            "vllmApiKey": self.api_key,
            "gpuType": self.fit.gpu.name,
            "gpusPerReplica": self.fit.gpus_per_replica,
            "kvCacheTokens": self.fit.kv_cache_tokens,
            "maxConcurrentSequences": self.fit.max_concurrent_sequences,
            "maxNumSeqs": self.fit.max_num_seqs,
            "hourlyUsdPerReplica": round(self.hourly_usd_per_replica, 4),
        }
