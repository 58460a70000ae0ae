"""The master pod's process, controlled through its API as the follower does it.

Started from this checkout (``python -m loadtest.pod master``, the rendered entrypoint) with a
vLLM stand-in on loopback whose ``/v1/models`` answers slowly, so that a stop can arrive while
the pre-flight is still asking.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.vllm_args import API_KEY_ENV
from loadtest import master_protocol as proto
from loadtest.cloud import contract
from loadtest.master_protocol import MasterStatus
from loadtest.targets import free_port
from tests.loadtest_specs import run_payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "Qwen/Qwen2.5-7B-Instruct-AWQ"
KEY = "sk-master-control-71b0"
ANSWER_AFTER_S = 2.0


class _SlowModels(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(ANSWER_AFTER_S)
        body = json.dumps({"data": [{"id": MODEL}]}).encode()
        self.send_response(200 if self.headers.get("Authorization") == f"Bearer {KEY}" else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        """Quiet."""


@pytest.fixture
def vllm() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowModels)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _call(port: int, method: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _status(port: int) -> MasterStatus | None:
    try:
        code, body = _call(port, "GET", proto.STATUS_PATH)
    except OSError:
        return None
    return MasterStatus.model_validate_json(body) if code == 200 else None


def test_a_stop_during_the_pre_flight_ends_the_run_with_nothing_to_collect(
    vllm: str, tmp_path: Path
) -> None:
    """Before the fix the status said "preflight" until the master gave up waiting (600 s)."""
    (tmp_path / "run.json").write_text(run_payload().model_dump_json())
    api_port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        contract.ENV_RUN_ID: "r1",
        contract.ENV_PAYLOAD: str(tmp_path / "run.json"),
        contract.ENV_VLLM_URL: f"{vllm}/v1",
        contract.ENV_MODEL: MODEL,
        contract.ENV_MASTER_PORT: str(free_port()),
        contract.ENV_WORKERS: "2",
        contract.ENV_API_PORT: str(api_port),
        contract.ENV_BIND_HOST: "127.0.0.1",
        contract.ENV_PROMETHEUS_URL: vllm,
        contract.ENV_RUN_DIR: str(tmp_path / "run"),
        API_KEY_ENV: KEY,
    }
    master = subprocess.Popen(
        [sys.executable, "-m", "loadtest.pod", "master"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while (first := _status(api_port)) is None:
            assert master.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert first.state == "preflight"
        assert _call(api_port, "POST", proto.STOP_PATH)[0] == 202
        deadline = time.monotonic() + ANSWER_AFTER_S + 20
        while not (seen := _status(api_port)) or not seen.over:
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert seen.state == "finished" and seen.error is None and seen.files == {}
        assert _call(api_port, "POST", proto.RELEASE_PATH)[0] == 200
        out, _ = master.communicate(timeout=30)
        assert master.returncode == 0, out
        assert b"stopped before the plan started" in out
        assert not (tmp_path / "run" / "config.json").exists()  # no load, no run files
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
