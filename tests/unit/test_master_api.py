"""The master's HTTP API on loopback: exact offsets, 4xx for bad requests, stop, no secrets.

The real ``MasterApi`` serves a run directory that the test writes as a plan run would
(``tests.master_harness``); the client is plain ``http.client``, as in the follower.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest import master_protocol as proto
from loadtest import run_files
from loadtest.master_api import complete_size, read_chunk
from loadtest.master_protocol import MasterStatus
from tests.master_harness import HOST, Run, ServedMaster


@pytest.fixture
def master(tmp_path: Path) -> Iterator[ServedMaster]:
    with ServedMaster(tmp_path / "run", chunk_bytes=1024) as served:
        served.run_dir.mkdir()
        yield served


def call(port: int, method: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def status(port: int) -> MasterStatus:
    code, body = call(port, "GET", proto.STATUS_PATH)
    assert code == 200
    return MasterStatus.model_validate_json(body)


def pull(port: int, name: str, offset: int) -> bytes:
    code, body = call(port, "GET", f"{proto.FILES_PATH}{name}?offset={offset}")
    assert code == 200, body
    return body


def test_polling_by_offset_takes_every_line_once_while_the_file_grows(
    master: ServedMaster,
) -> None:
    run = Run(master.run_dir, time.time())
    home = b""
    offset = 0
    polls = 0
    path = master.run_dir / run_files.REQUESTS
    for round_ in range(60):
        lines = run.lines(run.records(round_ % 7 + 1))
        cut = len(lines) // 2 + 1
        # Each batch lands in two writes cut mid-line, with polls in between: a busy writer's
        # file is seen half-written, and no answer may hold half a record.
        for part in (lines[:cut], lines[cut:]):
            with path.open("ab") as f:
                f.write(part)
            data = pull(master.port, run_files.REQUESTS, offset)
            polls += 1
            assert data == b"" or data.endswith(b"\n")
            home += data
            offset += len(data)
    size = status(master.port).files[run_files.REQUESTS]
    while offset < size:  # the chunk limit (1 KiB here) may leave some for later polls
        data = pull(master.port, run_files.REQUESTS, offset)
        home, offset, polls = home + data, offset + len(data), polls + 1
    assert home == (master.run_dir / run_files.REQUESTS).read_bytes()
    assert [json.loads(line)["seq"] for line in home.splitlines()] == list(range(1, run.count + 1))
    assert polls >= 120 and offset == size


def test_a_new_client_resumes_at_the_offset_the_old_one_reached(master: ServedMaster) -> None:
    run = Run(master.run_dir, time.time())
    run.append(run_files.TIMELINE, run.records(30))
    first = pull(master.port, run_files.TIMELINE, 0)
    assert 0 < len(first) <= 1024 and first.endswith(b"\n")  # one chunk, whole lines
    run.append(run_files.TIMELINE, run.records(5))
    # Another connection (a restarted client) asks from where the first one stopped.
    rest = b""
    while True:
        data = pull(master.port, run_files.TIMELINE, len(first) + len(rest))
        if not data:
            break
        rest += data
    assert first + rest == (master.run_dir / run_files.TIMELINE).read_bytes()


def test_one_line_longer_than_a_chunk_is_sent_whole(master: ServedMaster) -> None:
    run = Run(master.run_dir, time.time())
    run.append(run_files.EVENTS, run.records(1, pad=5000) + run.records(1))
    first = pull(master.port, run_files.EVENTS, 0)
    assert len(first) > 5000 and first.count(b"\n") == 1
    second = pull(master.port, run_files.EVENTS, len(first))
    assert json.loads(second)["seq"] == 2


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/files/requests.jsonl?offset=-1", 400),
        ("/files/requests.jsonl?offset=abc", 400),
        ("/files/requests.jsonl?offset=1.5", 400),
        # Digits to str.isdigit, yet int() refuses them: a crash of the route before the fix.
        ("/files/requests.jsonl?offset=%C2%B2", 400),
        ("/files/requests.jsonl?offset=" + "9" * 5000, 400),
        ("/files/requests.jsonl?offset=3", 400),  # mid-line: half a record
        ("/files/requests.jsonl?offset=100000", 416),
        ("/files/timeline.jsonl?offset=0", 404),  # not written yet
        ("/files/summary.json", 404),  # not a file the API serves
        ("/files/../../etc/passwd", 404),
        ("/files/%2e%2e%2fconfig.json", 404),
        ("/nothing", 404),
    ],
)
def test_bad_requests_get_a_4xx_and_the_api_keeps_serving(
    master: ServedMaster, path: str, code: int
) -> None:
    Run(master.run_dir, time.time()).append(run_files.REQUESTS, [{"seq": 1}, {"seq": 2}])
    got, body = call(master.port, "GET", path)
    assert got == code, body
    assert "error" in json.loads(body)
    assert status(master.port).files[run_files.REQUESTS] == 20


def test_a_route_asked_with_the_wrong_method_is_refused(master: ServedMaster) -> None:
    assert call(master.port, "GET", proto.STOP_PATH)[0] == 404
    assert call(master.port, "POST", proto.STATUS_PATH)[0] == 404
    assert master.api.stop_requests == []
    assert not master.api.released.is_set()


def test_status_counts_complete_lines_only(master: ServedMaster) -> None:
    path = master.run_dir / run_files.REQUESTS
    path.write_bytes(b'{"seq":1}\n{"seq":2}\n{"se')
    assert status(master.port).files == {run_files.REQUESTS: 20}
    assert pull(master.port, run_files.REQUESTS, 0) == b'{"seq":1}\n{"seq":2}\n'
    assert pull(master.port, run_files.REQUESTS, 20) == b""


def test_stop_is_idempotent_and_release_is_remembered(master: ServedMaster) -> None:
    for _ in range(3):
        code, body = call(master.port, "POST", proto.STOP_PATH)
        assert (code, json.loads(body)) == (202, {"stopping": True})
    assert call(master.port, "POST", proto.STOP_PATH + "?urgent=1")[0] == 202
    assert master.api.stop_requests == [False, False, False, True]
    assert status(master.port).state == "preflight"  # a stop alone changes no state
    for _ in range(2):
        assert call(master.port, "POST", proto.RELEASE_PATH) == (200, b'{"released": true}')
    assert master.api.released.is_set()


def test_status_says_when_the_run_is_over_and_why_it_failed(master: ServedMaster) -> None:
    master.api.workers_expected = 2
    first = status(master.port)
    assert (first.state, first.over, first.workers_expected) == ("preflight", False, 2)
    master.api.phase, master.api.error = "failed", "pre-flight: no model"
    last = status(master.port)
    assert last.over and last.error == "pre-flight: no model" and last.files == {}


def test_sizes_and_chunks_of_files_cut_mid_line(tmp_path: Path) -> None:
    path = tmp_path / run_files.TIMELINE
    assert complete_size(path) == -1
    path.write_bytes(b"")
    assert complete_size(path) == 0
    path.write_bytes(b"x" * 100_000)  # no newline at all, longer than the first look back
    assert complete_size(path) == 0
    path.write_bytes(b"a\n" + b"x" * 100_000)
    assert complete_size(path) == 2
    assert read_chunk(path, 0, limit=1) == (b"a\n", 2)
    assert read_chunk(path, 2) == (b"", 2)
    config = tmp_path / run_files.CONFIG
    config.write_bytes(b"{}")  # written whole, at once: its size is the file's
    assert complete_size(config) == 2
    # One document, not lines: served whole however large (a cut one never parses).
    document = b'{"workload": "' + b"p" * 5000 + b'"}\n'
    config.write_bytes(document)
    assert read_chunk(config, 0, limit=1024) == (document, len(document))


class _Stop:
    reason = "the plan finished"


class _Plan:
    """What the status reads of a ``PlanRun`` (the real one loads Locust: not in this process)."""

    def __init__(self, state: str, error: str | None = None) -> None:
        self.state, self.error = state, error
        self.last_sample = None
        self.stop = _Stop()
        self.runner = None

    def now_s(self) -> float:
        return 12.5


def test_a_finished_plan_is_not_over_until_the_pod_has_settled_how_it_ended(
    master: ServedMaster,
) -> None:
    """Before the fix a follower could see "finished" in the instant between the plan's end
    and the pod marking a failed start, and take the run for a success."""
    master.api.phase = "preflight"
    master.api.plan = _Plan("finished")
    seen = status(master.port)
    assert (seen.state, seen.over, seen.elapsed_s) == ("stopping", False, 12.5)
    master.api.phase = "failed"
    master.api.error = "only 1 of 2 Locust workers connected within 300 s"
    assert status(master.port).state == "failed"
    master.api.phase, master.api.error = "finished", None
    assert status(master.port).state == "finished"


def test_the_plans_own_failure_is_in_the_status_as_soon_as_it_happens(
    master: ServedMaster,
) -> None:
    master.api.plan = _Plan("stopping", error="the sampler failed (KeyError: 'x')")
    seen = status(master.port)
    assert seen.state == "stopping" and seen.error == "the sampler failed (KeyError: 'x')"
