"""Hostile and careless input, one row per probe: what is tried, and what must come back.

Add a probe by adding one row to a table:

- ``CLI_PROBES``: a ``qwen-stress`` command line, run as its own process with a time bound (a
  probe that is wrongly accepted starts serving, and the bound ends it as a failure). ``{tmp}``
  in an argument or an environment value is the probe's own directory, where ``files`` are
  written first. The process must exit with ``exit_code``, print ``message`` and no traceback,
  and never print ``secret``. The selected rows run two at a time before the first is checked
  (``cli_results``); ``run_cli`` runs any other command line the same way.
- ``HTTP_PROBES``: raw bytes sent on a real socket to a live emulator and to a live fleet router
  on 127.0.0.1 (a float in ``send`` pauses that many seconds, stopping early once the server
  answers). The server must answer ``status`` (``None``: close without a word) with ``message``
  in the body, and close the connection.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from domain.durations import TIME_SCALES
from twin.emulator.http_protocol import HttpLimits
from twin.emulator.server import ReplicaServer
from twin.fleet.router import Backend, Router

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 60.0
"""Refusing takes a second or two (importing the twin); serving instead never ends by itself."""
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
EMULATE = ("emulate", "--model", MODEL, "--gpu", "L4", "--port", "0")
FLEET = ("fleet", "--model", MODEL, "--gpu", "T4", "--port", "0")


def _alias_bomb(levels: int) -> bytes:
    """A stack file of a few hundred bytes whose ``tags`` stand for 9**levels values."""
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = [f"a: &a [{', '.join(['x'] * 9)}]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in itertools.pairwise(names)]
    return ("\n".join(lines) + f"\nconfig:\n  qwen-stress:tags: *{names[-1]}\n").encode()


ALIAS_BOMB = _alias_bomb(9)
SECRET_KEY = "sk-probe-secret-4f9c"
LONG_PROMPTS = (
    b'p: &p "' + b"x" * 100_000 + b'"\ntasks:\n  - name: a\n    prompts: ['
    + b", ".join([b"*p"] * 50) + b"]\n"
)  # fmt: skip
"""A 100 kB workload file whose aliases stand for 5 MB of prompts."""
HUGE_WEIGHTS = b"tasks:\n" + b"".join(
    b"  - {name: %s, prompts: en-chat, weight: 1e308}\n" % n for n in (b"a", b"b")
)
RUN = ("run", "--url", "http://127.0.0.1:9", "--model", "m", "--users", "1", "--duration", "1s")
"""A run that ends in seconds if a probe is wrongly accepted (nothing listens on port 9)."""


@dataclass(frozen=True)
class CliProbe:
    """One command line and what it must end with."""

    name: str
    argv: tuple[str, ...]
    exit_code: int
    message: str
    files: Mapping[str, bytes] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = None


CLI_PROBES = [
    # emulate: every flag it would otherwise serve differently from what was asked
    CliProbe("emulate port above 65535", (*EMULATE, "--port", "99999"), 2,
             "--port 99999: must be a number from 0 to 65535"),
    CliProbe("emulate negative port", (*EMULATE, "--port", "-1"), 2, "--port -1: must be"),
    CliProbe("emulate max-model-len 0", (*EMULATE, "--max-model-len", "0"), 2,
             "maxModelLen 0 is outside 256..32768"),
    CliProbe("emulate missing tokenizer", (*EMULATE, "--tokenizer", "{tmp}/none.json"), 2,
             "none.json: no such file"),
    CliProbe("emulate tokenizer that is no tokenizer", (*EMULATE, "--tokenizer", "{tmp}/t.json"),
             2, "t.json is not a tokenizer.json", files={"t.json": b"hello\n"}),
    CliProbe("emulate tokenizer that is a device", (*EMULATE, "--tokenizer", "/dev/zero"), 2,
             "--tokenizer /dev/zero: not a regular file"),
    CliProbe("emulate missing tokenizer in the environment", EMULATE, 2,
             "QWEN_STRESS_TOKENIZER {tmp}/gone.json: no such file",
             env={"QWEN_STRESS_TOKENIZER": "{tmp}/gone.json"}),
    CliProbe("emulate negative drain", (*EMULATE, "--drain-timeout", "-1"), 2,
             "--drain-timeout -1: must be a number from 0 to 3600"),
    CliProbe("emulate drain nan", (*EMULATE, "--drain-timeout", "nan"), 2,
             "--drain-timeout nan: must be"),
    CliProbe("emulate drain inf", (*EMULATE, "--drain-timeout", "inf"), 2,
             "--drain-timeout inf: must be"),
    CliProbe("emulate memory share nan", (*EMULATE, "--gpu-memory-utilization", "nan"), 2,
             "gpuMemoryUtilization nan is outside 0.1..0.99"),
    CliProbe("emulate empty host", (*EMULATE, "--host", ""), 2, "--host is empty"),
    CliProbe("emulate key with a newline", EMULATE, 2,
             "--api-key (or VLLM_API_KEY) holds a space, a control character",
             env={"VLLM_API_KEY": SECRET_KEY + "\n"}, secret=SECRET_KEY),
    # fleet: the same flags, the time scale, and the stack file it rehearses
    CliProbe("fleet time scale nan", (*FLEET, "--time-scale", "nan"), 2,
             f"--time-scale nan: must be a number from {TIME_SCALES[0]:g} to {TIME_SCALES[1]:g}"),
    CliProbe("fleet time scale inf", (*FLEET, "--time-scale", "inf"), 2,
             "--time-scale inf: must be"),
    CliProbe("fleet time scale 1e309", (*FLEET, "--time-scale", "1e309"), 2,
             "--time-scale inf: must be"),
    CliProbe("fleet subnormal time scale", (*FLEET, "--time-scale", "1e-320"), 2,
             "--time-scale 9.99989e-321: must be"),
    CliProbe("fleet port above 65535", (*FLEET, "--port", "70000"), 2, "--port 70000: must be"),
    CliProbe("fleet negative drain", (*FLEET, "--drain-timeout", "-1"), 2,
             "--drain-timeout -1: must be"),
    CliProbe("fleet max-model-len 0", (*FLEET, "--max-model-len", "0"), 2,
             "maxModelLen 0 is outside"),
    CliProbe("fleet missing tokenizer in the environment", FLEET, 2,
             "QWEN_STRESS_TOKENIZER {tmp}/gone.json: no such file",
             env={"QWEN_STRESS_TOKENIZER": "{tmp}/gone.json"}),
    CliProbe("fleet stack file not UTF-8", ("fleet", "--config", "{tmp}/s.yaml"), 2,
             "stack file {tmp}/s.yaml is not UTF-8 text (byte 0xe9 at offset 42)",
             files={"s.yaml": b"config:\n  qwen-stress:tags:\n    owner: caf\xe9\n"}),
    CliProbe("fleet empty stack file", ("fleet", "--config", "{tmp}/s.yaml"), 2,
             "stack file {tmp}/s.yaml is empty", files={"s.yaml": b""}),
    CliProbe("fleet stack file of a list", ("fleet", "--config", "{tmp}/s.yaml"), 2,
             "stack file {tmp}/s.yaml holds a list", files={"s.yaml": b"- config\n"}),
    CliProbe("fleet stack file without settings", ("fleet", "--config", "{tmp}/s.yaml"), 2,
             "{tmp}/s.yaml: invalid stack configuration", files={"s.yaml": b"config: {}\n"}),
    CliProbe("fleet stack file alias bomb", ("fleet", "--config", "{tmp}/s.yaml"), 2,
             "expands to more than 10,000 values", files={"s.yaml": ALIAS_BOMB}),
    CliProbe("fleet stack file that is a device", ("fleet", "--config", "/dev/zero"), 2,
             "stack file /dev/zero: not a regular file"),
    CliProbe("fleet missing stack file", ("fleet", "--config", "{tmp}/none.yaml"), 2,
             "stack file {tmp}/none.yaml: no such file"),
    # run: the twin it starts reads the same stack file
    CliProbe("run stack file not UTF-8", ("run", "--config", "{tmp}/s.yaml", "--out", "{tmp}/o"),
             2, "stack file {tmp}/s.yaml is not UTF-8 text",
             files={"s.yaml": b"config:\n  qwen-stress:tags:\n    owner: caf\xe9\n"}),
    CliProbe("run empty stack file", ("run", "--config", "{tmp}/s.yaml", "--out", "{tmp}/o"), 2,
             "stack file {tmp}/s.yaml is empty", files={"s.yaml": b""}),
    # run: a key a header cannot carry, named by its variable and never shown
    CliProbe("run key with a trailing newline", (*RUN, "--api-key-env", "PROBE_KEY"), 2,
             "--api-key-env PROBE_KEY: the key in $PROBE_KEY starts or ends with a space or a "
             "line break", env={"PROBE_KEY": SECRET_KEY + "\n"}, secret=SECRET_KEY),
    CliProbe("run key with a trailing CR", (*RUN, "--api-key-env", "PROBE_KEY"), 2,
             "the key in $PROBE_KEY starts or ends", env={"PROBE_KEY": SECRET_KEY + "\r"},
             secret=SECRET_KEY),
    CliProbe("run key with a control character", (*RUN, "--api-key-env", "PROBE_KEY"), 2,
             "the key in $PROBE_KEY holds a space, a control character or a non-ASCII character",
             env={"PROBE_KEY": SECRET_KEY + "\x7f"}, secret=SECRET_KEY),
    # run: load the workers cannot offer, time scales the twin refuses
    CliProbe("run a billion users", (*RUN[:5], "--users", "1000000000", "--duration", "5s"), 2,
             "--users 1000000000: at most 2,000 users with --workers 2"),
    CliProbe("run max users beyond the workers", (*RUN[:5], "--max-users", "5000"), 2,
             "--max-users 5000: at most 2,000 users with --workers 2"),
    CliProbe("run a million arrivals a second", (*RUN[:5], "--plan", "poisson", "--rate", "1e6"),
             2, "--rate 1e+06: at most 2000 requests/s with --workers 2"),
    CliProbe("run time scale above the twin's", ("run", "--time-scale", "5000"), 2,
             f"--time-scale 5000.0: input should be less than or equal to {TIME_SCALES[1]:g}"),
    CliProbe("run time scale below the twin's", ("run", "--time-scale", "1e-5"), 2,
             f"--time-scale 1e-05: input should be greater than or equal to {TIME_SCALES[0]:g}"),
    # run: the endpoint's address
    CliProbe("run port out of range", ("run", "--url", "http://127.0.0.1:99999", *RUN[3:]), 2,
             "--url 'http://127.0.0.1:99999': port 99999 is not a port"),
    CliProbe("run full endpoint URL", ("run", "--url", "http://127.0.0.1:9/v1/chat/completions",
             *RUN[3:]), 2, "names the chat/completions endpoint itself; pass the base URL, "
             "http://127.0.0.1:9/v1"),
    # run: a run directory that cannot be one
    CliProbe("run out is a file", (*RUN, "--out", "{tmp}/f"), 2,
             "--out {tmp}/f is not a directory", files={"f": b"x"}),
    CliProbe("run out is /dev/null", (*RUN, "--out", "/dev/null"), 2,
             "--out /dev/null is not a directory"),
    CliProbe("run out below a file", (*RUN, "--out", "{tmp}/f/run"), 2,
             "{tmp}/f is a file, not a directory", files={"f": b"x"}),
    CliProbe("run out where nothing can be made", (*RUN, "--out", "/proc/qwen-stress/run"), 2,
             "--out /proc/qwen-stress/run: cannot create a directory in /proc"),
    # run: workload files, bounded like stack files
    CliProbe("run workload not UTF-8", (*RUN, "--workload", "{tmp}/w.yaml"), 2,
             "workload file {tmp}/w.yaml is not UTF-8 text (byte 0xe9 at offset 20)",
             files={"w.yaml": b"tasks:\n  - name: caf\xe9\n    prompts: en-chat\n"}),
    CliProbe("run empty workload", (*RUN, "--workload", "{tmp}/w.yaml"), 2,
             "workload file {tmp}/w.yaml is empty", files={"w.yaml": b"\n"}),
    CliProbe("run workload alias bomb", (*RUN, "--workload", "{tmp}/w.yaml"), 2,
             "workload file {tmp}/w.yaml expands to more than 10,000 values",
             files={"w.yaml": ALIAS_BOMB}),
    CliProbe("run workload repeating a long prompt", (*RUN, "--workload", "{tmp}/w.yaml"), 2,
             "workload file {tmp}/w.yaml stands for more than 4,194,304 characters",
             files={"w.yaml": LONG_PROMPTS}),
    CliProbe("run workload weights that overflow", (*RUN, "--workload", "{tmp}/w.yaml"), 2,
             "tasks.1.weight: Input should be less than or equal to 1000000",
             files={"w.yaml": HUGE_WEIGHTS}),
    # report: what is not a run directory
    CliProbe("report on a file", ("report", "{tmp}/f"), 2,
             "{tmp}/f is not a directory: give the run directory", files={"f": b"{}"}),
]  # fmt: skip


@dataclass(frozen=True)
class CliResult:
    """How a command line ended: its exit code (``None``: still running at the time bound, so
    killed) and everything it printed."""

    returncode: int | None
    output: str


def run_cli(
    argv: tuple[str, ...], *, env: Mapping[str, str] | None = None, timeout: float = CLI_TIMEOUT_S
) -> CliResult:
    """``qwen-stress ARGV`` as its own process, killed if it outlives ``timeout``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "loadtest.cli", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        printed = (err.stdout or b"") + (err.stderr or b"")
        output = printed.decode(errors="replace") if isinstance(printed, bytes) else printed
        return CliResult(None, output)
    return CliResult(done.returncode, done.stdout + done.stderr)


def _run_probe(probe: CliProbe, tmp: Path) -> tuple[CliResult, Path]:
    for name, content in probe.files.items():
        (tmp / name).write_bytes(content)
    argv = tuple(a.replace("{tmp}", str(tmp)) for a in probe.argv)
    env = {k: v.replace("{tmp}", str(tmp)) for k, v in probe.env.items()}
    return run_cli(argv, env=env), tmp


@pytest.fixture(scope="module")
def cli_results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[CliResult, Path]]:
    """Every selected CLI probe, run two at a time (each one is a process, mostly importing)."""
    selected = [
        probe
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
        for probe in [getattr(getattr(item, "callspec", None), "params", {}).get("probe")]
        if isinstance(probe, CliProbe)
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            p.name: pool.submit(_run_probe, p, tmp_path_factory.mktemp("probe")) for p in selected
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("probe", CLI_PROBES, ids=lambda p: p.name)
def test_cli_probe(probe: CliProbe, cli_results: dict[str, tuple[CliResult, Path]]) -> None:
    result, tmp = cli_results[probe.name]
    output = result.output
    if result.returncode is None:
        pytest.fail(f"{probe.argv} still ran after {CLI_TIMEOUT_S:g} s: {output[-500:]!r}")
    assert result.returncode == probe.exit_code, output
    assert probe.message.replace("{tmp}", str(tmp)) in output
    assert "Traceback" not in output
    if probe.secret is not None:
        assert probe.secret not in output


@dataclass(frozen=True)
class HttpProbe:
    """Bytes a client sends (floats: pauses) and what the server must answer before closing."""

    name: str
    send: tuple[bytes | float, ...]
    status: int | None
    message: str = ""


READ_TIMEOUT_S = 1.0
LIMITS = HttpLimits(read_timeout_s=READ_TIMEOUT_S, linger_s=1.0)
TRICKLE = tuple(p for i in range(10) for p in (0.3, b"x-%d: 1\r\n" % i))
"""Slowloris: a header line every 0.3 s, for 3 s, never the blank line that ends the head."""

HTTP_PROBES = [
    HttpProbe("request target over 8 KiB",
              (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nhost: x\r\n\r\n",), 414,
              "request target over 8192 bytes"),
    HttpProbe("one header over 16 KiB", (b"GET / HTTP/1.1\r\nx: " + b"a" * 20000 + b"\r\n\r\n",),
              431, "request header fields over 16384 bytes"),
    HttpProbe("101 headers",
              (b"GET / HTTP/1.1\r\n" + b"".join(b"x-%d: 1\r\n" % i for i in range(101)) + b"\r\n",),
              431, "or 100 fields"),
    HttpProbe("a 50 MB header line", (b"GET / HTTP/1.1\r\nx: ", *(b"a" * 1048576,) * 50), 431),
    HttpProbe("slowloris head", (b"GET /health HTTP/1.1\r\n", *TRICKLE), 408,
              f"did not arrive whole within {READ_TIMEOUT_S:g} s"),
    HttpProbe("slow body", (b"POST /v1/completions HTTP/1.1\r\ncontent-length: 10\r\n\r\n{",
                            *(0.3, b" ") * 8), 408),
    HttpProbe("a connection that says nothing", (3.0,), None),
    HttpProbe("body announced over 32 MiB",
              (b"POST /v1/completions HTTP/1.1\r\ncontent-length: 33554433\r\n\r\n",), 413,
              "request body over 33554432 bytes"),
    HttpProbe("not HTTP", (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",), 400,
              "malformed HTTP request"),
    HttpProbe("a well-formed request (control)",
              (b"GET /health HTTP/1.1\r\nconnection: close\r\n\r\n",), 200),
]  # fmt: skip


class _Servers:
    """A replica and a router in front of it, on a background event loop, both with ``LIMITS``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.replica = ReplicaServer(MODEL, "L4", max_model_len=2048, http_limits=LIMITS)
        self.router = Router(limits=LIMITS)
        replica_port = self._call(self.replica.start("127.0.0.1", 0))
        self.router.add(Backend("replica", "127.0.0.1", replica_port))
        self.ports = {
            "emulator": replica_port,
            "router": self._call(self.router.start("127.0.0.1", 0)),
        }

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self._call(self.router.stop())
        self._call(self.replica.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def servers() -> Iterator[_Servers]:
    live = _Servers()
    yield live
    live.close()


def send_probe(port: int, parts: tuple[bytes | float, ...], timeout: float = 10.0) -> bytes:
    """Send ``parts`` like a real client (stop once the server answers), then read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for part in parts:
            answered = select.select([sock], [], [], part if isinstance(part, float) else 0)[0]
            if answered:
                break
            if isinstance(part, bytes):
                try:
                    sock.sendall(part)
                except OSError:  # the server closed while this was being sent
                    break
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(
                    f"the connection was left open {timeout:g} s; received {received[:200]!r}"
                ) from None
            if not data:
                return received
            received += data
    raise AssertionError(f"the connection was left open; received {received[:200]!r}")


@pytest.mark.parametrize("target", ["emulator", "router"])
@pytest.mark.parametrize("probe", HTTP_PROBES, ids=lambda p: p.name)
def test_http_probe(probe: HttpProbe, target: str, servers: _Servers) -> None:
    started = time.monotonic()
    received = send_probe(servers.ports[target], probe.send)
    if probe.status is None:
        assert received == b""
        assert time.monotonic() - started >= READ_TIMEOUT_S * 0.9
        return
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % probe.status), received[:200]
    assert probe.message.encode() in body
