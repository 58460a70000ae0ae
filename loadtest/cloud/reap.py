"""``qwen-stress reap``: find load-test stacks left behind and destroy those past their time.

A run destroys its own stack; this is for the runs that could not (the driver SIGKILLed, the
laptop closed, a destroy that kept failing). Stacks are found two ways: the backend's listing
of the ``qwen-stress-loadtest`` project (with the ``qwen-stress:*`` tags set at creation), and
this machine's journal (written before each ``up``). A stack is due when it is older than
``--older-than`` and its planned lifetime (the ``expires-at`` tag) is over, or its own run gave
up destroying it; ``--stack NAME`` reaps one stack whatever its age. CI runs
``qwen-stress reap --older-than 2h`` on a schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from domain.durations import DurationError, parse_duration
from loadtest.cloud.journal import Journal, JournalEntry
from loadtest.cloud.teardown import destroy_stack
from loadtest.cloud.workspace import (
    CREATED_AT_TAG,
    EXPIRES_AT_TAG,
    RUN_ID_TAG,
    Workspace,
    WorkspaceError,
)

EXIT_BAD_INPUT = 2
EXIT_STACK_LEFT = 3
REAP_RETRY_DELAYS_S = (10.0, 30.0)


@dataclass
class Leftover:
    """One load-test stack that may still exist, as the backend and the journal know it."""

    stack: str
    created_at: float | None = None
    expires_at: float | None = None
    seen_in: set[str] = field(default_factory=set)
    entry: JournalEntry | None = None
    busy: bool = False
    """The backend reports an operation in progress."""

    def age_s(self, now: float) -> float | None:
        """Seconds since creation, if known."""
        return None if self.created_at is None else now - self.created_at

    def due(self, now: float, older_than_s: float) -> tuple[bool, str]:
        """Whether to destroy it now, and why (or why not)."""
        if self.entry is not None and self.entry.state == "destroy_failed":
            return True, "its run could not destroy it"
        age = self.age_s(now)
        if age is None:
            return True, "age unknown"
        if age < older_than_s:
            return False, f"younger than {_span(older_than_s)}"
        if self.expires_at is not None and self.expires_at > now:
            return False, f"its run may go on until {_stamp(self.expires_at)}"
        return True, f"older than {_span(older_than_s)}"


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _key(stack: str) -> str:
    """The run a stack belongs to, however fully its name is qualified."""
    return stack.rsplit("/", 1)[-1]


def find(workspace: Workspace, journal: Journal) -> tuple[list[Leftover], list[str], bool]:
    """Every stack the backend or the journal knows, and what could not be read.

    The flag says whether the backend could be listed at all.
    """
    warnings: list[str] = []
    found: dict[str, Leftover] = {}
    listed_ok = True
    try:
        listed = workspace.list_stacks()
    except WorkspaceError as err:
        first = " ".join(str(err).split())[:300]
        warnings.append(f"the backend's listing failed ({first}); only the journal was read")
        listed, listed_ok = [], False
    for item in listed:
        row = found.setdefault(_key(item.name), Leftover(item.name))
        row.seen_in.add("backend")
        row.busy = item.update_in_progress
        row.created_at = _float(item.tags.get(CREATED_AT_TAG)) or (
            item.last_update.timestamp() if item.last_update else None
        )
        row.expires_at = _float(item.tags.get(EXPIRES_AT_TAG))
        if RUN_ID_TAG not in item.tags:
            warnings.append(f"{item.name} has no {RUN_ID_TAG} tag; aged by its last update")
    entries, unreadable = journal.entries()
    warnings += [f"{path}: not a journal entry; left as it is" for path in unreadable]
    for entry in entries:
        row = found.setdefault(_key(entry.stack), Leftover(entry.stack))
        row.stack = entry.stack  # the journal has the name as the run used it
        row.seen_in.add("journal")
        row.entry = entry
        row.created_at = row.created_at or entry.created_at
        row.expires_at = row.expires_at or entry.expires_at
    return sorted(found.values(), key=lambda r: r.created_at or 0.0), warnings, listed_ok


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _stamp(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def reap_stacks(
    workspace: Workspace,
    journal: Journal,
    *,
    older_than_s: float,
    dry_run: bool,
    only: str | None = None,
    say: Callable[[str], None] = typer.echo,
    now: float | None = None,
    retry_delays_s: tuple[float, ...] = REAP_RETRY_DELAYS_S,
    wait: Callable[[float], None] = time.sleep,
) -> int:
    """List the leftovers, destroy and remove the due ones; the exit code."""
    now = time.time() if now is None else now
    rows, warnings, listed_ok = find(workspace, journal)
    for warning in warnings:
        say(f"warning: {warning}")
    # A listing that failed hides every stack the backend holds: never "nothing left", exit 0.
    unlisted = 0 if listed_ok else EXIT_STACK_LEFT
    if only is not None:
        rows = [r for r in rows if _key(r.stack) == _key(only)] or [
            Leftover(only, seen_in={"--stack"})
        ]
    if not rows:
        say("no load-test stack in the journal" if unlisted else "no load-test stack left behind")
        return unlisted
    say(f"{'STACK':<44} {'AGE':>7}  {'SEEN IN':<16} ACTION")
    due: list[Leftover] = []
    for row in rows:
        go, why = (True, "named by --stack") if only is not None else row.due(now, older_than_s)
        age = row.age_s(now)
        action = ("would destroy" if dry_run else "destroy") if go else "keep"
        busy = " (operation in progress)" if row.busy else ""
        say(
            f"{row.stack:<44} {_span(age) if age is not None else '?':>7}  "
            f"{'+'.join(sorted(row.seen_in)):<16} {action}: {why}{busy}"
        )
        if go:
            due.append(row)
    if dry_run or not due:
        return unlisted
    failed = 0
    for row in due:
        say(f"reaping {row.stack}")
        result = destroy_stack(
            workspace,
            row.stack,
            None,
            say=say,
            output=lambda what: lambda line: say(f"  {what}: {line}") if line.strip() else None,
            wait=wait,
            retry_delays_s=retry_delays_s,
        )
        if result.gone:
            journal.close(row.stack)
            say(f"{row.stack}: destroyed and removed")
        else:
            failed += 1
            if row.entry is not None:
                journal.update(row.stack, "destroy_failed", error=(result.error or "")[:500])
            say(f"{row.stack}: NOT destroyed: {result.error}")
    return EXIT_STACK_LEFT if failed else unlisted


def reap(
    older_than: Annotated[
        str, typer.Option(help="Destroy stacks older than this (30m, 2h, 24h...).")
    ] = "2h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be destroyed; destroy nothing.")
    ] = False,
    stack: Annotated[
        str | None,
        typer.Option(help="Reap only this stack, whatever its age (as a failed run names it)."),
    ] = None,
) -> None:
    """Find load-test stacks left behind (backend and local journal) and destroy the old ones.

    Run it where you run `pulumi` for the platform stack: the backend is the one `pulumi` uses
    there (PULUMI_BACKEND_URL, the project's backend, or the one you are logged in to).
    """
    try:
        older_than_s = parse_duration(older_than)
    except DurationError:
        typer.secho(
            f"error: --older-than {older_than!r}: write a duration like 30m, 2h or 24h",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    from loadtest.run_options import STACK_NAME  # noqa: PLC0415 - pydantic: not at CLI start

    if stack is not None and not STACK_NAME.fullmatch(stack.strip()):
        typer.secho(
            f"error: --stack {stack!r}: write it as Pulumi names it, like qwen-stress-loadtest/"
            "<run id> as a failed run printed it (letters, digits, '.', '_' and '-')",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    # Pulumi loads only here: `qwen-stress --help` and the other commands never need it.
    from loadtest.cloud.automation import AutomationWorkspace  # noqa: PLC0415
    from loadtest.cloud.journal import state_dir  # noqa: PLC0415

    try:
        workspace = AutomationWorkspace(platform_dir=Path.cwd(), work_root=state_dir() / "work")
    except WorkspaceError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    code = reap_stacks(workspace, Journal(), older_than_s=older_than_s, dry_run=dry_run, only=stack)
    raise typer.Exit(code)
