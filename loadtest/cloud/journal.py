"""The local journal: every load-test stack this machine created and has not yet removed.

An entry is written before the stack is created and deleted once it is destroyed and removed,
so a driver that was SIGKILLed, or a laptop that was closed mid-run, leaves a file naming the
stack, its backend and its work dir; ``qwen-stress reap`` reads them next to the backend's own
listing. One JSON file per stack, written atomically, under ``$QWEN_STRESS_STATE_DIR`` (default
``$XDG_STATE_HOME/qwen-stress``, else ``~/.local/state/qwen-stress``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

STATE_DIR_ENV = "QWEN_STRESS_STATE_DIR"
State = Literal["creating", "up", "destroying", "destroy_failed"]


def state_dir() -> Path:
    """Where qwen-stress keeps state that must outlive a run (journal, stack work dirs)."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qwen-stress"


class JournalEntry(BaseModel):
    """One load-test stack that may still exist."""

    model_config = ConfigDict(extra="forbid")

    stack: str
    project: str
    run_id: str
    platform_stack: str
    run_dir: str
    work_dir: str
    created_at: float
    """Unix seconds when the entry was written (just before the stack was created)."""
    expires_at: float
    """Unix seconds after which nothing should still be using the stack."""
    pid: int
    host: str
    state: State = "creating"
    error: str | None = None


class Journal:
    """Entries as files ``<root>/stacks/<stack>.json``; a file exists while its stack may."""

    def __init__(self, root: Path | None = None) -> None:
        self.dir = (root or state_dir()) / "stacks"

    def _path(self, stack: str) -> Path:
        return self.dir / (re.sub(r"[^A-Za-z0-9._-]", "_", stack) + ".json")

    def open(self, entry: JournalEntry) -> None:
        """Record a stack about to be created (raises ``OSError`` if it cannot be written)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write(entry)

    def update(
        self, stack: str, state: State, *, error: str | None = None, work_dir: str | None = None
    ) -> None:
        """Move an open entry to ``state`` (and note its work dir once known)."""
        entry = self.get(stack)
        if entry is not None:
            changes: dict[str, object] = {"state": state, "error": error}
            if work_dir is not None:
                changes["work_dir"] = work_dir
            self._write(entry.model_copy(update=changes))

    def close(self, stack: str) -> None:
        """The stack is gone: forget it."""
        self._path(stack).unlink(missing_ok=True)

    def get(self, stack: str) -> JournalEntry | None:
        """The entry of ``stack``, or None."""
        path = self._path(stack)
        try:
            return JournalEntry.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError):
            return None

    def entries(self) -> tuple[list[JournalEntry], list[Path]]:
        """Every readable entry, and the files that are not entries (named, never deleted)."""
        good: list[JournalEntry] = []
        bad: list[Path] = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                good.append(JournalEntry.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValidationError, ValueError):
                bad.append(path)
        return good, bad

    def _write(self, entry: JournalEntry) -> None:
        path = self._path(entry.stack)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(entry.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
