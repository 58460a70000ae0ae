"""``Workspace`` on the Pulumi Automation API, with the CLI kept out of the terminal's reach.

Checked against the installed SDK (pulumi 3.272, ``pulumi/automation``) and pulumi/pulumi:

- every operation, ``cancel`` included, ends in ``PulumiCommand.run(args, cwd, additional_env,
  on_output, on_error)`` (``_cmd.py``; ``interface/__init__.py`` goes through it too), so one
  subclass decides how the ``pulumi`` process starts. ``IsolatedPulumiCommand`` starts it in a
  session of its own (``start_new_session=True``): Ctrl-C reaches the terminal's foreground
  process group, not the CLI, which would otherwise die mid-update and leave pending operations
  and a lock. It reproduces the base class's contract: ``--non-interactive`` before the first
  ``--``, ``PULUMI_AUTOMATION_API=true``, the CLI's own directory first on ``PATH``, lines to
  the callbacks, ``create_command_error`` on a non-zero exit (``ConcurrentUpdateError`` for
  "[409] Conflict" and the DIY backend's "the stack is currently locked by");
- ``create_or_select_stack(stack_name, project_name, program, opts)`` and ``select_stack``
  with ``LocalWorkspaceOptions(work_dir, project_settings, secrets_provider, pulumi_command)``;
  ``Stack.up/refresh(clear_pending_creates=...)/destroy/cancel``, ``set_all_config``,
  ``set_tag``, ``workspace.remove_stack``, ``list_stacks`` (``stack ls --json``: ``name``,
  ``lastUpdate``, ``updateInProgress``) and ``list_tags`` (``stack tag ls --json``);
- the backend: ``PULUMI_BACKEND_URL`` wins, else the project's ``backend.url``, else the
  logged-in one (``pkg/workspace``: ``GetCurrentCloudURL``). The load-test project copies the
  platform project's ``backend.url``, and the CLI inherits this process's environment, so it
  lands where ``pulumi`` run in the platform project would;
- stack tags persist in DIY backends (S3, file...) since CLI 3.211.0 (pulumi/pulumi#19882):
  that is the oldest CLI accepted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import IO, Any

import yaml
from pulumi import automation as auto
from pulumi.automation.errors import (
    CommandError,
    ConcurrentUpdateError,
    StackNotFoundError,
    create_command_error,
)
from semver import VersionInfo

from domain.topology import LOADTEST_PROJECT
from loadtest.cloud.workspace import (
    OnOutput,
    Program,
    StackListing,
    StackLockedError,
    StackMissingError,
    StackRef,
    WorkspaceError,
)

MIN_CLI_VERSION = VersionInfo(3, 211, 0)
PLATFORM_PROJECT = "qwen-stress"
"""The platform project's name when no ``Pulumi.yaml`` is at hand."""


class IsolatedPulumiCommand(auto.PulumiCommand):
    """The Pulumi CLI, each run in a new session so no terminal signal can reach it.

    Only the SDK constructor's ``pulumi version`` probe (read-only, before any stack exists)
    runs in the caller's session.
    """

    def __init__(self, root: str | None = None) -> None:
        super().__init__(root=root, version=MIN_CLI_VERSION)
        self.pids: list[int] = []
        """Every ``pulumi`` process started (the tests read it)."""

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: auto.OnOutput | None = None,
        on_error: auto.OnOutput | None = None,
    ) -> auto.CommandResult:
        """Run ``pulumi args`` to completion; lines go to the callbacks as they come."""
        head = args[: args.index("--")] if "--" in args else args
        argv = args if "--non-interactive" in head else ["--non-interactive", *args]
        env = {**os.environ, **additional_env, "PULUMI_AUTOMATION_API": "true"}
        if os.path.isabs(self.command):
            # As the SDK does: plugins shipped next to the CLI are found first.
            env["PATH"] = os.pathsep.join([os.path.dirname(self.command), env.get("PATH", "")])
        with subprocess.Popen(
            [self.command, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        ) as process:
            self.pids.append(process.pid)
            assert process.stdout is not None and process.stderr is not None
            out: list[str] = []
            err: list[str] = []
            readers = [
                threading.Thread(target=_drain, args=(process.stdout, on_output, out), daemon=True),
                threading.Thread(target=_drain, args=(process.stderr, on_error, err), daemon=True),
            ]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join()
            code = process.wait()
        result = auto.CommandResult(stdout="\n".join(out), stderr="\n".join(err), code=code)
        if code != 0:
            raise create_command_error(result)
        return result


def _drain(stream: IO[str], callback: auto.OnOutput | None, lines: list[str]) -> None:
    for line in iter(stream.readline, ""):
        text = line.rstrip()
        if callback is not None:
            callback(text)
        lines.append(text)
    stream.close()


def _message(err: CommandError) -> str:
    """The CLI's error lines, without the SDK's framing (``code: ... stdout: ...``)."""
    text = str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")]
    return " | ".join(lines)[-600:] if lines else text.strip()[-600:]


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Automation API errors as the seam's errors, named by the operation."""
    try:
        yield
    except ConcurrentUpdateError as err:
        raise StackLockedError(f"{what}: the stack is locked ({_message(err)})") from None
    except StackNotFoundError as err:
        raise StackMissingError(f"{what}: {_message(err)}") from None
    except CommandError as err:
        raise WorkspaceError(f"{what} failed: {_message(err)}") from None


def read_project(project_dir: Path) -> tuple[str, str | None]:
    """The platform project's name and ``backend.url`` from its ``Pulumi.yaml`` (if any)."""
    path = project_dir / "Pulumi.yaml"
    if not path.is_file():
        return PLATFORM_PROJECT, None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    backend = data.get("backend") or {}
    return str(data.get("name") or PLATFORM_PROJECT), backend.get("url")


def read_secrets_provider(project_dir: Path, stack: StackRef) -> str | None:
    """The platform stack's ``secretsprovider`` (``Pulumi.<stack>.yaml``), for the load-test stack.

    A DIY backend's default is a passphrase (``PULUMI_CONFIG_PASSPHRASE``); a platform stack on
    ``awskms://`` or similar names it here, and the load-test stack uses the same.
    """
    path = project_dir / f"Pulumi.{stack.stack}.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    provider = data.get("secretsprovider")
    return str(provider) if provider else None


def _no_program() -> None:
    """The inline program of a stack opened only to be destroyed (destroy never runs it)."""


class AutomationStack:
    """One load-test stack through the Automation API."""

    def __init__(self, stack: auto.Stack, command: auto.PulumiCommand) -> None:
        self._stack = stack
        self._command = command
        self.name = stack.name
        self.work_dir = str(stack.workspace.work_dir)

    def set_config(self, values: Mapping[str, str]) -> None:
        """``pulumi config set-all --plaintext k=v ...`` (plain values only: see the protocol)."""
        with _translated(f"setting config on {self.name}"):
            self._stack.set_all_config({k: auto.ConfigValue(value=v) for k, v in values.items()})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """``pulumi stack tag set`` for each tag."""
        with _translated(f"tagging {self.name}"):
            for key, value in tags.items():
                self._stack.set_tag(key, value)

    def up(self, on_output: OnOutput) -> dict[str, Any]:
        """``pulumi up --yes --skip-preview``; the outputs in plain text."""
        with _translated(f"pulumi up of {self.name}"):
            result = self._stack.up(on_output=on_output, on_error=on_output, color="never")
        return {key: out.value for key, out in result.outputs.items()}

    def refresh(self, on_output: OnOutput) -> list[str]:
        """``pulumi refresh --clear-pending-creates``; the URNs of the pending creates dropped.

        A create the CLI started but never saw finish may exist in AWS without being in the
        state; dropping it lets the destroy go on, and the caller names it (its ``run-id`` tag
        finds it).
        """
        with _translated(f"reading the state of {self.name}"):
            exported = self._command.run(
                ["stack", "export", "--stack", self.name], self.work_dir, self._env()
            )
        deployment = (json.loads(exported.stdout or "{}") or {}).get("deployment") or {}
        pending = [
            str(op.get("resource", {}).get("urn"))
            for op in deployment.get("pending_operations") or []
            if op.get("type") == "creating"
        ]
        with _translated(f"pulumi refresh of {self.name}"):
            self._stack.refresh(
                clear_pending_creates=True, on_output=on_output, on_error=on_output, color="never"
            )
        return pending

    def destroy(self, on_output: OnOutput) -> None:
        """``pulumi destroy --yes --skip-preview``."""
        with _translated(f"pulumi destroy of {self.name}"):
            self._stack.destroy(on_output=on_output, on_error=on_output, color="never")

    def cancel(self) -> None:
        """``pulumi cancel``: releases the lock an interrupted operation left."""
        with _translated(f"pulumi cancel on {self.name}"):
            self._stack.cancel()

    def remove(self) -> None:
        """``pulumi stack rm --yes``."""
        with _translated(f"pulumi stack rm {self.name}"):
            self._stack.workspace.remove_stack(self.name)

    def _env(self) -> dict[str, str]:
        return dict(self._stack.workspace.env_vars)


class AutomationWorkspace:
    """The user's Pulumi backend, reached through the CLI on ``PATH`` (or ``pulumi_root``)."""

    def __init__(
        self,
        platform_dir: Path,
        work_root: Path,
        platform_stack: StackRef | None = None,
        pulumi_root: str | None = None,
        command: auto.PulumiCommand | None = None,
    ) -> None:
        """``command`` replaces the isolated CLI (the tests pass the SDK's own, to compare)."""
        try:
            self.command = command or IsolatedPulumiCommand(pulumi_root)
        except FileNotFoundError:
            raise WorkspaceError(
                "the Pulumi CLI is not on PATH: install it (pulumi.com/docs/install) and run "
                "`pulumi login` to the backend of your platform stack"
            ) from None
        except auto.errors.InvalidVersionError as err:
            raise WorkspaceError(f"{err} (qwen-stress needs {MIN_CLI_VERSION} or newer)") from None
        self.platform_dir = platform_dir
        self.work_root = work_root
        self.platform_project, self.backend_url = read_project(platform_dir)
        self.secrets_provider = (
            read_secrets_provider(platform_dir, platform_stack) if platform_stack else None
        )

    def project_settings(self, work_dir: Path) -> auto.ProjectSettings:
        """``Pulumi.yaml`` of the load-test project: its name, python, the platform's backend."""
        backend = auto.ProjectBackend(url=self.backend_url) if self.backend_url else None
        return auto.ProjectSettings(
            name=LOADTEST_PROJECT, runtime="python", main=str(work_dir), backend=backend
        )

    def options(self, work_dir: Path) -> auto.LocalWorkspaceOptions:
        """Options of the load-test workspace rooted at ``work_dir``."""
        return auto.LocalWorkspaceOptions(
            work_dir=str(work_dir),
            project_settings=self.project_settings(work_dir),
            secrets_provider=self.secrets_provider,
            pulumi_command=self.command,
        )

    def _work_dir(self, name: str) -> Path:
        path = self.work_root / re.sub(r"[^A-Za-z0-9._-]", "_", name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def platform_outputs(self, stack: StackRef) -> dict[str, Any]:
        """``pulumi stack output --json --show-secrets``, run where ``pulumi up`` was."""
        directory = self.platform_dir
        if not (directory / "Pulumi.yaml").is_file():
            directory = self._work_dir(f"platform-{self.platform_project}")
            settings = auto.ProjectSettings(
                name=self.platform_project,
                runtime="python",
                main=str(directory),
                backend=auto.ProjectBackend(url=self.backend_url) if self.backend_url else None,
            )
            ws = auto.LocalWorkspace(
                work_dir=str(directory), project_settings=settings, pulumi_command=self.command
            )
        else:
            ws = auto.LocalWorkspace(work_dir=str(directory), pulumi_command=self.command)
        with _translated(f"reading the outputs of the platform stack {stack}"):
            outputs = ws.stack_outputs(str(stack))
        return {key: out.value for key, out in outputs.items()}

    def create(self, name: str, program: Program) -> AutomationStack:
        """``create_or_select_stack`` of the inline program, in its own work dir."""
        with _translated(f"creating the stack {name}"):
            stack = auto.create_or_select_stack(
                stack_name=name,
                project_name=LOADTEST_PROJECT,
                program=program,
                opts=self.options(self._work_dir(name)),
            )
        return AutomationStack(stack, self.command)

    def select(self, name: str) -> AutomationStack:
        """``select_stack``; raises ``StackMissingError`` when the backend has no such stack."""
        with _translated(f"selecting the stack {name}"):
            stack = auto.select_stack(
                stack_name=name,
                project_name=LOADTEST_PROJECT,
                program=_no_program,
                opts=self.options(self._work_dir(name)),
            )
        return AutomationStack(stack, self.command)

    def list_stacks(self) -> list[StackListing]:
        """``stack ls --json`` in the load-test project, and each stack's tags."""
        work_dir = self._work_dir("listing")
        ws = auto.LocalWorkspace(
            work_dir=str(work_dir),
            project_settings=self.project_settings(work_dir),
            pulumi_command=self.command,
        )
        with _translated(f"listing the stacks of {LOADTEST_PROJECT}"):
            listed = ws.list_stacks()
        out = []
        for summary in listed:
            with _translated(f"reading the tags of {summary.name}"):
                tags = ws.list_tags(summary.name)
            last = summary.last_update
            out.append(
                StackListing(
                    name=summary.name,
                    tags={str(k): str(v) for k, v in (tags or {}).items()},
                    # The SDK parses ``lastUpdate`` (written in UTC) into a naive datetime.
                    last_update=last.replace(tzinfo=UTC) if last is not None else None,
                    update_in_progress=bool(summary.update_in_progress),
                )
            )
        return out
