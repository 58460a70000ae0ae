"""``qwen-stress run --stack``: flags refused before anything exists, then pre-flight -> stack.

The Pulumi backend is ``FakeWorkspace`` (``tests/cloud_fakes.py``), the cluster a fake probe,
the pods' code a fixed image (no wheel is built), and the follower a stand-in that brings home
the synthetic cloud run of ``tests/cloud_run.py`` as the master's files. What is real: the flag
checks, the stack file, the spec and its inline program, the pre-flight's checks, the
orchestrator (journal, up, destroy, remove, events) and the reports.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from domain.stack_config import load_stack_file
from loadtest import run_files
from loadtest.cli import app
from loadtest.cloud import cloud_run, delivery, journal
from loadtest.cloud.follower import TcpConnector
from loadtest.cloud.orchestrator import StopRequest
from loadtest.cloud.preflight import Condition, Series
from loadtest.cloud.rehearsal import platform_outputs
from loadtest.cloud.run_events import RunEventLog
from loadtest.cloud.spec import CodeImage
from tests import cloud_run as synthetic
from tests.cloud_fakes import FakeWorkspace
from tests.pulumi_mocks import ROOT

KEY = "sk-platform-key-5e1f"
IMAGE = "ghcr.io/example/qwen-stress-loadtest:0.1.0"
SMALL = ["--plan", "ramp", "--baseline-users", "10", "--step-users", "10", "--max-users", "20"]


@dataclass
class FakeProbe:
    """The platform's cluster as the pre-flight reads it: ready unless told otherwise."""

    ready: int = 1
    asked: list[str] = field(default_factory=list)

    def ready_replicas(self, namespace: str, deployment: str) -> int | None:
        self.asked.append("ready_replicas")
        return self.ready

    def scaled_object_ready(self, namespace: str, name: str) -> Condition | None:
        self.asked.append("scaled_object")
        return Condition("True")

    def prometheus_query(self, expr: str) -> Series:
        self.asked.append("prometheus")
        return [({}, 1.0)]

    def list_models(self, namespace: str, deployment: str, api_key: str) -> tuple[int, list[str]]:
        self.asked.append("models")
        served = load_stack_file(ROOT / "Pulumi.dev.yaml").model.served
        return (200, [served]) if api_key == KEY else (401, [])


class FakeFollower:
    """Brings home a finished run's files as the master would have written them."""

    calls: ClassVar[list[Mapping[str, Any]]] = []

    def __init__(self, connector_for: object, run_dir: Path, events: RunEventLog, **_: Any):
        self.run_dir = run_dir
        self.events = events

    def __call__(self, outputs: Mapping[str, Any], stop: StopRequest) -> None:
        FakeFollower.calls.append(dict(outputs))
        master = synthetic.write(self.run_dir.parent / "master-files")
        for name in (run_files.CONFIG, run_files.REQUESTS, run_files.TIMELINE):
            shutil.copy(master / name, self.run_dir / name)
        own = [
            line
            for line in (master / run_files.EVENTS).read_bytes().splitlines(keepends=True)
            if not json.loads(line)["kind"].startswith("stack_")
        ]
        self.events.append(b"".join(own))


@dataclass
class Cloud:
    """The fakes one test wires in, and what they saw."""

    workspace: FakeWorkspace
    probe: FakeProbe
    state: Path


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cloud:
    monkeypatch.chdir(ROOT)  # --stack dev reads Pulumi.dev.yaml from here, as a user's shell
    monkeypatch.setenv(journal.STATE_DIR_ENV, str(tmp_path / "state"))
    outputs = platform_outputs("dev", load_stack_file(ROOT / "Pulumi.dev.yaml"), KEY)
    workspace = FakeWorkspace(platform=outputs, outputs={"runId": "x", "namespace": "loadtest-x"})
    probe = FakeProbe()
    monkeypatch.setattr(cloud_run, "automation_workspace", lambda ref: workspace)
    monkeypatch.setattr(cloud_run, "kube_probe", lambda kubeconfig: probe)
    monkeypatch.setattr(cloud_run, "port_forward", lambda kubeconfig: None)
    monkeypatch.setattr(cloud_run, "Follower", FakeFollower)
    monkeypatch.setattr(
        delivery,
        "choose",
        lambda *a, **k: delivery.Choice(CodeImage(image=IMAGE), f"pods run {IMAGE}"),
    )
    FakeFollower.calls = []
    return Cloud(workspace, probe, tmp_path / "state")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--loadgen-nodes", "some"], "--loadgen-nodes 'some': input should be 'new' or"),
        (["--loadgen-capacity", "reserved"], "--loadgen-capacity 'reserved': input should be"),
        (["--loadgen-instance-type", "g5.xlarge"], "--loadgen-instance-type"),
        (["--loadgen-instance-type", "m9z.huge"], "--loadgen-instance-type"),
        (
            ["--loadgen-nodes", "existing", "--loadgen-capacity", "spot"],
            "--loadgen-instance-type and --loadgen-capacity describe new load-generator nodes",
        ),
        (["--loadgen-nodes", "existing", "--max-users", "2000"], "--loadgen-nodes new"),
        (["--workers", "1", "--max-users", "500"], "1 worker processes carry at most 128 users"),
        (["--url", "http://127.0.0.1:9"], "--url does not go with --stack"),
        (["--rehearse"], "pass one of them"),
        # A plan too big to lay out in memory, too fast or too long for any load-test stack
        (["--max-users", "99999999999999999999999"], "at most 8,192 users in a cloud run"),
        (["--step-users", "1", "--max-users", "5000000"], "at most 8,192 users in a cloud run"),
        (["--plan", "poisson", "--rate", "1e9"], "at most 64000 requests/s with 64 worker pods"),
        (["--step-duration", "99999999999h"], "a load-test stack runs at most 7 days"),
        (["--workers", "65"], "--workers 65: input should be less than or equal to 64"),
        (
            ["--loadgen-nodes", "existing", "--workers", "3", "--max-users", "40"],
            "--workers 3 and the system nodes carry at most 2",
        ),
    ],
)
def test_bad_load_generator_flags_are_refused_before_anything_exists(
    cloud: Cloud, tmp_path: Path, args: list[str], expected: str
) -> None:
    out = tmp_path / "run"
    code, output = run("--stack", "dev", "--out", str(out), *SMALL, *args)
    assert code == 2, output
    assert expected in " ".join(output.split())
    assert output.startswith("error: ") and output.count("\n") == 1
    assert cloud.workspace.calls == [] and cloud.probe.asked == []
    assert not out.exists() and not cloud.state.exists()


def test_the_loadgen_flags_need_a_cloud_run(tmp_path: Path) -> None:
    code, output = run("--loadgen-nodes", "existing", "--out", str(tmp_path / "run"))
    assert code == 2 and "use them with --stack (or --rehearse)" in output


def test_a_stack_without_its_file_here_is_named(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = run("--stack", "org/qwen-stress/dev", "--out", str(tmp_path / "run"), *SMALL)
    assert code == 2 and "Pulumi.dev.yaml is not in" in output
    assert cloud.workspace.calls == []


def test_a_failed_preflight_creates_nothing(cloud: Cloud, tmp_path: Path) -> None:
    cloud.probe.ready = 0
    code, output = run("--stack", "dev", "--out", str(tmp_path / "run"), *SMALL)
    assert code == 2, output
    assert "vLLM has no ready replica" in output
    assert cloud.workspace.ops() == ["platform_outputs"]
    assert FakeFollower.calls == []


def test_run_stack_goes_through_preflight_then_the_stack_and_destroys_it(
    cloud: Cloud, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, output = run("--stack", "dev", "--out", str(out), *SMALL, "--fail-on-slo")
    # The synthetic run's second step breaks the TTFT p99 limit: the CI gate says so.
    assert code == 1, output
    assert cloud.probe.asked[:2] == ["ready_replicas", "scaled_object"]
    assert "models" in cloud.probe.asked
    ops = cloud.workspace.ops()
    assert ops[0] == "platform_outputs"
    assert ops[ops.index("create") :] == [
        "create",
        "tag",
        "config",
        "up",
        "refresh",
        "destroy",
        "remove",
    ]
    assert len(FakeFollower.calls) == 1
    kinds = [json.loads(line)["kind"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert kinds[:2] == ["stack_creating", "stack_up"] and kinds[-1] == "stack_destroyed"
    assert (out / "summary.json").exists() and (out / "report.md").exists()
    assert "destroyed and removed" in output
    assert KEY not in output
    assert not list((cloud.state / "stacks").glob("*.json"))  # the journal entry is closed


def _no_master(outputs: Mapping[str, Any]) -> TcpConnector:
    raise AssertionError("the test asks no master")


def test_the_follower_masks_the_key_in_what_it_brings_home(tmp_path: Path) -> None:
    """Defence in depth: a master that failed to redact still leaves no key on this disk."""
    from loadtest.cloud.follower import Follower  # noqa: PLC0415
    from loadtest.redact import MASK, Redactor  # noqa: PLC0415

    line = json.dumps({"ok": False, "detail": f"echo: Bearer {KEY}"}).encode() + b"\n"
    follower = Follower(_no_master, tmp_path, RunEventLog(tmp_path), redact=Redactor([KEY]))
    follower._request = lambda conn, method, path: (200, line)  # type: ignore[method-assign]
    assert follower._chunk(None, run_files.REQUESTS) == line  # type: ignore[arg-type]
    kept = (tmp_path / run_files.REQUESTS).read_text()
    assert KEY not in kept and MASK in kept
    assert follower.offsets[run_files.REQUESTS] == len(line)  # the master's offsets, unmasked
