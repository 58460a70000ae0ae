"""The Automation API workspace against a fake ``pulumi`` executable: the exact command lines.

The Pulumi CLI is not on this machine, so the real workspace is checked by construction: the
SDK's own ``LocalWorkspace``/``Stack`` code runs unchanged and calls our ``PulumiCommand``,
which runs ``tests/fake_pulumi.py``; every argv, working directory, process group and
session is logged and asserted here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.cloud.automation import MIN_CLI_VERSION, AutomationWorkspace, IsolatedPulumiCommand
from loadtest.cloud.workspace import (
    CREATED_AT_TAG,
    RUN_ID_TAG,
    StackLockedError,
    StackMissingError,
    StackRef,
    WorkspaceError,
)
from tests import fake_pulumi

RUN = "20250101-120000-capacity"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake CLI under ``tmp_path/pulumi``; returns its log."""
    root = fake_pulumi.install(tmp_path / "pulumi")
    log = tmp_path / "pulumi.log"
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("FAKE_PULUMI_STATE", str(tmp_path / "pulumi-state.json"))
    monkeypatch.delenv("FAKE_PULUMI_FAULTS", raising=False)
    return root


def _platform(tmp_path: Path, backend: str | None = "s3://team-state", kms: bool = True) -> Path:
    project = tmp_path / "platform"
    project.mkdir()
    settings: dict[str, Any] = {"name": "qwen-stress", "runtime": "python"}
    if backend:
        settings["backend"] = {"url": backend}
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    if kms:
        (project / "Pulumi.dev.yaml").write_text(
            "secretsprovider: awskms://alias/pulumi\nconfig: {}\n"
        )
    return project


def _workspace(tmp_path: Path, cli: Path, **kw: Any) -> AutomationWorkspace:
    return AutomationWorkspace(
        platform_dir=kw.pop("platform_dir", None) or _platform(tmp_path),
        work_root=tmp_path / "work",
        platform_stack=StackRef.parse("dev"),
        pulumi_root=str(cli),
        **kw,
    )


def _argvs(tmp_path: Path) -> list[list[str]]:
    return [
        c["argv"]
        for c in fake_pulumi.calls(tmp_path / "pulumi.log")
        if c.get("argv") != ["version"]
    ]


def test_every_cli_process_runs_in_a_session_of_its_own(tmp_path: Path, cli: Path) -> None:
    command = IsolatedPulumiCommand(str(cli))
    command.run(["stack", "ls", "--json"], str(tmp_path), {})
    call = fake_pulumi.calls(tmp_path / "pulumi.log")[-1]
    assert call["sid"] != os.getsid(0)  # not the terminal's session
    assert call["pgid"] == call["sid"] == command.pids[-1]  # its own group, which it leads


def test_the_command_keeps_the_sdk_contract(tmp_path: Path, cli: Path) -> None:
    command = IsolatedPulumiCommand(str(cli))
    lines: list[str] = []
    command.run(
        ["stack", "ls", "--json"], str(tmp_path), {"PULUMI_HOME": "/x"}, on_output=lines.append
    )
    call = fake_pulumi.calls(tmp_path / "pulumi.log")[-1]
    assert call["argv"] == ["--non-interactive", "stack", "ls", "--json"]
    assert call["automation"] == "true"
    assert call["path0"] == str(cli / "bin")
    assert call["cwd"] == str(tmp_path)
    assert lines and lines[0].startswith("[")


@pytest.mark.parametrize(
    ("fault", "error"), [("locked", StackLockedError), ("fail", WorkspaceError)]
)
def test_cli_failures_become_the_seams_errors(
    tmp_path: Path, cli: Path, monkeypatch: pytest.MonkeyPatch, fault: str, error: type[Exception]
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_FAULTS", f'{{"destroy": ["{fault}"]}}')
    ws = _workspace(tmp_path, cli)
    stack = ws.create(RUN, lambda: None)
    with pytest.raises(error) as raised:
        stack.destroy(lambda _line: None)
    assert "pulumi destroy of" in str(raised.value)
    assert ("currently locked" if fault == "locked" else "ThrottlingException") in str(raised.value)


def test_a_missing_stack_is_stackmissing(tmp_path: Path, cli: Path) -> None:
    with pytest.raises(StackMissingError):
        _workspace(tmp_path, cli).select("never-made")


def test_a_whole_stack_life_sends_these_commands(tmp_path: Path, cli: Path) -> None:
    ws = _workspace(tmp_path, cli)
    stack = ws.create(RUN, lambda: None)
    stack.set_tags({RUN_ID_TAG: RUN, CREATED_AT_TAG: "1735725600"})
    stack.set_config({"aws:region": "us-east-1"})
    outputs = stack.up(lambda _line: None)
    dropped = stack.refresh(lambda _line: None)
    stack.destroy(lambda _line: None)
    stack.remove()

    assert outputs == {"masterService": "locust-master", "apiKey": "k3y"}
    assert dropped == []
    argvs = _argvs(tmp_path)
    strip = [[a for a in argv if not a.startswith("--client=")] for argv in argvs]
    expected = [
        ["--non-interactive", "stack", "select", "--stack", RUN],
        ["--non-interactive", "stack", "init", RUN, "--secrets-provider", "awskms://alias/pulumi"],
        ["--non-interactive", "stack", "tag", "set", RUN_ID_TAG, RUN, "--stack", RUN],
        ["--non-interactive", "stack", "tag", "set", CREATED_AT_TAG, "1735725600", "--stack", RUN],
        [
            "--non-interactive",
            "config",
            "set-all",
            "--stack",
            RUN,
            "--plaintext",
            "aws:region=us-east-1",
        ],
    ]
    assert strip[: len(expected)] == expected
    up = next(a for a in strip if "up" in a)
    assert up[:4] == ["--non-interactive", "up", "--yes", "--skip-preview"]
    assert {"--color", "never", "--exec-kind", "auto.inline"} <= set(up) and up[-2:] == [
        "--stack",
        RUN,
    ]
    assert any(a.startswith("--client=127.0.0.1:") for a in next(x for x in argvs if "up" in x))
    refresh = next(a for a in strip if "refresh" in a)
    assert "--clear-pending-creates" in refresh and refresh[-2:] == ["--stack", RUN]
    assert ["--non-interactive", "stack", "export", "--stack", RUN] in strip  # no --show-secrets
    destroy = next(a for a in strip if "destroy" in a)
    assert {"--yes", "--skip-preview"} <= set(destroy) and destroy[-2:] == ["--stack", RUN]
    assert strip[-1] == ["--non-interactive", "stack", "rm", "--yes", RUN]


def test_the_load_test_project_lands_on_the_platforms_backend(tmp_path: Path, cli: Path) -> None:
    stack = _workspace(tmp_path, cli).create(RUN, lambda: None)
    settings = yaml.safe_load((Path(stack.work_dir) / "Pulumi.yaml").read_text())
    assert settings["name"] == "qwen-stress-loadtest"
    assert settings["runtime"] == "python"
    assert settings["backend"] == {"url": "s3://team-state"}
    assert Path(stack.work_dir).parent == tmp_path / "work"
    calls = fake_pulumi.calls(tmp_path / "pulumi.log")
    assert all(
        c["cwd"] == stack.work_dir for c in calls if c.get("argv", ["version"]) != ["version"]
    )


def test_without_a_project_backend_the_cli_chooses_as_pulumi_does(
    tmp_path: Path, cli: Path
) -> None:
    ws = _workspace(tmp_path, cli, platform_dir=_platform(tmp_path, backend=None, kms=False))
    stack = ws.create(RUN, lambda: None)
    settings = yaml.safe_load((Path(stack.work_dir) / "Pulumi.yaml").read_text())
    assert "backend" not in settings  # PULUMI_BACKEND_URL, else the logged-in backend
    init = next(a for a in _argvs(tmp_path) if "init" in a)
    assert "--secrets-provider" not in init


def test_platform_outputs_are_read_where_pulumi_up_ran(tmp_path: Path, cli: Path) -> None:
    platform = _platform(tmp_path)
    ws = _workspace(tmp_path, cli, platform_dir=platform)
    outputs = ws.platform_outputs(StackRef.parse("acme/qwen-stress/dev"))
    assert outputs["apiKey"] == "k3y"
    calls = [c for c in fake_pulumi.calls(tmp_path / "pulumi.log") if c["argv"] != ["version"]]
    assert [c["argv"] for c in calls] == [
        ["--non-interactive", "stack", "output", "--json", "--stack", "acme/qwen-stress/dev"],
        [
            "--non-interactive",
            "stack",
            "output",
            "--json",
            "--show-secrets",
            "--stack",
            "acme/qwen-stress/dev",
        ],
    ]
    assert {c["cwd"] for c in calls} == {str(platform)}


def test_listing_gives_each_stack_its_tags_and_last_update(tmp_path: Path, cli: Path) -> None:
    ws = _workspace(tmp_path, cli)
    ws.create(RUN, lambda: None).set_tags({RUN_ID_TAG: RUN})
    (listed,) = ws.list_stacks()
    assert listed.name == RUN and listed.tags == {RUN_ID_TAG: RUN}
    assert (
        listed.last_update is not None
        and listed.last_update.isoformat() == "2025-01-01T10:00:00+00:00"
    )


def test_pending_creates_are_read_before_the_refresh_drops_them(tmp_path: Path, cli: Path) -> None:
    import json  # noqa: PLC0415

    ws = _workspace(tmp_path, cli)
    stack = ws.create(RUN, lambda: None)
    state_path = tmp_path / "pulumi-state.json"
    state = json.loads(state_path.read_text())
    urn = "urn:pulumi:x::qwen-stress-loadtest::aws:eks/nodeGroup:NodeGroup::loadgen"
    state["stacks"][RUN]["pending"] = [
        {"resource": {"urn": urn}, "type": "creating"},
        {"resource": {"urn": "urn:other"}, "type": "deleting"},
    ]
    state_path.write_text(json.dumps(state))
    assert stack.refresh(lambda _line: None) == [urn]


def test_an_old_cli_is_refused_with_the_version_needed(
    tmp_path: Path, cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "v3.200.0")
    with pytest.raises(WorkspaceError, match=str(MIN_CLI_VERSION)):
        _workspace(tmp_path, cli)


def test_no_cli_on_path_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not on PATH"):
        _workspace(tmp_path, tmp_path / "nowhere")
