"""The no-registry path's pod start-up, run locally: build the wheel, install it, check it.

The init containers' rendered commands run as local processes (``loadtest.cloud.local_pod``)
against a wheel built from this checkout, offline: the lock's third-party packages are not
downloaded here (``--no-index --find-links`` on the bootstrap directory, the lock replaced by an
empty one; this environment already has them), so what is exercised is the wheel's build, its
hash check, the install into the pod's site directory and the installed code's own check.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from domain import lifeline
from domain.stack_config import load_stack_file
from loadtest import run_files, workload
from loadtest.cloud import contract, delivery, manifests
from loadtest.cloud.follower import Follower, RunFailedError, TcpConnector
from loadtest.cloud.local_pod import LocalContainer, materialise
from loadtest.cloud.orchestrator import StopRequest
from loadtest.cloud.run_events import RunEventLog
from loadtest.cloud.spec import CodeWheel, LoadGenOptions
from loadtest.cluster_target import ClusterFleet
from loadtest.payload import RunPayload
from loadtest.run_options import RunOptions
from loadtest.schema import RunConfig
from loadtest.targets import FixedLatencyTarget, free_port
from tests.loadtest_specs import API_KEY, RUN_ID, WHEEL, platform, spec
from tests.master_harness import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = delivery.source_root()
    had_build_dir = (root / "build").exists()
    path = delivery.build_wheel(root, tmp_path_factory.mktemp("wheel"))
    # The build ran on a copy: the checkout gains no build/ directory for mypy to trip over.
    assert (root / "build").exists() == had_build_dir
    return path


def _pod(
    code: CodeWheel, role: str, root: Path
) -> tuple[list[LocalContainer], list[LocalContainer]]:
    s = spec(code=code)
    objects = manifests.objects(s, lock="")  # the third-party packages are already here
    config_maps = {m["metadata"]["name"]: m for m in objects if m["kind"] == "ConfigMap"}
    (job,) = [
        m for m in objects if m["kind"] == "Job" and m["metadata"]["name"] == f"locust-{role}"
    ]
    secrets = {manifests.API_KEY_SECRET: {manifests.API_KEY_SECRET_KEY: API_KEY}}
    return materialise(job["spec"]["template"]["spec"], config_maps, secrets, root)


def _run(container: LocalContainer, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **container.env}
    # Offline: the package index is the bootstrap directory itself.
    return subprocess.run(
        [*container.argv, *extra],
        env=env,
        cwd=container.cwd,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both roles' pods materialised in one root (same volumes), the wheel installed once."""
    root = tmp_path_factory.mktemp("pod")
    code = CodeWheel(filename=wheel.name, content=wheel.read_bytes())
    pods = {role: _pod(code, role, root) for role in ("worker", "master")}
    (install, _), _ = pods["worker"]
    site = root / "site"
    rendered = [a.replace(contract.SITE_DIR, str(site)) for a in manifests.install_command()]
    assert install.argv[1:] == rendered[1:]
    done = _run(install, "--no-index", "--find-links", str(install.cwd))
    assert done.returncode == 0, done.stderr
    return {"site": site, "pods": pods}


def test_the_init_container_installs_the_wheel_into_the_pods_site(
    installed: dict[str, Any],
) -> None:
    site: Path = installed["site"]
    assert (site / "loadtest" / "pod.py").is_file()
    assert (site / "loadtest" / "cloud" / "data" / contract.LOCK_REQUIREMENTS).is_file()
    assert (site / "domain" / "data" / "instances-us-east-1.csv").is_file()


@pytest.mark.parametrize("role", ["worker", "master"])
def test_the_installed_code_checks_out_in_each_role(installed: dict[str, Any], role: str) -> None:
    site: Path = installed["site"]
    (_, check), (main,) = installed["pods"][role]
    checked = _run(check)
    assert checked.returncode == 0, checked.stderr
    found: dict[str, Any] = json.loads(checked.stdout)
    # The installed wheel ran, not this checkout: PYTHONPATH puts the pod's site first.
    assert found["code"] == str(site / "loadtest")
    assert found["role"] == role
    assert found["payload_keys"] == ["maxUsers", "plan"]
    assert API_KEY not in checked.stdout + checked.stderr
    assert main.argv[-1] == role and main.env["PYTHONPATH"] == str(site)


def test_a_wheel_that_does_not_match_its_hash_is_refused(wheel: Path, tmp_path: Path) -> None:
    code = CodeWheel(filename=wheel.name, content=wheel.read_bytes())
    (install, _), _ = _pod(code, "worker", tmp_path)
    tampered = install.cwd / wheel.name
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    done = _run(install, "--no-index", "--find-links", str(install.cwd))
    assert done.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr
    assert not (tmp_path / "site" / "loadtest").exists()


# -- the master pod and two worker pods, run from the installed wheel ----------------------------

SERVED = platform().served_model_name
RUN_SECONDS = 4.0


def _payload(seconds: float) -> RunPayload:
    options = RunOptions(stack="dev", users=4, duration=seconds, workers=2, max_tokens=8)
    return RunPayload(
        options=options,
        workload=workload.load(None).with_max_tokens(8),
        cluster=ClusterFleet.from_stack(
            load_stack_file(delivery.source_root() / "Pulumi.dev.yaml")
        ),
        command=["qwen-stress", "run", "--stack", "dev", "--users", "4"],
        sample_interval_s=1.0,
    )


@dataclass
class Pods:
    master: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    api_port: int
    run_dir: Path
    logs: Path

    def all(self) -> list[subprocess.Popen[bytes]]:
        return [self.master, *self.workers]


@pytest.fixture
def vllm() -> Iterator[FixedLatencyTarget]:
    """vLLM as the pods see it: the served model, the key wanted on every /v1 route."""
    target = FixedLatencyTarget(20.0, 5.0, models=(SERVED,), api_key=API_KEY)
    target.start()
    yield target
    target.stop()


@pytest.fixture
def pods(
    installed: dict[str, Any],
    vllm: FixedLatencyTarget,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Pods]:
    """The rendered master and worker Jobs' containers as processes, as the rehearsal runs them.

    Service names resolve to 127.0.0.1, vLLM and Prometheus are the fixed-latency server (which
    has no Prometheus: the fleet fields are missing and say why), the ports are free ones, and
    the code is the wheel the init container installed. A test may give (``indirect``
    parametrization) the master's Python code instead of its entrypoint (a fault injected
    first) or the run's length in seconds.
    """
    param: dict[str, Any] = getattr(request, "param", {})
    master_code: str | None = param.get("master_code")
    seconds: float = param.get("seconds", RUN_SECONDS)
    code = WHEEL  # installed already: only its ConfigMap is rendered, never read
    s = spec(
        code=code,
        payload=_payload(seconds).model_dump_json(),
        loadgen=LoadGenOptions(nodes="existing", workers=2),
        peak_users=4,
        plan_seconds=seconds,
    )
    objects = manifests.objects(s, lock="")
    config_maps = {m["metadata"]["name"]: m for m in objects if m["kind"] == "ConfigMap"}
    jobs = {m["metadata"]["name"]: m for m in objects if m["kind"] == "Job"}
    secrets = {manifests.API_KEY_SECRET: {manifests.API_KEY_SECRET_KEY: API_KEY}}
    root = tmp_path / "pods"
    replace = {
        manifests.master_host(RUN_ID): "127.0.0.1",
        s.platform.vllm_base_url.removesuffix("/v1"): vllm.base_url,
        s.platform.prometheus_url: vllm.base_url,
    }
    locust_port, api_port = free_port(), free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    started: list[subprocess.Popen[bytes]] = []

    def start(job: str, name: str, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        _, (main,) = materialise(
            jobs[job]["spec"]["template"]["spec"],
            config_maps,
            secrets,
            root / name,
            replace={**replace, str(root / name / "site"): str(installed["site"])},
        )
        env = {
            "PATH": os.environ["PATH"],
            **main.env,
            contract.ENV_MASTER_PORT: str(locust_port),
            **extra,
            **lifeline.child_env(),
        }
        argv = main.argv
        if name == "master" and master_code is not None:
            argv = [argv[0], "-c", master_code]
        with (logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=main.cwd, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(process)
        return process, Path(env.get(contract.ENV_RUN_DIR, ""))

    master, run_dir = start(
        "locust-master",
        "master",
        {contract.ENV_BIND_HOST: "127.0.0.1", contract.ENV_API_PORT: str(api_port)},
    )
    workers = [
        start("locust-worker", f"worker-{i}", {contract.ENV_JOB_INDEX: str(i)})[0] for i in range(2)
    ]
    try:
        yield Pods(master, workers, api_port, run_dir, logs)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def _follow(pods: Pods, home: Path, proxy: FaultProxy, stop: StopRequest | None = None) -> Follower:
    def gone() -> str | None:
        code = pods.master.poll()
        return None if code is None else f"the master process exited with code {code}"

    connector = TcpConnector("127.0.0.1", proxy.port, gone=gone)
    follower = Follower(
        lambda _outputs: connector,
        home,
        RunEventLog(home),
        say=lambda _line: None,
        show_live=False,
        poll_s=0.2,
        startup_s=60,
        retry_s=0.2,
    )
    follower({}, stop or StopRequest())
    return follower


def test_the_master_pod_runs_the_plan_with_two_worker_pods_and_the_run_comes_home(
    pods: Pods, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proxy = FaultProxy(pods.api_port)
    try:
        _follow(pods, home, proxy)
    finally:
        proxy.close()
    # Released, the master exits; the workers leave with it.
    codes = [p.wait(timeout=30) for p in pods.all()]
    assert codes == [0, 0, 0], [(p.name, p.read_text()[-2000:]) for p in pods.logs.iterdir()]
    for name in (run_files.REQUESTS, run_files.TIMELINE, run_files.EVENTS, run_files.CONFIG):
        assert (home / name).read_bytes() == (pods.run_dir / name).read_bytes(), name
    records = [json.loads(line) for line in (home / run_files.REQUESTS).read_text().splitlines()]
    assert len(records) >= 20 and {r["worker"] for r in records} == {0, 1}
    assert all(r["ok"] and r["output_tokens"] == 8 for r in records)
    events = [json.loads(line) for line in (home / run_files.EVENTS).read_text().splitlines()]
    assert [e["kind"] for e in events][:2] == ["workers_ready", "step_start"]
    assert events[-1]["kind"] == "finished" and events[-1]["interrupted"] is False
    config = RunConfig.model_validate_json((home / run_files.CONFIG).read_bytes())
    assert config.run_id == RUN_ID and config.workers == 2 and config.model == SERVED
    assert config.target.kind == "cluster"
    timeline = [json.loads(line) for line in (home / run_files.TIMELINE).read_text().splitlines()]
    assert timeline and all("target_poll_error" in t for t in timeline)  # no Prometheus here
    # What came home makes the same summary and reports as a local run's directory.
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.cli", "report", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((home / "summary.json").read_text())
    assert summary["overall"]["requests"] == len(records)
    # The key was in every pod's environment and in every request; never in what the API
    # served, the files at home or in the pod, or the pods' logs.
    assert API_KEY.encode() not in bytes(proxy.answers)
    assert len(proxy.answers) > 1000
    for where in (home, pods.run_dir, pods.logs):
        for path in where.rglob("*"):
            if path.is_file():
                assert API_KEY.encode() not in path.read_bytes(), path


CRASHING_MASTER = """
import sys
from loadtest import plan_run

def crash(*_args, **_kwargs):
    raise RuntimeError("injected failure")

plan_run.Collector.step_passes = crash  # judging the first step, in the plan driver
from loadtest.pod import main
sys.exit(main(["master"]))
"""


@pytest.mark.parametrize("pods", [{"master_code": CRASHING_MASTER}], indirect=True)
def test_a_crash_in_the_master_pods_plan_driver_ends_the_run_with_its_files_and_reason(
    pods: Pods, tmp_path: Path
) -> None:
    """As in a local run (``test_load_runs``): the workers stop, the files close, and the
    failure is said (the master's status and exit code), not a hang until the Job's deadline."""
    home = tmp_path / "home"
    home.mkdir()
    proxy = FaultProxy(pods.api_port)
    failure = "the plan driver failed (RuntimeError: injected failure)"
    try:
        # The run fails as a local one does (exit 1 there), once its files are home.
        with pytest.raises(RunFailedError, match=re.escape(failure)):
            _follow(pods, home, proxy)
    finally:
        proxy.close()
    assert pods.master.wait(timeout=30) == 1
    assert [w.wait(timeout=30) for w in pods.workers] == [0, 0]
    events = [json.loads(line) for line in (home / run_files.EVENTS).read_text().splitlines()]
    errors = [(e["where"], e["error"]) for e in events if e["kind"] == "run_error"]
    assert errors == [("plan driver", "RuntimeError: injected failure")]
    assert events[-1]["kind"] == "finished" and events[-1]["interrupted"] is True
    for name in (run_files.REQUESTS, run_files.TIMELINE, run_files.EVENTS):
        assert (home / name).read_bytes() == (pods.run_dir / name).read_bytes(), name
    log = (pods.logs / "master.log").read_text()
    assert "the run failed: the plan driver failed (RuntimeError: injected failure)" in log


@pytest.mark.parametrize("pods", [{"seconds": 120.0}], indirect=True)
def test_a_stop_from_the_cli_ends_the_master_pods_run_once_with_every_record_home(
    pods: Pods, tmp_path: Path
) -> None:
    """Ctrl-C at the CLI: the follower passes the stop on; asked twice, the master stops once
    and still completes and serves its files."""
    home = tmp_path / "home"
    home.mkdir()
    proxy = FaultProxy(pods.api_port)
    stop = StopRequest()

    def interrupt_once_records_are_home() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            path = home / run_files.REQUESTS
            if path.exists() and path.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.1)
        stop.request("interrupted (Ctrl-C)")
        # A second stop, as a second CLI or a retry after a lost answer would send it.
        conn = http.client.HTTPConnection("127.0.0.1", pods.api_port, timeout=5)
        conn.request("POST", "/stop")
        assert conn.getresponse().status == 202
        conn.close()

    started = time.monotonic()
    threading.Thread(target=interrupt_once_records_are_home, daemon=True).start()
    try:
        follower = _follow(pods, home, proxy, stop)
    finally:
        proxy.close()
    assert time.monotonic() - started < 90  # not the 120 s the plan asked for
    assert follower.status is not None and follower.status.error is None
    assert [p.wait(timeout=30) for p in pods.all()] == [0, 0, 0]
    events = [json.loads(line) for line in (home / run_files.EVENTS).read_text().splitlines()]
    finished = [e for e in events if e["kind"] == "finished"]
    assert len(finished) == 1 and finished[0]["interrupted"] is True
    assert finished[0]["stop_reason"] == "stopped from the CLI (Ctrl-C or SIGTERM there)"
    for name in (run_files.REQUESTS, run_files.TIMELINE, run_files.EVENTS):
        assert (home / name).read_bytes() == (pods.run_dir / name).read_bytes(), name
    records = [json.loads(line) for line in (home / run_files.REQUESTS).read_text().splitlines()]
    assert len(records) >= 10 and all(r["ok"] for r in records)  # the users finished theirs
