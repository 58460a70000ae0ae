"""The seam between the orchestrator and Pulumi: exactly the stack operations a cloud run uses.

``Workspace`` reads the platform stack's outputs and opens the ephemeral stacks of the
``qwen-stress-loadtest`` project; ``EphemeralStack`` is one of them (config, tags, up,
refresh, destroy, cancel, remove). ``automation.py`` implements both with the Pulumi
Automation API; the tests use a fake, so every fault can be injected without the Pulumi CLI.
Nothing here imports Pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.topology import LOADTEST_PROJECT

Program = Callable[[], None]
"""An inline Pulumi program (what ``loadtest.cloud.stack.program(spec)`` returns)."""
OnOutput = Callable[[str], None]
"""Receives each line the Pulumi CLI prints."""

TAG_PREFIX = "qwen-stress:"
RUN_ID_TAG = f"{TAG_PREFIX}run-id"
CREATED_AT_TAG = f"{TAG_PREFIX}created-at"
EXPIRES_AT_TAG = f"{TAG_PREFIX}expires-at"
"""Stack tags set at creation (unix seconds as text): ``reap`` finds and ages stacks by them."""

_STACK_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A stack, project or organization name as Pulumi accepts it."""


class WorkspaceError(RuntimeError):
    """A stack operation failed; the message carries the CLI's own words."""


class StackLockedError(WorkspaceError):
    """Another operation holds the stack's lock (``ConcurrentUpdateError``)."""


class StackMissingError(WorkspaceError):
    """The backend has no stack of that name."""


@dataclass(frozen=True)
class StackListing:
    """One stack of the load-test project as the backend lists it."""

    name: str
    tags: Mapping[str, str]
    last_update: datetime | None
    """When its last operation ended (UTC), None if it never ran one."""
    update_in_progress: bool = False


@dataclass(frozen=True)
class StackRef:
    """A stack as a user names it: ``dev``, ``project/dev`` or ``org/project/dev``."""

    org: str | None
    project: str | None
    stack: str

    @classmethod
    def parse(cls, text: str) -> StackRef:
        """Split a stack name, refusing what Pulumi would refuse (``ValueError`` says why)."""
        parts = text.strip().split("/")
        if len(parts) > 3 or not all(_STACK_PART.fullmatch(p) for p in parts):
            raise ValueError(
                f"stack {text!r}: write it as Pulumi names it, like dev or org/qwen-stress/dev "
                "(letters, digits, '.', '_' and '-')"
            )
        padded: list[str | None] = [None] * (3 - len(parts)) + list(parts)
        return cls(padded[0], padded[1], parts[-1])

    def __str__(self) -> str:
        return "/".join(p for p in (self.org, self.project, self.stack) if p)


def ephemeral_stack_name(platform: StackRef, run_id: str) -> str:
    """The load-test stack of a run: named after it, in the platform stack's organization.

    A platform stack named with its organization puts the load-test stack in the same one;
    otherwise the backend's default organization holds both.
    """
    if not _STACK_PART.fullmatch(run_id):
        raise ValueError(
            f"run id {run_id!r} cannot name a stack: use letters, digits, '.', '_' and '-' "
            "(at most 100)"
        )
    return f"{platform.org}/{LOADTEST_PROJECT}/{run_id}" if platform.org else run_id


class EphemeralStack(Protocol):
    """One stack of the load-test project."""

    name: str
    work_dir: str
    """Its Pulumi project directory (``Pulumi.yaml`` with the project name and backend): the
    place to run ``pulumi destroy`` from by hand."""

    def set_config(self, values: Mapping[str, str]) -> None:
        """Set these plain config keys (others stay).

        Never secrets: the CLI gets config values on its command line, which every local user
        can read (``ps``). Secrets reach the inline program in memory, as Pulumi secrets.
        """

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set these stack tags."""

    def up(self, on_output: OnOutput) -> dict[str, Any]:
        """Create or update every resource; the stack outputs (secrets in plain text)."""

    def refresh(self, on_output: OnOutput) -> list[str]:
        """Read every resource back, dropping pending creates; the URNs of those dropped."""

    def destroy(self, on_output: OnOutput) -> None:
        """Delete every resource of the stack."""

    def cancel(self) -> None:
        """Release the lock of an operation that is not running any more."""

    def remove(self) -> None:
        """Delete the (empty) stack from the backend."""


class Workspace(Protocol):
    """The Pulumi backend as the orchestrator and ``reap`` see it."""

    def platform_outputs(self, stack: StackRef) -> dict[str, Any]:
        """The platform stack's outputs (secrets in plain text: keep them in memory)."""

    def create(self, name: str, program: Program) -> EphemeralStack:
        """Create the load-test stack ``name`` for ``program``, or select it if it exists."""

    def select(self, name: str) -> EphemeralStack:
        """An existing load-test stack (to destroy it); raises ``StackMissingError``."""

    def list_stacks(self) -> list[StackListing]:
        """Every stack of the load-test project, with its tags and last update."""
