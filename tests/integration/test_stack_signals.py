"""Ctrl-C, SIGTERM and SIGKILL delivered to a real driver process, as a terminal would.

The driver (``tests/stack_driver.py``) runs the orchestrator and the Automation API workspace
on the fake ``pulumi``, in a session of its own; a test signals its whole process group (what
Ctrl-C does to the terminal's foreground group) and reads the fake CLI's log: which calls were
made, in which process group and session, and which signals reached them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtest.cloud.automation import AutomationWorkspace
from loadtest.cloud.journal import Journal
from loadtest.cloud.reap import reap_stacks
from loadtest.cloud.workspace import StackRef
from tests import fake_pulumi

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RUN = "20250101-120000-capacity"


@dataclass
class Driver:
    proc: subprocess.Popen[str]
    tmp: Path

    @property
    def log(self) -> Path:
        return self.tmp / "pulumi.log"

    @property
    def run_dir(self) -> Path:
        return self.tmp / "run"

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def calls(self) -> list[dict[str, Any]]:
        return fake_pulumi.calls(self.log)

    def ops(self, *keep: str) -> list[str]:
        """The commands run, in order (``stack rm``...), only those in ``keep`` if given."""
        words = [[a for a in c.get("argv", []) if not a.startswith("-")] for c in self.calls()]
        ops = [" ".join(w[:2]) if w and w[0] == "stack" else (w[0] if w else "") for w in words]
        return [op for op in ops if not keep or op in keep]

    def events(self) -> list[str]:
        path = self.run_dir / "events.jsonl"
        return [json.loads(line)["kind"] for line in path.read_text().splitlines()]

    def finish(self) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=90)
        return self.proc.returncode, err


def _env(tmp: Path, up_s: float) -> dict[str, str]:
    return {
        **os.environ,
        "FAKE_PULUMI_LOG": str(tmp / "pulumi.log"),
        "FAKE_PULUMI_STATE": str(tmp / "pulumi-state.json"),
        "FAKE_PULUMI_UP_S": str(up_s),
    }


def _start(tmp: Path, *, plain: bool = False, up_s: float = 0.0) -> Driver:
    root = fake_pulumi.install(tmp / "pulumi")
    platform = tmp / "platform"
    platform.mkdir()
    (platform / "Pulumi.yaml").write_text("name: qwen-stress\nruntime: python\n")
    (tmp / "run").mkdir()
    args = [str(tmp / "state"), str(tmp / "run"), str(root), str(platform)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.stack_driver", *args, *(["--plain"] if plain else [])],
        cwd=ROOT,
        env=_env(tmp, up_s),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a job in a terminal
    )
    return Driver(proc, tmp)


def _wait_for(what: str, ready: Callable[[], bool], driver: Driver, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if driver.proc.poll() is not None:
            pytest.fail(f"the driver exited before {what}: {driver.proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            driver.proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _up_running(driver: Driver) -> bool:
    return any("up" in c.get("argv", []) and not c["done"] for c in driver.calls())


def _ctrl_c(driver: Driver) -> None:
    os.killpg(driver.proc.pid, signal.SIGINT)


def test_ctrl_c_during_up_never_reaches_pulumi_and_the_stack_is_destroyed(tmp_path: Path) -> None:
    driver = _start(tmp_path, up_s=2.0)
    _wait_for("pulumi up", lambda: _up_running(driver), driver)
    _ctrl_c(driver)
    code, err = driver.finish()

    assert code == 130, err
    calls = driver.calls()
    (up,) = [c for c in calls if "up" in c["argv"]]
    assert up["done"] and up["signals"] == []  # the update ran to its end, untouched
    # Never in the driver's session; only the SDK's read-only `pulumi version` probe, made when
    # the workspace is built and before any stack exists, runs there.
    assert all(c["sid"] != driver.proc.pid for c in calls if c["argv"] != ["version"])
    ops = driver.ops()
    assert ops.index("up") < ops.index("destroy") < ops.index("stack rm")
    assert not (driver.run_dir / "following").exists()  # no load after the interrupt
    assert driver.events() == ["stack_creating", "stack_up", "stack_destroyed"]
    assert Journal(driver.state).entries() == ([], [])
    assert "the load will not start" in err


def test_without_isolation_the_same_ctrl_c_reaches_the_cli(tmp_path: Path) -> None:
    """Control: the SDK's own ``PulumiCommand`` leaves the CLI in the terminal's group."""
    driver = _start(tmp_path, plain=True, up_s=2.0)
    _wait_for("pulumi up", lambda: _up_running(driver), driver)
    _ctrl_c(driver)
    driver.finish()
    (up,) = [c for c in driver.calls() if "up" in c["argv"]]
    assert up["signals"] == ["SIGINT"]


@pytest.mark.parametrize("sig", [signal.SIGTERM])  # SIGINT, SIGHUP: tests/unit/test_orchestrator
def test_a_signal_during_the_load_collects_then_destroys(
    tmp_path: Path, sig: signal.Signals
) -> None:
    driver = _start(tmp_path)
    _wait_for("the load", (driver.run_dir / "following").exists, driver)
    os.killpg(driver.proc.pid, sig)
    code, err = driver.finish()

    assert code == 130, err
    assert (driver.run_dir / "collected").read_text() == f"interrupted ({sig.name})"
    assert all(c["signals"] == [] for c in driver.calls())
    assert driver.ops("up", "refresh", "destroy", "stack rm") == [
        "up",
        "refresh",
        "destroy",
        "stack rm",
    ]
    assert driver.events()[-1] == "stack_destroyed"
    assert Journal(driver.state).entries() == ([], [])


def test_a_killed_driver_leaves_a_journal_entry_that_reap_clears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = _start(tmp_path)
    _wait_for("the load", (driver.run_dir / "following").exists, driver)
    os.killpg(driver.proc.pid, signal.SIGKILL)
    driver.finish()

    (entry,) = Journal(driver.state).entries()[0]
    assert (entry.stack, entry.state) == (RUN, "up")
    assert "destroy" not in driver.ops()
    for key, value in _env(tmp_path, 0).items():
        monkeypatch.setenv(key, value)
    workspace = AutomationWorkspace(
        platform_dir=tmp_path / "platform",
        work_root=driver.state / "work",
        platform_stack=StackRef.parse("dev"),
        pulumi_root=str(tmp_path / "pulumi"),
    )
    said: list[str] = []
    code = reap_stacks(
        workspace,
        Journal(driver.state),
        older_than_s=0,
        dry_run=False,
        now=entry.expires_at + 1,
        say=said.append,
        retry_delays_s=(0.0,),
    )
    assert code == 0, said
    assert driver.ops("up", "refresh", "destroy", "stack rm") == [
        "up",
        "refresh",
        "destroy",
        "stack rm",
    ]
    assert json.loads((tmp_path / "pulumi-state.json").read_text())["stacks"] == {}
    assert Journal(driver.state).entries() == ([], [])
