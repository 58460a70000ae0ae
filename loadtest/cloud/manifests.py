"""The load-test stack's Kubernetes objects, as plain dicts from a ``LoadTestSpec``.

Pure functions: the Pulumi program registers exactly these bodies, and the tests, the schema
validation, checkov and the rehearsal (which runs the containers' commands as local processes)
read the same ones. Nothing here holds a secret: the API key reaches the Secret through the
program as a Pulumi secret, and the pods through ``secretKeyRef``.

Shapes worth knowing before changing anything:

- The master's Service selects on ``app.kubernetes.io/component: master`` alone, and the
  workers' egress rule names exactly that selector: the VPC CNI's policy controller allows
  traffic to a ClusterIP only when the rule's pod selector matches the Service's selector
  (aws/amazon-network-policy-controller-k8s ``pkg/resolvers/endpoints.go``,
  ``getMatchingServiceClusterIPs``), and drops it when the selected label is also on the source
  pod (issue #236 there).
- ``enableServiceLinks: false``: a Service named ``locust-master`` would inject
  ``LOCUST_MASTER_PORT=tcp://...`` into every pod, and Locust reads ``LOCUST_*`` variables as
  its own settings.
"""

from __future__ import annotations

import base64
from datetime import UTC
from typing import Any

from domain import topology, versions
from domain.vllm_args import API_KEY_ENV
from loadtest.cloud import contract
from loadtest.cloud.contract import Role
from loadtest.cloud.sizing import MASTER_CPU, MASTER_MEMORY_MIB, WORKER_CPU, WORKER_MEMORY_MIB
from loadtest.cloud.spec import CodeWheel, LoadTestSpec

Body = dict[str, Any]

APP = "qwen-stress-loadtest"
COMPONENT_LABEL = "app.kubernetes.io/component"
RUN_ID_LABEL = "qwen-stress.io/run-id"
API_KEY_SECRET = "vllm-api-key"
API_KEY_SECRET_KEY = "api-key"
PAYLOAD_CONFIG_MAP = "run-payload"
CODE_CONFIG_MAP = "pod-code"
WHEEL_KEY = "project.whl"
"""ConfigMap keys allow only ``[-._a-zA-Z0-9]``; the volume maps this key to the wheel's name."""
TERMINATION_GRACE_SECONDS = 45
"""Users finish the request they are in for up to 30 s when the load stops, plus a margin."""
TMP_SIZE = "1Gi"
RUN_DIR_SIZE = "8Gi"
"""A million request records are about 1 GB of JSON lines; the run directory holds a few."""
SITE_SIZE = "1Gi"
PRIVATE_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
)
"""Never reachable through the package-index rule: the VPC, pod networks (also EKS custom
networking's 100.64/10) and link-local, where the instance metadata service answers."""
PYPI_PORT = 443

CHECKOV_SKIPS = {
    "CKV_K8S_15": (
        "IfNotPresent: the image is pinned to a release tag (and digest when known) or to a "
        "fixed Python release; Always would add a registry round trip to every pod start"
    ),
    "CKV_K8S_35": (
        "the load generator sends the key from VLLM_API_KEY (domain.vllm_args.API_KEY_ENV), as "
        "local runs do; the variable comes from a Secret, never from args or a ConfigMap"
    ),
    "CKV_K8S_43": (
        "a tag, not a digest, when the registry was not asked (the wheel path's Python image, "
        "or an image given by tag): see domain/versions.py POD_PYTHON_IMAGE"
    ),
}
"""Checkov findings accepted on the Jobs, each with its reason (``checkov.io/skipN``)."""


def namespace_name(run_id: str) -> str:
    """The run's namespace: deleting it takes every object of the run with it."""
    return f"loadtest-{run_id}"


def master_host(run_id: str) -> str:
    """The master Service's DNS name, as workers resolve it."""
    return f"{contract.MASTER_SERVICE}.{namespace_name(run_id)}.svc.cluster.local"


def labels(run_id: str, component: str | None = None) -> dict[str, str]:
    """Labels of every object of the run; pods add their component (master or worker)."""
    out = {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": run_id,
        "app.kubernetes.io/part-of": "qwen-stress",
        RUN_ID_LABEL: run_id,
    }
    if component is not None:
        out[COMPONENT_LABEL] = component
    return out


def selector(component: str) -> dict[str, str]:
    """What the master Service and the NetworkPolicies select pods by (see the module notes)."""
    return {COMPONENT_LABEL: component}


def _meta(spec: LoadTestSpec, name: str, annotations: dict[str, str] | None = None) -> Body:
    meta: Body = {
        "name": name,
        "namespace": namespace_name(spec.run_id),
        "labels": labels(spec.run_id),
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def namespace(spec: LoadTestSpec) -> Body:
    """The run's namespace: the vLLM NetworkPolicy admits it by its role label."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace_name(spec.run_id),
            "labels": {
                **labels(spec.run_id),
                topology.ROLE_LABEL: topology.LOADTEST_ROLE,
                "pod-security.kubernetes.io/enforce": "restricted",
            },
            "annotations": {
                topology.EXPIRES_ANNOTATION: spec.expires_at.astimezone(UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            },
        },
    }


def api_key_secret(spec: LoadTestSpec) -> Body:
    """The Secret's shape; the program adds the key itself as a Pulumi secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, API_KEY_SECRET),
        "type": "Opaque",
    }


def payload_config_map(spec: LoadTestSpec) -> Body:
    """The run's plan, workload and options, mounted read-only in every pod."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, PAYLOAD_CONFIG_MAP),
        "data": {contract.PAYLOAD_FILE: spec.payload},
        "immutable": True,
    }


def project_requirements(wheel: CodeWheel) -> str:
    """``project.txt``: the wheel by its path in the bootstrap directory, pinned by its hash."""
    return f"./{wheel.filename} --hash=sha256:{wheel.sha256}\n"


def code_config_map(spec: LoadTestSpec, lock: str) -> Body | None:
    """The wheel and the hashed lock, for an unreleased checkout (``None`` with an image)."""
    if not isinstance(spec.code, CodeWheel):
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, CODE_CONFIG_MAP),
        "binaryData": {WHEEL_KEY: base64.b64encode(spec.code.content).decode()},
        "data": {
            contract.PROJECT_REQUIREMENTS: project_requirements(spec.code),
            contract.LOCK_REQUIREMENTS: lock,
        },
        "immutable": True,
    }


def service_account(spec: LoadTestSpec, role: Role) -> Body:
    """One account per role, without a token: neither pod calls the Kubernetes API."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec, f"locust-{role}"),
        "automountServiceAccountToken": False,
    }


def master_service(spec: LoadTestSpec) -> Body:
    """ClusterIP only: workers connect to Locust's port; the CLI port-forwards to the API."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, contract.MASTER_SERVICE),
        "spec": {
            "type": "ClusterIP",
            "selector": selector("master"),
            "ports": [
                {
                    "name": "locust",
                    "port": contract.LOCUST_PORT,
                    "targetPort": contract.LOCUST_PORT,
                    "protocol": "TCP",
                },
                {
                    "name": "api",
                    "port": contract.MASTER_API_PORT,
                    "targetPort": contract.MASTER_API_PORT,
                    "protocol": "TCP",
                },
            ],
        },
    }


def _resources(cpu: int, memory_mib: int) -> Body:
    # Requests = limits: Guaranteed QoS, so a busy neighbour cannot skew the client's timings.
    amounts = {"cpu": str(cpu), "memory": f"{memory_mib}Mi"}
    return {"requests": dict(amounts), "limits": dict(amounts)}


_CONTAINER_SECURITY: Body = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def _env(spec: LoadTestSpec, role: Role, workers: int) -> list[Body]:
    platform = spec.platform
    values = {
        contract.ENV_RUN_ID: spec.run_id,
        contract.ENV_PAYLOAD: f"{contract.PAYLOAD_DIR}/{contract.PAYLOAD_FILE}",
        contract.ENV_VLLM_URL: platform.vllm_base_url,
        contract.ENV_MODEL: platform.served_model_name,
        contract.ENV_MASTER_HOST: master_host(spec.run_id),
        contract.ENV_MASTER_PORT: str(contract.LOCUST_PORT),
        "HOME": contract.TMP_DIR,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if role == "master":
        values |= {
            contract.ENV_WORKERS: str(workers),
            contract.ENV_API_PORT: str(contract.MASTER_API_PORT),
            contract.ENV_PROMETHEUS_URL: platform.prometheus_url,
            contract.ENV_RUN_DIR: contract.RUN_DIR,
        }
    if isinstance(spec.code, CodeWheel):
        values["PYTHONPATH"] = contract.SITE_DIR
    env: list[Body] = [{"name": k, "value": v} for k, v in values.items()]
    env.append(
        {
            "name": API_KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": API_KEY_SECRET, "key": API_KEY_SECRET_KEY}},
        }
    )
    return env


def install_command() -> list[str]:
    """The init container's install: only the hashed lock and the hashed wheel, no resolver.

    ``--no-deps`` because the lock is the whole closure (the wheel's own metadata also names the
    Pulumi SDKs, which no pod imports); ``--only-binary`` so no sdist's build code ever runs.
    Relative paths: the container's working directory is ``contract.BOOTSTRAP_DIR``.
    """
    return [
        "python",
        "-m",
        "pip",
        "install",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--no-input",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--target",
        contract.SITE_DIR,
        "-r",
        contract.LOCK_REQUIREMENTS,
        "-r",
        contract.PROJECT_REQUIREMENTS,
    ]


def _containers(spec: LoadTestSpec, role: Role, workers: int) -> tuple[list[Body], list[Body]]:
    cpu, memory = (
        (MASTER_CPU, MASTER_MEMORY_MIB)
        if role == "master"
        else (
            WORKER_CPU,
            WORKER_MEMORY_MIB,
        )
    )
    mounts: list[Body] = [
        {"name": "tmp", "mountPath": contract.TMP_DIR},
        {"name": "payload", "mountPath": contract.PAYLOAD_DIR, "readOnly": True},
    ]
    if role == "master":
        mounts.append({"name": "run", "mountPath": contract.RUN_DIR})
    env = _env(spec, role, workers)
    main: Body = {
        "name": role,
        "image": versions.POD_PYTHON_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": [*contract.ENTRYPOINT, role],
        "env": env,
        "resources": _resources(cpu, memory),
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    if role == "master":
        main["ports"] = [
            {"name": "locust", "containerPort": contract.LOCUST_PORT, "protocol": "TCP"},
            {"name": "api", "containerPort": contract.MASTER_API_PORT, "protocol": "TCP"},
        ]
    if not isinstance(spec.code, CodeWheel):
        main["image"] = spec.code.image
        return [main], []
    site = {"name": "site", "mountPath": contract.SITE_DIR}
    main["volumeMounts"] = [*mounts, {**site, "readOnly": True}]
    install: Body = {
        "name": "install",
        "image": versions.POD_PYTHON_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": install_command(),
        "workingDir": contract.BOOTSTRAP_DIR,
        "env": [
            {"name": "HOME", "value": contract.TMP_DIR},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "resources": _resources(cpu, memory),
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "tmp", "mountPath": contract.TMP_DIR},
            {"name": "code", "mountPath": contract.BOOTSTRAP_DIR, "readOnly": True},
            site,
        ],
    }
    # The installed code imports and reads its settings before the run's container starts, so a
    # broken install fails the pod at once, in the init container's log.
    check: Body = {
        **main,
        "name": "check",
        "command": [*contract.ENTRYPOINT, "check", role],
    }
    check.pop("ports", None)
    return [main], [install, check]


def _scheduling(spec: LoadTestSpec) -> Body:
    never_gpu = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": topology.ACCELERATOR_LABEL, "operator": "DoesNotExist"},
                            {
                                "key": topology.ROLE_LABEL,
                                "operator": "NotIn",
                                "values": [topology.GPU_ROLE],
                            },
                        ]
                    }
                ]
            }
        }
    }
    if spec.loadgen.nodes == "existing":
        return {"nodeSelector": dict(spec.platform.system_node_selector), "affinity": never_gpu}
    return {
        "nodeSelector": {topology.ROLE_LABEL: topology.LOADGEN_ROLE},
        "tolerations": [
            {
                "key": topology.LOADGEN_TAINT_KEY,
                "operator": "Equal",
                "value": topology.LOADGEN_TAINT_VALUE,
                "effect": topology.LOADGEN_TAINT_EFFECT,
            }
        ],
        "affinity": never_gpu,
    }


def _volumes(spec: LoadTestSpec, role: Role) -> list[Body]:
    volumes: list[Body] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
        {"name": "payload", "configMap": {"name": PAYLOAD_CONFIG_MAP}},
    ]
    if role == "master":
        volumes.append({"name": "run", "emptyDir": {"sizeLimit": RUN_DIR_SIZE}})
    if isinstance(spec.code, CodeWheel):
        volumes += [
            {
                "name": "code",
                "configMap": {
                    "name": CODE_CONFIG_MAP,
                    "items": [
                        {"key": WHEEL_KEY, "path": spec.code.filename},
                        {
                            "key": contract.PROJECT_REQUIREMENTS,
                            "path": contract.PROJECT_REQUIREMENTS,
                        },
                        {"key": contract.LOCK_REQUIREMENTS, "path": contract.LOCK_REQUIREMENTS},
                    ],
                },
            },
            {"name": "site", "emptyDir": {"sizeLimit": SITE_SIZE}},
        ]
    return volumes


def pod_template(spec: LoadTestSpec, role: Role, workers: int) -> Body:
    """The pod of one role: restricted security, Guaranteed resources, no token."""
    containers, init = _containers(spec, role, workers)
    pod: Body = {
        "serviceAccountName": f"locust-{role}",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": contract.UID,
            "runAsGroup": contract.UID,
            "fsGroup": contract.UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **_scheduling(spec),
        "containers": containers,
        "volumes": _volumes(spec, role),
    }
    if init:
        pod["initContainers"] = init
    return {"metadata": {"labels": labels(spec.run_id, role)}, "spec": pod}


def _checkov_annotations() -> dict[str, str]:
    return {
        f"checkov.io/skip{i}": f"{check}={reason}"
        for i, (check, reason) in enumerate(sorted(CHECKOV_SKIPS.items()), start=1)
    }


def _job_meta(spec: LoadTestSpec, role: Role) -> Body:
    meta = _meta(
        spec,
        f"locust-{role}",
        {
            **_checkov_annotations(),
            # Pulumi would otherwise wait for the Job to complete: the whole run.
            "pulumi.com/skipAwait": "true",
        },
    )
    meta["labels"] = labels(spec.run_id, role)
    return meta


def master_job(spec: LoadTestSpec, workers: int) -> Body:
    """One master pod, never retried: a second master would start the plan over."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _job_meta(spec, "master"),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.deadline_seconds,
            "template": pod_template(spec, "master", workers),
        },
    }


def worker_job(spec: LoadTestSpec, workers: int) -> Body:
    """``workers`` indexed worker pods; a spot reclaim replaces one instead of failing the run.

    ``backoffLimit: 0`` fails the Job (and stops every worker) on the first failure the policy
    does not match: a crash means the measurements are suspect. A pod failed by a disruption
    (eviction on a spot interruption notice, node drain, the node deleted under it: condition
    ``DisruptionTarget``) matches the ``Ignore`` rule instead: it is not counted and the same
    index starts again, once the old pod has fully terminated (``podReplacementPolicy: Failed``,
    the only value allowed with a pod failure policy), and rejoins the master.
    """
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _job_meta(spec, "worker"),
        "spec": {
            "completions": workers,
            "parallelism": workers,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.deadline_seconds,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    }
                ]
            },
            "template": pod_template(spec, "worker", workers),
        },
    }


def _dns_rule() -> Body:
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }


def _vllm_rule(spec: LoadTestSpec) -> Body:
    # No pod selector: every Service of the vLLM namespace, so the ClusterIP is allowed whatever
    # its selector (see the module notes); vLLM's own policy admits only port 8000 anyway.
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": spec.platform.vllm_namespace}
                }
            }
        ],
        "ports": [{"port": spec.platform.vllm_port, "protocol": "TCP"}],
    }


def _prometheus_rule(spec: LoadTestSpec) -> Body:
    port = prometheus_port(spec.platform.prometheus_url)
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": topology.MONITORING_NAMESPACE}
                },
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
        "ports": [{"port": port, "protocol": "TCP"}],
    }


def prometheus_port(url: str) -> int:
    """The port of the Prometheus URL (9090 in-cluster; 80/443 when the URL names none)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if ":" in host:
        return int(host.rsplit(":", 1)[1])
    return 443 if scheme == "https" else 80


def _package_index_rule() -> Body:
    # Only the no-registry path: the init container downloads the locked wheels (pinned by hash)
    # from the package index. Public addresses only: nothing in the VPC, nor the node's IMDS.
    return {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}],
        "ports": [{"port": PYPI_PORT, "protocol": "TCP"}],
    }


def network_policies(spec: LoadTestSpec) -> list[Body]:
    """Deny everything, then allow only what each role needs.

    Workers reach DNS, vLLM and the master's Locust port; the master reaches DNS, vLLM (its
    pre-flight ``/v1/models``) and Prometheus, and only the workers reach it. The CLI's
    port-forward to the master's API enters through the kubelet, not the pod network.
    """
    wheel = isinstance(spec.code, CodeWheel)
    worker_egress = [
        _dns_rule(),
        _vllm_rule(spec),
        {
            "to": [{"podSelector": {"matchLabels": selector("master")}}],
            "ports": [{"port": contract.LOCUST_PORT, "protocol": "TCP"}],
        },
    ]
    master_egress = [_dns_rule(), _vllm_rule(spec), _prometheus_rule(spec)]
    if wheel:
        worker_egress.append(_package_index_rule())
        master_egress.append(_package_index_rule())
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(spec, "default-deny"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(spec, "locust-worker"),
            "spec": {
                "podSelector": {"matchLabels": selector("worker")},
                "policyTypes": ["Egress"],
                "egress": worker_egress,
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(spec, "locust-master"),
            "spec": {
                "podSelector": {"matchLabels": selector("master")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": selector("worker")}}],
                        "ports": [{"port": contract.LOCUST_PORT, "protocol": "TCP"}],
                    }
                ],
                "egress": master_egress,
            },
        },
    ]


def objects(spec: LoadTestSpec, lock: str) -> list[Body]:
    """Every object of the run, in the order they can be applied."""
    workers = spec.sizing().workers
    code = code_config_map(spec, lock)
    return [
        namespace(spec),
        api_key_secret(spec),
        payload_config_map(spec),
        *([code] if code is not None else []),
        service_account(spec, "master"),
        service_account(spec, "worker"),
        *network_policies(spec),
        master_service(spec),
        master_job(spec, workers),
        worker_job(spec, workers),
    ]
