"""``qwen-stress run`` refuses bad input before any process starts, naming the flag or key."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from domain.vllm_args import API_KEY_ENV
from loadtest import run_cli, targets
from loadtest.cli import app
from loadtest.run_options import LOCAL_TIME_SCALE, OptionsError, RunOptions
from loadtest.run_spec import RunSpec
from loadtest.schema import AutoscalingInfo
from loadtest.targets import FleetTarget, api_base

URL = ["--url", "http://127.0.0.1:9", "--model", "m"]


@pytest.fixture(autouse=True)
def key_variable_restored() -> Iterator[None]:
    """``run`` on the local twin without --api-key-env puts a fresh key in its own process's
    ``VLLM_API_KEY`` for the workers to inherit; here that process is pytest's."""
    saved = os.environ.get(API_KEY_ENV)
    yield
    if saved is None:
        os.environ.pop(API_KEY_ENV, None)
    else:
        os.environ[API_KEY_ENV] = saved


@pytest.fixture(autouse=True)
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(spec: object) -> None:
        raise AssertionError("validation passed: a load test would have started")

    monkeypatch.setattr(run_cli, "_execute", refuse)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--plan", "poisson"], "the poisson plan needs --rate"),
        (["--plan", "warp"], "--plan 'warp': unknown plan; plans: capacity, fixed, poisson"),
        (["--users", "5"], "fixed load needs --users N and --duration"),
        (["--slo", "ttft_p98_ms=1"], "--slo ttft_p98_ms: unknown objective"),
        (["--step-duration", "soon"], "--step-duration 'soon': write a duration like 30s"),
        (
            ["--api-key-env", "QWEN_STRESS_TEST_SURELY_UNSET"],
            "QWEN_STRESS_TEST_SURELY_UNSET: that environment variable is not set",
        ),
        (
            ["--endpoint", "embeddings"],
            "--endpoint 'embeddings': input should be 'chat', 'completions' or 'generate'",
        ),
        (["--gpu", "A10G"], "--gpu and --config describe the local target"),
        (["--max-users", "10"], "below the baseline of 50 users"),
        (["--users", "0", "--duration", "1s"], "--users 0: input should be greater than or equal"),
        (["--spawn-rate", "0"], "--spawn-rate 0.0: input should be greater than 0"),
        (["--step-duration", "0s"], "--step-duration '0s': input should be greater than 0"),
        (["--workers", "0"], "--workers 0: input should be greater than or equal to 1"),
        (["--workers", "65"], "--workers 65: input should be less than or equal to 64"),
        (["--max-tokens", "0"], "--max-tokens 0: input should be greater than or equal to 1"),
        (["--max-inflight", "0"], "--max-inflight 0: input should be greater than or equal"),
        (
            ["--time-scale", "0"],
            "--time-scale 0.0: input should be greater than or equal to 0.001",
        ),
        (["--time-scale", "nan"], "--time-scale nan: input should be a finite number"),
        (
            ["--time-scale", "1e308"],
            "--time-scale 1e+308: input should be less than or equal to 1000",
        ),
        (["--spawn-rate", "inf"], "--spawn-rate inf: input should be a finite number"),
        (["--rate", "1,x"], "--rate '1,x': write requests per second, like 2 or 1,2,4"),
        (["--soak", "-1m"], "--soak '-1m': write a duration like 30s, 2m or 1h30m"),
        (["--baseline-users", "-1"], "--baseline-users -1: input should be greater than"),
        (["--duration", "5m"], "fixed load needs --users N and --duration T"),
        (
            ["--plan", "capacity", "--duration", "5m"],
            "--duration is read by the fixed plan only, not by capacity; drop it or pass "
            "--plan fixed",
        ),
        (["--plan", "ramp", "--users", "5"], "--users is read by the fixed and soak plans only"),
        (["--plan", "fixed", "--rate", "3"], "--rate is read by the poisson plan only"),
    ],
)
def test_bad_flags_are_refused(args: list[str], expected: str) -> None:
    code, output = run(*URL, *args)
    assert code == 2
    assert expected in " ".join(output.split())


def test_a_local_target_that_cannot_fit_is_refused() -> None:
    code, output = run("--gpu", "T4", "--users", "1", "--duration", "1s")
    assert code == 2
    assert "--model Qwen/Qwen2.5-7B-Instruct --gpu T4: Qwen/Qwen2.5-7B-Instruct needs" in output
    code, output = run("--gpu", "Z80", "--users", "1", "--duration", "1s")
    assert code == 2 and "unknown GPU 'Z80'" in output


def test_workload_file_errors_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "mix.yaml"
    bad.write_text("tasks:\n  - name: a\n    prompts: zh-poem\n", encoding="utf-8")
    code, output = run(*URL, "--workload", str(bad))
    assert code == 2
    assert f"invalid workload {bad}" in output
    assert "tasks.0.prompts: unknown built-in prompt set 'zh-poem'" in output


def test_an_existing_run_directory_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    code, output = run(*URL, "--users", "1", "--duration", "1s", "--out", str(tmp_path))
    assert code == 2
    assert "already holds files" in output


def test_validation_does_not_import_locust() -> None:
    # Locust monkey-patches the standard library for gevent; only a run that starts may load it.
    # A fresh interpreter: whatever earlier tests imported cannot hide the import, or fake it.
    code = (
        "import sys; from typer.testing import CliRunner; from loadtest.cli import app; "
        f"r = CliRunner().invoke(app, ['run', *{URL!r}, '--plan', 'warp']); "
        "print(r.exit_code, 'locust' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1h30m", 5400.0), ("0.5s", 0.5)],
)
def test_durations(text: str, value: float) -> None:
    flags = {"users": 1, "duration": text, "step_duration": text, "soak": text}
    options = RunOptions.from_flags(url="http://h", **flags)
    assert (options.duration, options.step_duration, options.soak) == (value, value, value)
    # the plan gets them multiplied by the time scale, the flags stay as given
    local = RunOptions.from_flags(**flags).plan_options()
    assert local.duration_s == pytest.approx(value * LOCAL_TIME_SCALE)


def _run_parameters() -> dict[str, object]:
    """The ``run`` command's parameters by name, with their defaults."""
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    return {p.name: p.default for p in command.params}


def test_the_options_model_has_one_field_per_flag_with_the_same_defaults() -> None:
    params = _run_parameters()
    renamed = {"workload_file": "workload", "slo_text": "slo"}
    assert {renamed.get(name, name) for name in params} == set(RunOptions.model_fields)
    as_typed = RunOptions.from_flags(**{renamed.get(k, k): v for k, v in params.items()})
    assert as_typed == RunOptions()


def test_a_wrong_flag_is_named_even_when_the_model_is_used_alone() -> None:
    with pytest.raises(OptionsError, match=r"^--baseline-users 0: input should be greater"):
        RunOptions.from_flags(baseline_users=0)
    with pytest.raises(OptionsError, match=r"^--slo x: unknown objective"):
        RunOptions.from_flags(slo="x=1")
    with pytest.raises(OptionsError, match=r"^--bogus: not a flag of run$"):
        RunOptions.from_flags(bogus=1)


def test_the_options_round_trip_through_json() -> None:
    options = RunOptions.from_flags(
        url="http://127.0.0.1:9",
        plan="poisson",
        rate="1,2.5",
        step_duration="90s",
        slo="e2e_p99_ms=4s",
    )
    again = RunOptions.model_validate_json(options.model_dump_json())
    assert again == options
    assert again.rate == [1.0, 2.5] and again.step_duration == 90.0
    assert again.load_plan().name == "poisson"


def test_readme_lists_every_run_flag() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Flags", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", section, flags=re.MULTILINE))
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    flags = {opt for p in command.params for opt in p.opts if opt.startswith("--")}
    assert documented == flags


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://api.example.com/v1", "https://api.example.com"),
        ("https://api.example.com/v1/", "https://api.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://gateway.example.com/qwen/v1", "https://gateway.example.com/qwen"),
        ("https://gateway.example.com/v1beta", "https://gateway.example.com/v1beta"),
    ],
)
def test_the_url_is_taken_with_or_without_v1(url: str, base: str) -> None:
    assert api_base(url) == base


def test_models_are_listed_below_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    specs: list[RunSpec] = []

    def models(url: str, key: str | None) -> tuple[int, list[str]]:
        asked.append(url)
        return 200, ["Qwen/Qwen2.5-7B-Instruct"]

    def execute(spec: RunSpec) -> None:
        specs.append(spec)
        raise typer.Exit(0)

    monkeypatch.setattr(run_cli, "list_models", models)
    monkeypatch.setattr(run_cli, "_execute", execute)
    code, _ = run("--url", "http://127.0.0.1:9/v1/", "--users", "1", "--duration", "1s")
    assert code == 0
    assert asked == ["http://127.0.0.1:9"]
    assert specs[0].target.base_url == "http://127.0.0.1:9"
    assert specs[0].model == "Qwen/Qwen2.5-7B-Instruct"
    # the flags as given travel with the spec to config.json
    assert specs[0].options == RunOptions(url="http://127.0.0.1:9/v1/", users=1, duration=1.0)


@pytest.mark.parametrize("url", ["api.example.com", "ftp://host/v1", "http://h/v1?key=1"])
def test_a_url_that_is_not_an_endpoint_is_refused(url: str) -> None:
    code, output = run("--url", url, "--model", "m", "--users", "1", "--duration", "1s")
    assert code == 2
    assert f"--url {url!r}: write the endpoint's address" in " ".join(output.split())


@pytest.mark.parametrize("model", [[], ["--model", "m"]])
def test_a_refused_api_key_stops_the_run_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, model: list[str]
) -> None:
    keys: list[str | None] = []

    def models(url: str, key: str | None) -> tuple[int, list[str]]:
        keys.append(key)
        return 401, []

    monkeypatch.setattr(run_cli, "list_models", models)
    monkeypatch.setenv("QWEN_STRESS_TEST_KEY", "sk-wrong")
    args = ["--url", "https://api.example.com/v1", "--api-key-env", "QWEN_STRESS_TEST_KEY"]
    code, output = run(*args, *model, "--users", "1", "--duration", "1s")
    assert code == 2
    assert keys == ["sk-wrong"]
    assert (
        "https://api.example.com/v1/models answered HTTP 401, the API key was refused: "
        "check the key in $QWEN_STRESS_TEST_KEY" in " ".join(output.split())
    )
    assert "sk-wrong" not in output


def test_models_that_cannot_be_listed_ask_for_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_cli, "list_models", lambda url, key: (404, []))
    code, output = run("--url", "http://127.0.0.1:9", "--users", "1", "--duration", "1s")
    assert code == 2
    assert "cannot list the models at http://127.0.0.1:9/v1/models (HTTP 404); pass --model" in (
        " ".join(output.split())
    )


def test_the_local_twin_gets_the_api_key_through_its_environment(tmp_path: Path) -> None:
    # A command line is readable by every local user; the environment is not.
    fleet = AutoscalingInfo(
        model="m",
        gpu="T4",
        instance_type="g4dn.xlarge",
        min_replicas=1,
        max_replicas=2,
        triggers={},
    )
    target = FleetTarget(
        fleet,
        ["--model", "m", "--gpu", "T4"],
        0.1,
        None,
        "sk-local-3c9e",
    )
    assert not any("sk-local-3c9e" in part for part in target.command)
    assert target.env == {"VLLM_API_KEY": "sk-local-3c9e"}


def test_credentials_in_the_url_are_refused_without_being_echoed() -> None:
    code, output = run("--url", "https://me:sk-in-url-91@api.example.com/v1", "--model", "m")
    assert code == 2
    assert "--url: put no credentials in the URL (api.example.com)" in " ".join(output.split())
    assert "sk-in-url-91" not in output


def test_prometheus_is_for_a_url_run_of_a_named_stack() -> None:
    from loadtest.targets import free_port  # noqa: PLC0415

    prometheus = f"http://127.0.0.1:{free_port()}"
    stack = str(Path(__file__).parents[2] / "Pulumi.dev.yaml")
    code, output = run("--prometheus", prometheus, "--users", "1", "--duration", "1s")
    assert code == 2 and "--prometheus reads a cluster's Prometheus: use it with --url" in output
    code, output = run(*URL, "--prometheus", prometheus)
    assert code == 2 and "--prometheus needs --config Pulumi.<stack>.yaml" in output
    code, output = run(*URL, "--config", stack)
    assert code == 2 and "--config goes with --prometheus" in " ".join(output.split())
    code, output = run(*URL, "--prometheus", prometheus, "--config", stack)
    assert code == 2 and f"--prometheus {prometheus}: Prometheus at" in output
    assert "did not answer" in output


def test_a_runs_folder_that_is_a_file_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    code, output = run(*URL, "--users", "1", "--duration", "1s")
    assert code == 2
    assert "(--out's default): " in output and "runs is a file, not a directory" in output


class _Silent:
    """A TCP server on loopback that answers each connection with ``reply`` and closes it (as a
    TLS port asked in plain HTTP does), or takes it and says nothing (``None``)."""

    def __init__(self, reply: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.reply = reply
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            conn.recv(65536)
            if self.reply is not None:
                conn.sendall(self.reply)
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (None, "took the connection but sent no answer within 0.5 s"),
        (b"\x15\x03\x03\x00\x02\x02\x46", "answered, but not in HTTP (BadStatusLine)"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "answered, but not in HTTP (BadStatusLine)"),
    ],
    ids=["silent", "tls-alert", "ssh"],
)
@pytest.mark.parametrize("model", [[], ["--model", "m"]])
def test_a_target_that_does_not_speak_http_is_refused_before_the_run(
    monkeypatch: pytest.MonkeyPatch, reply: bytes | None, expected: str, model: list[str]
) -> None:
    monkeypatch.setattr(targets, "MODELS_TIMEOUT_S", 0.5)
    server = _Silent(reply)
    try:
        code, output = run("--url", server.url, *model, "--users", "1", "--duration", "1s")
    finally:
        server.close()
    assert code == 2
    assert f"{server.url}/v1/models {expected}" in " ".join(output.split())
