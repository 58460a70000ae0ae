"""The follower against a real master API on loopback, through a proxy that breaks connections.

The master's part is played by hand (``tests.master_harness``): a thread writes the run files
as a plan run does while the follower pulls them home. Whatever the proxy does to the
connections (resets mid-answer, refusals, stalls), the files at home must be the master's,
byte for byte: nothing lost, nothing written twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest import run_files
from loadtest.cloud import follower as follower_module
from loadtest.cloud.follower import Follower, RunFailedError
from loadtest.cloud.orchestrator import MasterLostError, StopRequest
from loadtest.cloud.run_events import RunEventLog
from loadtest.schema import StackUp
from tests.master_harness import FaultProxy, ProxyConnector, Run, ServedMaster

CONFIG = Path(__file__).parents[1] / "fixtures" / "runs" / "url-run" / "config.json"
FAST = {"poll_s": 0.02, "retry_s": 0.02, "lost_after_s": 5.0, "startup_s": 5.0}


class Rig:
    """A served master, a proxy in front of it, a player writing its files, a follower."""

    def __init__(self, tmp_path: Path, master: ServedMaster) -> None:
        self.master = master
        self.proxy = FaultProxy(master.port)
        self.connector = ProxyConnector(self.proxy)
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.run = Run(master.run_dir, time.time())
        self.said: list[str] = []
        self.events = RunEventLog(self.home, t0=self.run.started_at - 100)
        self.stop = StopRequest()
        self.done = threading.Event()

    def follower(self, **kwargs: Any) -> Follower:
        return Follower(
            lambda _outputs: self.connector,
            self.home,
            self.events,
            say=self.said.append,
            show_live=False,
            **{**FAST, **kwargs},
        )

    def start_run(self) -> None:
        """config.json and the state a running master has."""
        config: dict[str, Any] = json.loads(CONFIG.read_text())
        config["started_at"] = self.run.started_at
        self.run.write_config(config)
        self.master.api.phase = "running"

    def play(
        self, batches: int, per_batch: int = 5, pause_s: float = 0.01, *, finish: bool = True
    ) -> None:
        """Write the run's lines in batches, as a plan run does (then finish, if told)."""
        for i in range(batches):
            self.run.append(run_files.REQUESTS, self.run.records(per_batch))
            self.run.append(run_files.TIMELINE, [{"t": i, "users": 4, "pad": "y" * 150}])
            if i % 10 == 0:
                self.run.append(run_files.EVENTS, [{"kind": "step_start", "t": i, "index": i}])
            time.sleep(pause_s)
        if finish:
            self.run.append(run_files.EVENTS, [{"kind": "finished", "t": batches}])
            self.master.api.phase = "finished"

    def played(self, batches: int, **kwargs: Any) -> threading.Thread:
        def go() -> None:
            self.start_run()
            self.play(batches, **kwargs)
            self.done.set()

        thread = threading.Thread(target=go, daemon=True)
        thread.start()
        return thread

    def master_lines(self, name: str) -> bytes:
        return (self.master.run_dir / name).read_bytes()

    def home_lines(self, name: str) -> bytes:
        return (self.home / name).read_bytes()

    def assert_home_is_the_masters(self) -> None:
        for name in (run_files.REQUESTS, run_files.TIMELINE):
            assert self.home_lines(name) == self.master_lines(name), name
        assert json.loads(self.home_lines(run_files.CONFIG)) == json.loads(
            self.master_lines(run_files.CONFIG)
        )
        # Home's events are the stack's (written here) followed by the master's, each once.
        home = self.home_lines(run_files.EVENTS).splitlines(keepends=True)
        stack = [line for line in home if json.loads(line)["kind"].startswith("stack_")]
        assert b"".join(line for line in home if line not in stack) == self.master_lines(
            run_files.EVENTS
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with ServedMaster(tmp_path / "master", chunk_bytes=2048) as master:
        master.run_dir.mkdir()
        made = Rig(tmp_path, master)
        yield made
        made.proxy.close()


@pytest.mark.slow
def test_a_clean_run_comes_home_whole_and_releases_the_master(rig: Rig) -> None:
    rig.events(StackUp, stack="run-1", project="qwen-stress-loadtest", up_s=1.0)
    rig.played(40)
    rig.follower()({}, rig.stop)
    rig.assert_home_is_the_masters()
    assert rig.master.api.released.is_set() and rig.connector.closed
    # The stack's event, written before the run started, counts from the run's start now.
    first = json.loads(rig.home_lines(run_files.EVENTS).splitlines()[0])
    assert first["kind"] == "stack_up"
    assert first["t"] == round(first["at"] - rig.run.started_at, 3) < 5


@pytest.mark.slow
def test_connections_reset_mid_answer_lose_and_repeat_nothing(rig: Rig) -> None:
    rig.proxy.cut_every = 6000  # every connection dies after 6 kB of answers, mid-answer
    rig.played(30, per_batch=25, pause_s=0.02)
    follower = rig.follower()
    follower({}, rig.stop)
    assert rig.proxy.cuts >= 10 and follower.reconnects >= 10
    rig.assert_home_is_the_masters()
    seq = [json.loads(r)["seq"] for r in rig.home_lines(run_files.REQUESTS).splitlines()]
    assert seq == list(range(1, 751))
    assert any("reconnected to the master" in line for line in rig.said)


@pytest.mark.slow
def test_a_port_forward_down_for_a_while_is_made_again_and_resumed(rig: Rig) -> None:
    player = rig.played(60, pause_s=0.02)
    follower = rig.follower()
    thread = threading.Thread(target=follower, args=({}, rig.stop), daemon=True)
    thread.start()
    time.sleep(0.5)
    rig.proxy.refuse_for(1.0)
    thread.join(30)
    player.join(1)
    assert not thread.is_alive()
    assert rig.proxy.refused >= 3
    rig.assert_home_is_the_masters()
    assert any("lost the connection to the master" in line for line in rig.said)


@pytest.mark.slow
def test_a_stalled_answer_times_out_and_the_pull_resumes(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module, "REQUEST_TIMEOUT_S", 0.3)
    player = rig.played(60, pause_s=0.02)
    follower = rig.follower()
    thread = threading.Thread(target=follower, args=({}, rig.stop), daemon=True)
    thread.start()
    time.sleep(0.3)
    rig.proxy.stalled = True
    time.sleep(1.0)
    rig.proxy.stalled = False
    rig.proxy.reset_all()  # the stalled connections' late answers must not be read
    thread.join(30)
    player.join(1)
    assert not thread.is_alive() and follower.reconnects >= 1
    assert any("timed out" in line for line in rig.said)
    rig.assert_home_is_the_masters()


@pytest.mark.slow
def test_a_master_silent_beyond_its_budget_is_lost_with_what_came_home_intact(
    rig: Rig,
) -> None:
    rig.start_run()
    rig.play(20, finish=False)
    follower = rig.follower(lost_after_s=1.0)
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            follower({}, rig.stop)
        except BaseException as err:  # the test's thread looks at it
            failure.append(err)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        follower.offsets[n] < len(rig.master_lines(n)) for n in follower.offsets
    ):
        time.sleep(0.02)
    lost_at = time.monotonic()
    rig.proxy.refuse_for(60)  # the pod still says "running", but nothing answers any more
    thread.join(10)
    assert not thread.is_alive() and len(failure) == 1
    assert isinstance(failure[0], MasterLostError)
    assert "the master's API has not answered for 1 s (cannot connect" in str(failure[0])
    assert time.monotonic() - lost_at < 5  # 1 s after its last answer, not the startup's 5 s
    # What came home is whole lines, each once: a report can be made from it.
    for name in (run_files.REQUESTS, run_files.TIMELINE):
        assert rig.home_lines(name) == rig.master_lines(name)


def test_a_master_its_connector_reports_gone_is_lost_after_the_confirmation(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follower_module, "GONE_CONFIRM_S", 0.3)
    rig.start_run()
    rig.play(5, finish=False)
    rig.proxy.refuse_for(60)
    rig.connector.gone = "master pod loadtest-run-1/locust-master-x failed: OOMKilled"
    follower = rig.follower(startup_s=60)
    started = time.monotonic()
    with pytest.raises(MasterLostError, match="OOMKilled"):
        follower({}, rig.stop)
    assert 0.3 <= time.monotonic() - started < 5


def test_a_lost_answer_to_the_release_is_not_a_lost_master(rig: Rig) -> None:
    rig.start_run()
    rig.play(10)
    rig.proxy.cut_after_request = b"POST /release"

    # Released, the master exits (its pod completes): nothing will answer again.
    def exit_when_released() -> None:
        rig.master.api.released.wait(10)
        rig.proxy.refusing_until = time.monotonic() + 60
        rig.connector.gone = "master pod loadtest-run-1/locust-master-x exited"

    threading.Thread(target=exit_when_released, daemon=True).start()
    rig.follower()({}, rig.stop)  # before the fix: MasterLostError, with every byte home
    assert rig.proxy.cuts == 1 and rig.master.api.released.is_set()
    rig.assert_home_is_the_masters()


def test_a_graceful_stop_is_passed_on_once_and_the_files_still_come_home(rig: Rig) -> None:
    rig.start_run()
    rig.play(10, finish=False)
    follower = rig.follower()
    thread = threading.Thread(target=follower, args=({}, rig.stop), daemon=True)
    thread.start()
    rig.stop.request("interrupted (Ctrl-C)")
    deadline = time.monotonic() + 5
    while not rig.master.api.stop_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # several polls later, still one stop: it is not sent again
    assert rig.master.api.stop_requests == [False]
    assert thread.is_alive()  # the master has not finished: the follower waits for its files
    rig.play(5)  # the users finish their requests; the master writes its last lines
    thread.join(10)
    assert not thread.is_alive() and rig.master.api.stop_requests == [False]
    rig.assert_home_is_the_masters()


def test_a_second_signal_sends_the_urgent_stop_and_returns_at_once(rig: Rig) -> None:
    rig.start_run()
    rig.play(10, finish=False)
    follower = rig.follower()
    thread = threading.Thread(target=follower, args=({}, rig.stop), daemon=True)
    thread.start()
    rig.stop.request("interrupted (Ctrl-C)")
    time.sleep(0.2)
    rig.stop.request("interrupted again", urgent=True)
    thread.join(3)
    assert not thread.is_alive()
    assert rig.master.api.stop_requests == [False, True]
    assert not rig.master.api.released.is_set()  # the destroy ends it, not a release


def test_an_urgent_stop_while_the_master_is_unreachable_returns_at_once(rig: Rig) -> None:
    rig.proxy.refuse_for(60)
    rig.stop.request("interrupted (Ctrl-C)", urgent=True)
    started = time.monotonic()
    rig.follower(startup_s=60)({}, rig.stop)
    assert time.monotonic() - started < 1


def test_a_master_that_failed_ends_the_follow_with_its_reason_after_its_files(
    rig: Rig,
) -> None:
    rig.start_run()
    rig.play(3)
    rig.master.api.phase = "failed"
    rig.master.api.error = "only 1 of 2 Locust workers connected within 300 s"
    with pytest.raises(RunFailedError, match="only 1 of 2 Locust workers"):
        rig.follower()({}, rig.stop)
    rig.assert_home_is_the_masters()
    assert rig.master.api.released.is_set()


def test_a_master_whose_runner_crashed_mid_run_fails_the_run_after_its_files(rig: Rig) -> None:
    rig.start_run()
    rig.play(3)  # "finished": PlanRun closed the files after the crash
    rig.master.api.error = "the sampler failed (KeyError: 'x')"
    with pytest.raises(RunFailedError, match=r"the sampler failed \(KeyError: 'x'\)"):
        rig.follower()({}, rig.stop)
    rig.assert_home_is_the_masters()
    assert rig.master.api.released.is_set()
