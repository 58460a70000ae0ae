"""The pods' entrypoint refuses to start with one line naming what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.vllm_args import API_KEY_ENV
from loadtest import pod
from loadtest.cloud import contract


def _env(tmp_path: Path, role: str) -> dict[str, str]:
    payload = tmp_path / "run.json"
    payload.write_text(json.dumps({"plan": "capacity"}))
    values = {
        contract.ENV_RUN_ID: "r1",
        contract.ENV_PAYLOAD: str(payload),
        contract.ENV_VLLM_URL: "http://vllm.vllm.svc.cluster.local:8000/v1",
        contract.ENV_MODEL: "Qwen/Qwen2.5-7B-Instruct-AWQ",
        contract.ENV_MASTER_HOST: "locust-master.loadtest-r1.svc.cluster.local",
        contract.ENV_MASTER_PORT: "5557",
        contract.ENV_WORKERS: "6",
        contract.ENV_API_PORT: "8080",
        contract.ENV_PROMETHEUS_URL: "http://prometheus:9090",
        contract.ENV_RUN_DIR: str(tmp_path / "run"),
        API_KEY_ENV: "sk-secret-value",
    }
    return {k: v for k, v in values.items() if k in pod.REQUIRED_ENV[role]}


@pytest.mark.parametrize("role", ["master", "worker"])
def test_settings_are_read_without_the_api_key(tmp_path: Path, role: str) -> None:
    settings = pod.PodSettings.from_env(role, _env(tmp_path, role))
    assert settings.payload == {"plan": "capacity"}
    assert API_KEY_ENV not in settings.env
    assert "sk-secret-value" not in repr(settings)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({contract.ENV_MASTER_HOST: ""}, "environment variable QWEN_STRESS_MASTER_HOST is not set"),
        ({API_KEY_ENV: ""}, "environment variable VLLM_API_KEY is not set"),
        ({contract.ENV_MASTER_PORT: "55x"}, "QWEN_STRESS_MASTER_PORT='55x' is not a number"),
        ({contract.ENV_PAYLOAD: "/nonexistent/run.json"}, "cannot read the run payload"),
    ],
)
def test_a_wrong_setting_stops_the_worker_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    for key, value in (_env(tmp_path, "worker") | change).items():
        monkeypatch.setenv(key, value)
    assert pod.main(["check", "worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qwen-stress pod: worker: ") and message in err
    assert err.count("\n") == 1 and "sk-secret-value" not in err


def test_a_payload_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    env = _env(tmp_path, "master")
    Path(env[contract.ENV_PAYLOAD]).write_text("[1, 2]")
    with pytest.raises(pod.PodError, match="is not a JSON object"):
        pod.PodSettings.from_env("master", env)


def test_unknown_roles_get_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["leader"], ["check"], ["check", "leader"]):
        assert pod.main(args) == 2
        assert pod.USAGE in capsys.readouterr().err


@pytest.mark.slow
def test_a_master_given_another_versions_payload_stops_with_one_line(tmp_path: Path) -> None:
    # A process of its own: the roles load Locust, whose gevent patching must not reach pytest.
    env = _env(tmp_path, "master")
    environ = {"PATH": os.environ.get("PATH", ""), **env}
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.pod", "master"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("qwen-stress pod: master: the run payload has version None")
    assert done.stderr.count("\n") == 1 and "sk-secret-value" not in done.stderr
    assert not (tmp_path / "run").exists()  # stopped before it made anything
