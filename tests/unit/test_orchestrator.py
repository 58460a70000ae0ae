"""The ephemeral stack is destroyed and removed whatever happens: the fault matrix.

Each row injects one fault into the fake workspace (or delivers a real signal to this process
from inside an operation) and checks the same ending: destroy then remove called, the journal
entry closed (kept, naming the stack, when the destroy never succeeds), the events written.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from loadtest.cloud.journal import Journal
from loadtest.cloud.orchestrator import (
    EXIT_STACK_LEFT,
    EventLog,
    MasterLostError,
    Orchestrator,
    Outcome,
    PreflightError,
    StackRequest,
    StopRequest,
)
from loadtest.cloud.workspace import (
    EXPIRES_AT_TAG,
    RUN_ID_TAG,
    StackLockedError,
    StackRef,
    WorkspaceError,
)
from tests.cloud_fakes import ALWAYS, FakeWorkspace

RUN_ID = "20250101-120000-capacity"


def _kill(sig: signal.Signals, times: int = 1) -> Callable[[], None]:
    def deliver() -> None:
        for _ in range(times):
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # let the handler run before the next one (as a person would)

    return deliver


@dataclass
class Follower:
    """A stand-in for the runner: behaves as each row says, records what it saw."""

    behaviour: str = "finish"
    calls: int = 0
    saw_stop: bool = False
    saw_urgent: bool = False
    collected: bool = False
    release: threading.Event = field(default_factory=threading.Event)

    def __call__(self, outputs: Mapping[str, Any], stop: StopRequest) -> None:
        self.calls += 1
        assert outputs["masterService"] == "locust-master"
        if self.behaviour == "finish":
            return
        if self.behaviour == "raise":
            raise RuntimeError("the plan driver crashed")
        if self.behaviour == "master lost":
            raise MasterLostError("master pod locust-master-0 gone (node reclaimed)")
        if self.behaviour.startswith("signal"):
            sig = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sighup": signal.SIGHUP}[
                self.behaviour.split()[1]
            ]
            _kill(sig, times=2 if "twice" in self.behaviour else 1)()
        # Wait for a stop as the runner does, then "collect" unless told it is urgent.
        self.saw_stop = stop.wait(10)
        self.saw_urgent = stop.urgent
        if self.behaviour.endswith("hang"):
            self.release.wait(10)  # never returns in time: the orchestrator must go on
            return
        if not stop.urgent:
            self.collected = True


@dataclass
class Row:
    name: str
    faults: dict[str, list[Any]] = field(default_factory=dict)
    follow: str = "finish"
    lifetime_s: float = 60.0
    # expectations
    followed: bool = True
    interrupted: bool = False
    error: str | None = None
    ops_tail: tuple[str, ...] = ("refresh", "destroy", "remove")
    attempts: int = 1
    left: bool = False
    collected: bool | None = None


LOCKED = StackLockedError(
    "pulumi destroy: the stack is locked (the stack is currently locked by 1 lock(s))"
)
FLAKY = WorkspaceError("pulumi destroy failed: error: ThrottlingException: Rate exceeded")

ROWS = [
    Row("clean run"),
    Row(
        "exception in up",
        faults={"up": [WorkspaceError("pulumi up failed: error: creating EKS Node Group: quota")]},
        followed=False,
        error="pulumi up failed",
    ),
    Row(
        "exception while tagging, after the stack exists",
        faults={"tag": [WorkspaceError("tagging failed: error: backend unreachable")]},
        followed=False,
        error="tagging failed",
    ),
    Row("exception mid-run", follow="raise", error="the run failed: the plan driver crashed"),
    Row("master lost", follow="master lost", error="master lost: master pod locust-master-0 gone"),
    Row(
        "SIGINT during up",
        faults={"up": [_kill(signal.SIGINT)]},
        followed=False,
        interrupted=True,
    ),
    Row("SIGINT during load", follow="signal sigint", interrupted=True, collected=True),
    Row("SIGTERM during load", follow="signal sigterm", interrupted=True, collected=True),
    Row(
        "SIGHUP during load (terminal closed)",
        follow="signal sighup",
        interrupted=True,
        collected=True,
    ),
    Row(
        "second SIGINT skips the collection",
        follow="signal sigint twice",
        interrupted=True,
        collected=False,
    ),
    Row(
        "second SIGINT while the follower hangs: destroyed anyway",
        follow="signal sigint twice hang",
        interrupted=True,
        collected=False,
    ),
    Row(
        "SIGINT during destroy is refused; the destroy completes",
        faults={"destroy": [_kill(signal.SIGINT, times=2)]},
    ),
    Row(
        "stack outlives its lifetime: follow stopped",
        follow="hang",
        lifetime_s=1.0,
        collected=False,
    ),
    Row(
        "destroy fails once: retried",
        faults={"destroy": [FLAKY]},
        ops_tail=("refresh", "destroy", "refresh", "destroy", "remove"),
        attempts=2,
    ),
    Row(
        "locked stack: cancelled, refreshed, destroyed",
        faults={"refresh": [LOCKED]},
        ops_tail=("refresh", "cancel", "refresh", "destroy", "remove"),
        attempts=2,
    ),
    Row(
        "destroy always fails: clear message, journal kept",
        faults={"destroy": [FLAKY, ALWAYS]},
        ops_tail=("refresh", "destroy") * 4,
        attempts=4,
        left=True,
    ),
]


def _request(tmp_path: Path, lifetime_s: float = 60.0) -> StackRequest:
    return StackRequest(
        run_id=RUN_ID,
        platform_stack=StackRef.parse("dev"),
        program=lambda: None,
        run_dir=tmp_path / "run",
        lifetime_s=lifetime_s,
        config={"aws:region": "us-east-1"},
        hourly_usd=0.68,
    )


def _orchestrator(ws: FakeWorkspace, tmp_path: Path, said: list[str]) -> Orchestrator:
    return Orchestrator(
        ws,
        Journal(tmp_path / "state"),
        events=EventLog(tmp_path / "run"),
        say=said.append,
        retry_delays_s=(0.01, 0.01, 0.01),
        heartbeat_s=0.05,
        collect_grace_s=0.5,
        urgent_grace_s=0.5,
    )


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "run" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_every_fault_ends_with_the_stack_destroyed_and_removed(row: Row, tmp_path: Path) -> None:
    ws = FakeWorkspace(faults={k: list(v) for k, v in row.faults.items()})
    follower = Follower(row.follow)
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    outcome = _orchestrator(ws, tmp_path, said).run(_request(tmp_path, row.lifetime_s), follower)
    follower.release.set()

    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert follower.calls == (1 if row.followed else 0)
    if row.collected is not None:
        assert follower.collected is row.collected
    assert outcome.interrupted is row.interrupted
    assert (outcome.error is None) if row.error is None else (row.error in (outcome.error or ""))
    teardown = ws.ops("refresh", "destroy", "remove", "cancel")
    assert tuple(teardown) == row.ops_tail
    kinds = [e["kind"] for e in _events(tmp_path)]
    assert kinds[0] == "stack_creating"
    journal = Journal(tmp_path / "state")
    entries, _ = journal.entries()
    stack = ws.stacks.get(RUN_ID)
    if row.left:
        assert outcome.exit_code == EXIT_STACK_LEFT
        message = outcome.teardown_error or ""
        assert RUN_ID in message
        assert f"pulumi -C /work/{RUN_ID} destroy --stack {RUN_ID} --yes" in message
        assert f"stack rm {RUN_ID} --yes" in message
        assert f"qwen-stress reap --stack {RUN_ID}" in message
        assert [e.state for e in entries] == ["destroy_failed"]
        assert entries[0].work_dir == f"/work/{RUN_ID}"
        assert kinds[-1] == "stack_destroy_failed"
        assert stack is not None  # still in the backend
        return
    assert outcome.teardown_error is None
    assert entries == []  # closed
    assert stack is None  # removed from the backend
    destroyed = _events(tmp_path)[-1]
    assert destroyed["kind"] == "stack_destroyed"
    assert destroyed["attempts"] == row.attempts
    assert destroyed["usd"] == pytest.approx(0.68 * destroyed["lifetime_s"] / 3600, abs=1e-3)
    assert any("destroyed and removed" in line for line in said)
    if row.followed:
        assert "stack_up" in kinds
    if row.interrupted:
        assert outcome.exit_code == 130
    elif row.error:
        assert outcome.exit_code == 1


def test_tags_and_config_are_set_before_up(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    _orchestrator(ws, tmp_path, []).run(_request(tmp_path), Follower())
    assert ws.ops()[:4] == ["create", "tag", "config", "up"]
    created = _events(tmp_path)[0]
    assert created["stack"] == RUN_ID and created["expires_at"] > time.time() + 30


def test_the_journal_is_written_before_the_stack_is_created(tmp_path: Path) -> None:
    seen: list[list[str]] = []
    journal = Journal(tmp_path / "state")
    ws = FakeWorkspace(
        faults={"create": [lambda: seen.append([e.stack for e in journal.entries()[0]])]}
    )
    _orchestrator(ws, tmp_path, []).run(_request(tmp_path), Follower())
    assert seen == [[RUN_ID]]


def test_a_failed_preflight_creates_nothing(tmp_path: Path) -> None:
    ws = FakeWorkspace()

    def preflight() -> None:
        raise PreflightError("vLLM has no ready replica")

    with pytest.raises(PreflightError):
        _orchestrator(ws, tmp_path, []).run(_request(tmp_path), Follower(), preflight=preflight)
    assert ws.calls == []
    assert Journal(tmp_path / "state").entries() == ([], [])


def test_a_signal_during_preflight_creates_nothing(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    outcome = _orchestrator(ws, tmp_path, []).run(
        _request(tmp_path), Follower(), preflight=_kill(signal.SIGINT)
    )
    assert outcome.interrupted and not outcome.created
    assert ws.calls == []


def test_a_stack_the_backend_never_got_is_not_destroyed_but_forgotten(tmp_path: Path) -> None:
    ws = FakeWorkspace()

    def refuse() -> None:
        ws.stacks.clear()  # `stack init` failed: nothing exists
        raise WorkspaceError("creating the stack failed: error: PULUMI_CONFIG_PASSPHRASE not set")

    ws.faults = {"create": [refuse]}
    outcome = _orchestrator(ws, tmp_path, []).run(_request(tmp_path), Follower())
    assert "PULUMI_CONFIG_PASSPHRASE" in (outcome.error or "")
    assert ws.ops("select", "destroy", "remove") == ["select"]
    assert outcome.teardown_error is None
    assert Journal(tmp_path / "state").entries() == ([], [])


def test_dropped_pending_creates_are_named_with_the_tag_that_finds_them(tmp_path: Path) -> None:
    urn = "urn:pulumi:x::qwen-stress-loadtest::aws:eks/nodeGroup:NodeGroup::loadgen"
    ws = FakeWorkspace(pending_creates=[urn])
    said: list[str] = []
    _orchestrator(ws, tmp_path, said).run(_request(tmp_path), Follower())
    assert _events(tmp_path)[-1]["pending_creates_dropped"] == [urn]
    assert any(urn in line and f"run-id={RUN_ID}" in line for line in said)


def test_stack_tags_carry_the_run_and_its_expiry(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    seen: dict[str, str] = {}
    ws.faults = {"up": [lambda: seen.update(ws.stacks[RUN_ID].tags)]}
    _orchestrator(ws, tmp_path, []).run(_request(tmp_path, lifetime_s=3600), Follower())
    assert seen[RUN_ID_TAG] == RUN_ID
    assert float(seen[EXPIRES_AT_TAG]) == pytest.approx(time.time() + 3600, abs=30)


def test_the_stack_of_an_organisation_stays_in_it(tmp_path: Path) -> None:
    ws = FakeWorkspace()
    request = _request(tmp_path)
    request = StackRequest(
        **{**request.__dict__, "platform_stack": StackRef.parse("acme/qwen-stress/dev")}
    )
    outcome = _orchestrator(ws, tmp_path, []).run(request, Follower())
    assert outcome.stack == f"acme/qwen-stress-loadtest/{RUN_ID}"
    assert ws.calls[0] == ("create", outcome.stack)


def test_heartbeats_say_pulumi_is_still_working(tmp_path: Path) -> None:
    ws = FakeWorkspace(faults={"up": [lambda: time.sleep(0.3)]})
    said: list[str] = []
    _orchestrator(ws, tmp_path, said).run(_request(tmp_path), Follower())
    assert any(line.startswith("still creating the stack") for line in said)
    assert any("up: +  qwen-stress:loadtest:LoadTest" in line for line in said)


def test_outcome_exit_codes() -> None:
    assert Outcome("s").exit_code == 0
    assert Outcome("s", error="x").exit_code == 1
    assert Outcome("s", interrupted=True, error="x").exit_code == 130
    assert Outcome("s", interrupted=True, teardown_error="left").exit_code == EXIT_STACK_LEFT


def test_pulumis_lines_are_kept_in_the_run_directory(tmp_path: Path) -> None:
    _orchestrator(FakeWorkspace(), tmp_path, []).run(_request(tmp_path), Follower())
    log = (tmp_path / "run" / "logs" / "pulumi.log").read_text()
    assert "up: +  qwen-stress:loadtest:LoadTest loadtest created" in log
    assert "destroy: -  deleted" in log
