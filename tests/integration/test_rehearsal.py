"""The rehearsal end to end: ``run --config Pulumi.dev.yaml --rehearse``, its pods as processes.

The CLI renders the load-test stack under mocks, starts the rendered master and two worker
containers as local processes against the dev stack's autoscaling twin, follows the master
through its API and destroys the stack. The plan is the capacity plan at time scale 0.005
(a 15-minute step is 4.5 s here, a new node and its replica about 3 s), loud enough at 40
users to make the twin scale out: about 20 s of load, 50 s in all on a shared 2-core box.

Every process the CLI starts is recorded while it runs (``Descendants``) and must be gone when
it ends: after a normal end, after Ctrl-C mid-load, and (through the lifelines) a few seconds
after the CLI itself is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from domain.lifeline import GRACE_S
from domain.vllm_args import API_KEY_ENV
from tests.k8s_manifests import schema_errors
from tests.pulumi_mocks import ROOT

pytestmark = pytest.mark.integration

PLAN = ["--plan", "capacity", "--time-scale", "0.005", "--step-duration", "15m"]
PLAN += ["--baseline-users", "8", "--step-users", "32", "--max-users", "40", "--soak", "6m"]
PLAN += ["--workers", "2", "--loadgen-nodes", "existing", "--max-tokens", "24"]
CLI = [sys.executable, "-m", "loadtest.cli", "run", "--config", str(ROOT / "Pulumi.dev.yaml")]
RUN_TIMEOUT_S = 150.0
KUBERNETES_VERSION = "1.35"


class Descendants:
    """Every process below the CLI seen so far (pods start in sessions of their own)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, psutil.Process] = {}

    def poll(self) -> None:
        """Record the processes below the CLI now."""
        try:
            for child in self.root.children(recursive=True):
                self.seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def command_lines(self) -> list[str]:
        """The command lines of the processes seen (while they still run)."""
        found = []
        for p in self.seen.values():
            try:
                found.append(" ".join(p.cmdline()))
            except psutil.Error:
                continue
        return found

    def alive(self) -> list[psutil.Process]:
        """Those still running (a zombie has exited; its parent just has not reaped it)."""
        left = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except psutil.NoSuchProcess:
                continue
        return left

    def kill_all(self) -> None:
        """Clean up after a failed test: nothing of it outlives the test."""
        for p in self.alive():
            try:
                p.kill()
            except psutil.Error:
                continue


def _start(out: Path) -> subprocess.Popen[str]:
    # A session of its own, as a terminal gives a command: Ctrl-C goes to the whole group.
    return subprocess.Popen(
        [*CLI, "--rehearse", "--out", str(out), *PLAN],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def _watch_until(
    process: subprocess.Popen[str], tree: Descendants, done: Callable[[], bool]
) -> None:
    """Record the process tree until ``done()`` or the process ends (then the test fails)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not done():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"the CLI ended early:\n{output}")
        assert time.monotonic() < deadline, "timed out waiting"
        tree.poll()
        time.sleep(0.2)


def _step_started(out: Path, index: int) -> Callable[[], bool]:
    def started() -> bool:
        return any(
            e["kind"] == "step_start" and e["index"] >= index for e in _lines(out / "events.jsonl")
        )

    return started


def _api_key(tree: Descendants) -> str:
    """The key the rehearsal gave its pods (never printed; read from a pod's environment)."""
    for p in tree.seen.values():
        try:
            key = p.environ().get(API_KEY_ENV)
        except psutil.Error:
            continue
        if key:
            return key
    raise AssertionError("no pod process had the API key in its environment")


def _finish(process: subprocess.Popen[str], tree: Descendants) -> str:
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
        tree.kill_all()
    return output


def _no_process_left(tree: Descendants, within_s: float = 0.0) -> None:
    deadline = time.monotonic() + within_s
    while tree.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [" ".join(p.cmdline()) for p in tree.alive()]
    assert not left, f"processes left behind: {left}"


def _objects(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = yaml.safe_load_all((out / "cluster" / "manifests.yaml").read_text(encoding="utf-8"))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _check_manifests(out: Path, run_id: str) -> None:
    """What a reviewer reads in ``cluster/manifests.yaml``: nothing left to guess."""
    objects = _objects(out)
    namespace = objects[("Namespace", f"loadtest-{run_id}")]
    assert namespace["metadata"]["labels"]["qwen-stress.io/role"] == "loadtest"
    for body in objects.values():
        if "binaryData" not in body:  # the wheel's bytes are shown as size and hash
            assert schema_errors(body, KUBERNETES_VERSION) == [], body["metadata"]["name"]
    master_job, worker_job = objects[("Job", "locust-master")], objects[("Job", "locust-worker")]
    master, worker = _container(master_job), _container(worker_job)
    for job, container, role in ((master_job, master, "master"), (worker_job, worker, "worker")):
        assert container["image"] and container["command"][-1] == role
        assert container["resources"]["requests"] == container["resources"]["limits"]
        env = {e["name"]: e for e in container["env"]}
        assert set(contract_env(role)) <= set(env)
        key = env[API_KEY_ENV]
        assert "value" not in key and key["valueFrom"]["secretKeyRef"]["name"] == "vllm-api-key"
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
        assert [c["name"] for c in pod["initContainers"]] == ["install", "check"]
    assert {p["containerPort"] for p in master["ports"]} == {5557, 8080}
    assert worker_job["spec"]["completions"] == worker_job["spec"]["parallelism"] == 2
    assert worker_job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    service = objects[("Service", "locust-master")]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {p["port"] for p in service["spec"]["ports"]} == {5557, 8080}
    # No pod reads the Kubernetes API: no token, so no Role or binding to review.
    assert not [k for k, _ in objects if k in ("Role", "RoleBinding", "ClusterRole")]
    secret = objects[("Secret", "vllm-api-key")]
    assert secret["stringData"] == {"api-key": "[secret]"}


def contract_env(role: str) -> tuple[str, ...]:
    """The variables the pod entrypoint requires of a role (the key comes from the Secret)."""
    from loadtest.pod import REQUIRED_ENV  # noqa: PLC0415

    return REQUIRED_ENV[role]


def test_a_rehearsal_of_the_capacity_plan_with_two_worker_pods(tmp_path: Path) -> None:
    out = tmp_path / "rehearsal"
    started = time.monotonic()
    process = _start(out)
    tree = Descendants(process.pid)
    try:
        _watch_until(process, tree, _step_started(out, 1))
        pods = [c for c in tree.command_lines() if "loadtest.pod" in c]
        key = _api_key(tree)
        while process.poll() is None:
            tree.poll()
            time.sleep(0.2)
    finally:
        output = _finish(process, tree)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, output
    assert sorted(p.rsplit(" ", 1)[-1] for p in pods) == ["master", "worker", "worker"]
    _no_process_left(tree)
    print(f"rehearsal: {elapsed:.1f} s")

    # The same files as a local run, and the cluster's.
    for name in ("config.json", "requests.jsonl", "timeline.jsonl", "events.jsonl"):
        assert (out / name).stat().st_size > 0, name
    for name in ("summary.json", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0, name
    for name in ("pod-master.log", "pod-worker-0.log", "pod-worker-1.log"):
        assert (out / "logs" / name).exists(), name
    resources = json.loads((out / "cluster" / "resources.json").read_text(encoding="utf-8"))
    types = {r["type"] for r in resources}
    assert {"kubernetes:batch/v1:Job", "kubernetes:core/v1:Namespace"} <= types
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    run_id = config["run_id"]
    assert config["target"]["kind"] == "cluster" and config["workers"] == 2
    assert config["loadgen"] == {
        "nodes": 0,
        "instance_type": None,
        "capacity_type": "spot",
        "workers": 2,
    }
    _check_manifests(out, run_id)

    # The stack's events around the master's, on one clock.
    events = _lines(out / "events.jsonl")
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["stack_creating", "stack_up", "workers_ready"]
    assert kinds[-2:] == ["finished", "stack_destroyed"]
    assert events[1]["stack"] == events[-1]["stack"] == run_id
    assert events[1]["t"] < 0 < events[-1]["t"]
    assert events[2]["workers"] == 2

    # Both workers loaded the twin; the summary counts every record.
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    records = _lines(out / "requests.jsonl")
    assert {r["worker"] for r in records} == {0, 1}
    assert summary["overall"]["requests"] == len(records) > 0
    phases = [(s["phase"], s["users"]) for s in summary["steps"]]
    assert phases[:2] == [("baseline", 8), ("ramp", 40)] and phases[-1] == ("cooldown", 8)
    assert summary["capacity"]["max_users_within_slo"] in (8, 40)

    # The autoscaling figures, from the twin's fleet read through its Prometheus API.
    timeline = _lines(out / "timeline.jsonl")
    assert max(t["desired_replicas"] for t in timeline) > 1
    assert max(t["nodes"] for t in timeline) > 1
    scaling = summary["autoscaling"]
    assert scaling["replicas"]["max"] > 1 and scaling["scale_outs"]
    assert scaling["scale_up_lag_s"]["count"] >= 1 and scaling["gpu_hours"] > 0
    print(
        f"capacity {summary['capacity']}, steps {phases}, replicas {scaling['replicas']}, "
        f"scale-up lag {scaling['scale_up_lag_s']}"
    )

    # The key the pods used is in no file of the run.
    for path in out.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert "destroyed" in output or "processes are stopped" in output


def test_ctrl_c_mid_load_destroys_the_stack_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    process = _start(out)
    tree = Descendants(process.pid)
    try:
        _watch_until(process, tree, _step_started(out, 1))
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        output = _finish(process, tree)
    finally:
        tree.kill_all()
    assert process.returncode == 130, output
    _no_process_left(tree)
    kinds = [e["kind"] for e in _lines(out / "events.jsonl")]
    assert "stack_up" in kinds and kinds[-1] == "stack_destroyed"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] is True
    assert summary["overall"]["requests"] == len(_lines(out / "requests.jsonl")) > 0
    assert (out / "report.md").stat().st_size > 0
    assert "stopped" in output


def test_a_killed_cli_leaves_no_process_behind(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    process = _start(out)
    tree = Descendants(process.pid)
    try:
        _watch_until(process, tree, _step_started(out, 0))
        tree.poll()
        pods = [c for c in tree.command_lines() if "loadtest.pod" in c]
        assert len(pods) == 3, pods
        process.kill()  # no handler runs: only the lifelines stop the pods and the twin
        process.wait(timeout=10)
        _no_process_left(tree, within_s=GRACE_S + 5)
    finally:
        tree.kill_all()
