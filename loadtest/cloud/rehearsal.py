"""The rehearsal: the load-test stack of a stack file, rendered and run here, before paying.

``qwen-stress run --config Pulumi.<stack>.yaml --rehearse`` goes through the same orchestrator
and follower as ``--stack``, with these stand-ins for what a deployed platform would give:

- ``platform_outputs``: the outputs the platform stack would export for that file (the same
  cluster name, Service URLs, model, tags; a fake kubeconfig, node role and subnets, and a
  random API key that the local twin checks);
- ``RehearsalWorkspace``: the Pulumi backend. Its stack's ``up`` runs the real inline program
  under Pulumi mocks (``render``), writes what it would create into the run directory
  (``cluster/resources.json``: every resource with type, name and inputs, secrets as
  ``[secret]``; ``cluster/manifests.yaml``: the Kubernetes objects), then starts the rendered
  master and worker containers as local processes: their commands and environment as
  rendered, Service names resolved to 127.0.0.1 and the platform's URLs to the twin, mounted
  ConfigMaps written to directories (``local_pod``). ``destroy`` stops them;
- ``TwinProbe``: the cluster the pre-flight reads (the twin's status, its PromQL, its
  ``/v1/models``).

What differs from a pod, and why: the no-registry path's ``install`` init container is not run
(it downloads the locked wheels from the package index; the code it would install is this
checkout, which the processes run); the ports the master listens on are free ones on
127.0.0.1, not 5557 and 8080 on a pod's own address (this machine is shared); and each process
holds a lifeline to the CLI (``domain.lifeline``), so none outlives it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from domain import lifeline, topology
from domain.stack_config import StackConfig
from domain.topology import LOADTEST_PROJECT
from infra.platform import cluster_name
from infra.tagging import default_tags
from loadtest.cloud import contract, manifests
from loadtest.cloud.follower import TcpConnector
from loadtest.cloud.kube_probe import parse_vector
from loadtest.cloud.local_pod import LocalContainer, materialise
from loadtest.cloud.preflight import Condition, ProbeError, Series
from loadtest.cloud.render import Rendered, is_object, manifest, public, render, reveal
from loadtest.cloud.workspace import (
    OnOutput,
    Program,
    StackListing,
    StackMissingError,
    StackRef,
    WorkspaceError,
)
from loadtest.targets import free_port, http_get, list_models

PLATFORM_PROJECT = "qwen-stress"
FAKE_ACCOUNT = "000000000000"
FAKE_KUBECONFIG = json.dumps(
    {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rehearsal", "cluster": {"server": "https://rehearsal.invalid"}}],
        "contexts": [{"name": "rehearsal", "context": {"cluster": "rehearsal", "user": "none"}}],
        "current-context": "rehearsal",
        "users": [{"name": "none", "user": {}}],
    }
)
SKIPPED_INIT = {"install": "downloads the locked wheels from the package index"}
INIT_TIMEOUT_S = 120.0
STOP_GRACE_S = float(manifests.TERMINATION_GRACE_SECONDS)
EXIT_WAIT_S = 3.0
"""At destroy, how long the pods of a finished run get to exit on their own before SIGTERM."""
CLUSTER_DIR = "cluster"
RESOURCES_FILE = "resources.json"
MANIFESTS_FILE = "manifests.yaml"
_KIND_ORDER = ("Namespace", "Secret", "ConfigMap", "ServiceAccount", "NetworkPolicy", "Service")


def platform_outputs(stack_name: str, stack: StackConfig, api_key: str) -> dict[str, Any]:
    """What ``pulumi stack output --show-secrets`` of the platform stack would give.

    Taken from the stack file the way the platform program computes them (a test compares the
    two); only the cloud's own answers are stand-ins: the kubeconfig, node role and subnets.
    """
    service_host = f"{topology.VLLM_DEPLOYMENT}.{topology.VLLM_NAMESPACE}.svc.cluster.local"
    return {
        "clusterName": cluster_name(stack.cluster.name_prefix, stack_name),
        "region": stack.region,
        "kubeconfig": FAKE_KUBECONFIG,
        "kubernetesVersion": stack.cluster.kubernetes_version,
        "nodeRoleArn": f"arn:aws:iam::{FAKE_ACCOUNT}:role/rehearsal-nodes",
        "privateSubnetIds": ["subnet-rehearsal-a", "subnet-rehearsal-b"],
        "systemNodeSelector": {topology.ROLE_LABEL: topology.SYSTEM_ROLE},
        "costTags": default_tags(stack.tags, PLATFORM_PROJECT, stack_name),
        "vllmBaseUrl": f"http://{service_host}:{topology.VLLM_PORT}/v1",
        "vllmNamespace": topology.VLLM_NAMESPACE,
        "vllmServicePort": topology.VLLM_PORT,
        "servedModelName": stack.model.served,
        "vllmApiKey": api_key,
        "prometheusUrl": topology.PROMETHEUS_URL,
    }


class TwinProbe:
    """The pre-flight's view of the cluster, answered by the local twin."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def ready_replicas(self, namespace: str, deployment: str) -> int | None:
        """Ready replicas from ``/fleet/status``."""
        status, body = http_get(self.base_url + topology.FLEET_STATUS_PATH, timeout=5.0)
        if status != 200:
            raise ProbeError(f"the twin's status answered HTTP {status}")
        return int(json.loads(body)["ready_replicas"])

    def scaled_object_ready(self, namespace: str, name: str) -> Condition | None:
        """Ready: the twin applies the ScaledObject's rules itself."""
        return Condition("True", "Twin", "the twin scales by the stack's autoscaling spec")

    def prometheus_query(self, expr: str) -> Series:
        """The twin's ``/api/v1/query`` (it answers exactly the queries a cloud run sends)."""
        query = urllib.parse.urlencode({"query": expr})
        status, body = http_get(f"{self.base_url}/api/v1/query?{query}", timeout=5.0)
        if status == 0:
            raise ProbeError("the twin's Prometheus API did not answer")
        return parse_vector(body)

    def list_models(self, namespace: str, deployment: str, api_key: str) -> tuple[int, list[str]]:
        """The twin's ``/v1/models`` with the key."""
        return list_models(self.base_url, api_key)


@dataclass
class PodProcess:
    """One rendered container running as a local process."""

    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


def _sorted_objects(rendered: Rendered) -> list[dict[str, Any]]:
    objects = [manifest(r) for r in rendered.resources if is_object(r)]

    def order(body: dict[str, Any]) -> tuple[int, str]:
        kind = body["kind"]
        rank = _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)
        return rank, body["metadata"]["name"]

    return sorted(objects, key=order)


def _readable(body: dict[str, Any]) -> dict[str, Any]:
    """``binaryData`` (the wheel, base64) as its size and hash: what a reviewer can check."""
    binary = body.get("binaryData")
    if not isinstance(binary, dict):
        return body
    shown = {}
    for key, value in binary.items():
        data = base64.b64decode(value)
        shown[key] = f"[{len(data)} bytes, sha256:{hashlib.sha256(data).hexdigest()}]"
    return {**body, "binaryData": shown}


def write_cluster_files(rendered: Rendered, into: Path) -> tuple[Path, Path]:
    """``resources.json`` (every resource, secrets hidden) and ``manifests.yaml`` (the objects)."""
    into.mkdir(parents=True, exist_ok=True)
    resources = [
        {"type": r.type, "name": r.name, "inputs": _readable(public(r.inputs))}
        for r in sorted(rendered.resources, key=lambda r: (r.type, r.name))
    ]
    resources_path = into / RESOURCES_FILE
    resources_path.write_text(json.dumps(resources, indent=2) + "\n", encoding="utf-8")
    manifests_path = into / MANIFESTS_FILE
    manifests_path.write_text(
        yaml.safe_dump_all(
            [_readable(o) for o in _sorted_objects(rendered)], sort_keys=False, width=100
        ),
        encoding="utf-8",
    )
    return resources_path, manifests_path


class RehearsalStack:
    """The load-test stack of the rehearsal: rendered by ``up``, its pods run as processes."""

    def __init__(self, workspace: RehearsalWorkspace, name: str, program: Program) -> None:
        self.workspace = workspace
        self.name = name
        self.work_dir = str(workspace.run_dir / CLUSTER_DIR)
        self.program = program
        self.pods: list[PodProcess] = []
        self.api_port = 0
        self.rendered: Rendered | None = None
        self._root: Path | None = None

    def set_config(self, values: Mapping[str, str]) -> None:
        """Nothing to keep: the program reads its spec, not the stack's config."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Nothing to keep: no backend lists this stack."""

    def up(self, on_output: OnOutput) -> dict[str, Any]:
        """Render the program, write what it would create, start its master and workers."""
        rendered = render(self.program, project=LOADTEST_PROJECT, stack=self.name)
        self.rendered = rendered
        resources, objects = write_cluster_files(rendered, Path(self.work_dir))
        for r in rendered.resources:
            on_output(f"+  {r.type} {r.name} rendered")
        on_output(f"wrote {resources} and {objects}")
        self._root = Path(tempfile.mkdtemp(prefix=f"qwen-stress-rehearsal-{self.name}-"))
        self._start_pods(rendered, on_output)
        return dict(rendered.outputs)

    def _start_pods(self, rendered: Rendered, on_output: OnOutput) -> None:
        ws = self.workspace
        objects = rendered.objects()
        config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
        secret = next(o for o in objects if o["kind"] == "Secret")
        secrets = {secret["metadata"]["name"]: dict(reveal(secret.get("stringData") or {}))}
        jobs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Job"}
        run_id = str(rendered.outputs["runId"])
        replace = {
            manifests.master_host(run_id): "127.0.0.1",
            ws.outputs["vllmBaseUrl"].removesuffix("/v1"): ws.twin_url,
            ws.outputs["prometheusUrl"]: ws.twin_url,
        }
        locust_port, self.api_port = free_port(), free_port()
        ports = {contract.ENV_MASTER_PORT: str(locust_port)}
        pods = [("master", jobs["locust-master"], ports | {
            contract.ENV_BIND_HOST: "127.0.0.1", contract.ENV_API_PORT: str(self.api_port),
        })]  # fmt: skip
        worker = jobs["locust-worker"]
        pods += [
            (f"worker-{i}", worker, ports | {contract.ENV_JOB_INDEX: str(i)})
            for i in range(int(worker["spec"]["completions"]))
        ]
        assert self._root is not None
        planned = []
        for name, job, extra in pods:
            init, main = materialise(
                job["spec"]["template"]["spec"],
                config_maps,
                secrets,
                self._root / name,
                replace=replace,
            )
            planned.append((name, init, main, extra))
        # As the kubelet does, each pod's init containers run before its container; pods start
        # side by side.
        self._run_init(planned)
        for name, _, main, extra in planned:
            (container,) = main
            log = self._log(name)
            self.pods.append(PodProcess(name, self._spawn(container, extra, log), log))
        on_output(f"started the master and {len(self.pods) - 1} workers as local processes")

    def _log(self, name: str) -> IO[bytes]:
        logs = self.workspace.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return (logs / f"pod-{name}.log").open("ab")

    def _spawn(
        self, container: LocalContainer, extra: dict[str, str], log: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        log.flush()
        return subprocess.Popen(
            container.argv,
            env=self._env(container, extra),
            cwd=container.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _run_init(
        self, planned: list[tuple[str, list[LocalContainer], list[LocalContainer], dict[str, str]]]
    ) -> None:
        """Every pod's init containers, in order per pod, the pods side by side."""
        depth = max(len(init) for _, init, _, _ in planned)
        for step in range(depth):
            running = []
            for name, init, _, extra in planned:
                if step >= len(init):
                    continue
                container, log = init[step], self._log(name)
                if container.name in SKIPPED_INIT:
                    log.write(
                        f"[rehearsal] init container {container.name} not run: it "
                        f"{SKIPPED_INIT[container.name]}\n".encode()
                    )
                    log.close()
                    continue
                running.append((name, container, self._spawn(container, extra, log), log))
            deadline = time.monotonic() + INIT_TIMEOUT_S
            failed = []
            for name, container, process, log in running:
                try:
                    code = process.wait(max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    process.kill()
                    code = process.wait()
                log.close()
                if code != 0:
                    failed.append(f"{name}'s {container.name} (code {code})")
            if failed:
                logs = self.workspace.run_dir / "logs"
                raise WorkspaceError(
                    f"init container failed: {', '.join(failed)}; see {logs}/pod-*.log"
                )

    def _env(self, container: LocalContainer, extra: dict[str, str]) -> dict[str, str]:
        # What a pod has: its rendered environment and the image's PATH; nothing of this shell.
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **container.env,
            **extra,
            **lifeline.child_env(),
        }

    def master_gone(self) -> str | None:
        """Why the master process will never answer again, or None while it runs."""
        master = next((p for p in self.pods if p.name == "master"), None)
        if master is None or master.process.poll() is None:
            return None
        return f"the master process exited with code {master.process.returncode}"

    def refresh(self, on_output: OnOutput) -> list[str]:
        """Nothing to read back: the processes are the state."""
        on_output(f"{sum(p.process.poll() is None for p in self.pods)} pod processes running")
        return []

    def destroy(self, on_output: OnOutput) -> None:
        """SIGTERM every process (as deleting a pod does), SIGKILL what is left after the grace.

        A run that ended normally has released its master, whose workers follow it out: a few
        seconds to do so first, so their exit codes say how they ended.
        """
        settle = time.monotonic() + EXIT_WAIT_S
        while any(p.process.poll() is None for p in self.pods) and time.monotonic() < settle:
            time.sleep(0.1)
        for pod in self.pods:
            if pod.process.poll() is None:
                pod.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for pod in self.pods:
            while pod.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if pod.process.poll() is None:
                on_output(f"{pod.name} did not stop within {STOP_GRACE_S:.0f} s: killed")
                pod.process.kill()
                pod.process.wait()
            pod.log.close()
            on_output(f"-  {pod.name} stopped (exit code {pod.process.returncode})")
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def cancel(self) -> None:
        """No lock to release."""

    def remove(self) -> None:
        """Forget the stack."""
        self.workspace.stacks.pop(self.name, None)


class RehearsalWorkspace:
    """A backend of one stack, in this process, whose ``up`` runs the pods here."""

    def __init__(self, run_dir: Path, outputs: dict[str, Any], twin_url: str) -> None:
        self.run_dir = run_dir
        self.outputs = outputs
        self.twin_url = twin_url
        self.stacks: dict[str, RehearsalStack] = {}

    def platform_outputs(self, stack: StackRef) -> dict[str, Any]:
        """The outputs derived from the stack file."""
        return dict(self.outputs)

    def create(self, name: str, program: Program) -> RehearsalStack:
        """A new rehearsal stack for ``program``."""
        stack = self.stacks.setdefault(name, RehearsalStack(self, name, program))
        return stack

    def select(self, name: str) -> RehearsalStack:
        """The stack of that name, if this rehearsal made it."""
        if name not in self.stacks:
            raise StackMissingError(f"the rehearsal has no stack {name!r}")
        return self.stacks[name]

    def list_stacks(self) -> list[StackListing]:
        """Nothing outlives a rehearsal."""
        return []

    def connector(self, outputs: Mapping[str, Any]) -> TcpConnector:
        """The follower's way to the master process's API."""
        stack = next(iter(self.stacks.values()))
        return TcpConnector("127.0.0.1", stack.api_port, gone=stack.master_gone)
