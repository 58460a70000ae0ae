"""A fake Pulumi backend behind the ``Workspace`` seam, with faults to inject.

Every call is recorded in order as ``(operation, stack)``; ``faults`` maps an operation
(``create``, ``tag``, ``up``, ``refresh``, ``destroy``, ``remove``, ``cancel``) to what it does
the next times it runs: an exception to raise (once each, in order; ``ALWAYS`` keeps raising the
last one), or a callable run first (to deliver a signal mid-operation, say).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loadtest.cloud.workspace import (
    OnOutput,
    Program,
    StackListing,
    StackMissingError,
    StackRef,
    WorkspaceError,
)

ALWAYS = "always"
Fault = BaseException | Callable[[], None] | str


@dataclass
class FakeStack:
    """One stack in the fake backend."""

    ws: FakeWorkspace
    name: str
    work_dir: str
    tags: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    resources: int = 0

    def _op(self, op: str) -> None:
        self.ws.calls.append((op, self.name))
        self.ws.inject(op)

    def set_config(self, values: Mapping[str, str]) -> None:
        self._op("config")
        self.config.update(values)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._op("tag")
        self.tags.update(tags)

    def up(self, on_output: OnOutput) -> dict[str, Any]:
        self._op("up")
        self.resources = 5
        on_output("+  qwen-stress:loadtest:LoadTest loadtest created")
        return dict(self.ws.outputs)

    def refresh(self, on_output: OnOutput) -> list[str]:
        self._op("refresh")
        on_output("refreshing")
        dropped, self.ws.pending_creates = self.ws.pending_creates, []
        return dropped

    def destroy(self, on_output: OnOutput) -> None:
        self._op("destroy")
        on_output("-  deleted")
        self.resources = 0

    def cancel(self) -> None:
        self._op("cancel")

    def remove(self) -> None:
        self._op("remove")
        if self.resources:
            raise WorkspaceError(f"stack {self.name} still has resources")
        self.ws.stacks.pop(self.name, None)


@dataclass
class FakeWorkspace:
    """The backend: stacks by name, outputs of the platform stack, faults to inject."""

    outputs: dict[str, Any] = field(default_factory=lambda: {"masterService": "locust-master"})
    platform: dict[str, Any] = field(default_factory=lambda: {"clusterName": "qwen-stress-dev"})
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    stacks: dict[str, FakeStack] = field(default_factory=dict)
    listed: list[StackListing] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    pending_creates: list[str] = field(default_factory=list)

    def inject(self, op: str) -> None:
        """Apply the next fault queued for ``op``."""
        queue = self.faults.get(op)
        if not queue:
            return
        fault = queue[0] if queue[-1] == ALWAYS and len(queue) == 2 else queue.pop(0)
        if isinstance(fault, BaseException):
            raise fault
        if callable(fault):
            fault()

    def ops(self, *names: str) -> list[str]:
        """The operations called, in order, keeping only ``names`` (all when empty)."""
        return [op for op, _ in self.calls if not names or op in names]

    def platform_outputs(self, stack: StackRef) -> dict[str, Any]:
        self.calls.append(("platform_outputs", str(stack)))
        return dict(self.platform)

    def create(self, name: str, program: Program) -> FakeStack:
        self.calls.append(("create", name))
        stack = self.stacks.setdefault(name, FakeStack(self, name, f"/work/{name}"))
        self.inject("create")
        return stack

    def select(self, name: str) -> FakeStack:
        self.calls.append(("select", name))
        if name not in self.stacks:
            raise StackMissingError(f"no stack named {name!r} found")
        return self.stacks[name]

    def list_stacks(self) -> list[StackListing]:
        self.calls.append(("list", ""))
        return list(self.listed)


def listing(name: str, tags: dict[str, str], last_update: datetime | None) -> StackListing:
    """A backend listing row (for ``reap`` tests)."""
    return StackListing(name=name, tags=tags, last_update=last_update)
