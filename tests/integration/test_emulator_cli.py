"""``qwen-stress emulate``: refusals without tracebacks, and a clean drain on SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from typer.testing import CliRunner

from loadtest.cli import app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "V100"], "unknown GPU 'V100'"),
        (["--model", "Qwen/Qwen3-8B", "--gpu", "A10G"], "unknown model 'Qwen/Qwen3-8B'"),
        (
            ["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "T4"],
            "Use Qwen/Qwen2.5-7B-Instruct-AWQ",
        ),
        (
            ["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "A10G", "--max-model-len", "100"],
            "maxModelLen 100 is outside",
        ),
    ],
)
def test_refusals_name_the_problem_without_a_traceback(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["emulate", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_serves_until_sigterm_then_exits_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from loadtest.cli import main; main()", "emulate",
         "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--gpu", "L4", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"Serving (http://\S+) ", line)
        assert found, line
        with urllib.request.urlopen(found.group(1) + "/health", timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Draining" in out
    assert "Traceback" not in out


def test_an_address_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "loadtest.cli", "emulate", "--model",
             "Qwen/Qwen2.5-0.5B-Instruct", "--gpu", "L4", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: " in done.stderr
    assert "Traceback" not in done.stderr
