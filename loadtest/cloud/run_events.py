"""``events.jsonl`` of a run whose master is elsewhere: the stack's events and the master's.

The orchestrator writes the load-test stack's events here as they happen (``stack_creating``,
``stack_up``, ``stack_destroyed``...); the follower appends the master's events (steps,
workers, ``finished``) as they come home. Both must count ``t`` from the same zero, the run's
``started_at`` in ``config.json``, which the master sets once it runs, minutes after the
stack began: until the follower brings ``config.json`` home, ``t`` counts from this process's
start, and then every line written so far is rewritten from its ``at`` (unix time) to the run's
zero (so ``stack_creating`` comes out a few minutes before 0). A lock keeps the two writers'
lines whole.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest import run_files
from loadtest.cloud.orchestrator import say_on_stderr
from loadtest.schema import EventBase


class RunEventLog:
    """Appends events to the run's ``events.jsonl``; callable as the orchestrator's ``events``."""

    def __init__(self, run_dir: Path, t0: float | None = None) -> None:
        self.path = run_dir / run_files.EVENTS
        self.t0 = time.time() if t0 is None else t0
        self._lock = threading.Lock()

    def __call__(self, event: Callable[..., EventBase], **fields: Any) -> None:
        """Write one event now, with ``t`` from the current zero and ``at`` in unix time."""
        with self._lock:
            now = time.time()
            line = event(t=round(now - self.t0, 3), at=round(now, 3), **fields)
            self._write(line.model_dump_json(by_alias=True).encode() + b"\n")

    def append(self, data: bytes) -> None:
        """Append whole lines as they are (the master's events)."""
        with self._lock:
            self._write(data)

    def rebase(self, t0: float) -> None:
        """Count ``t`` from ``t0`` from now on, and rewrite the lines written so far to match."""
        with self._lock:
            self.t0 = t0
            try:
                lines = self.path.read_bytes().splitlines()
            except FileNotFoundError:
                return
            out = []
            for raw in lines:
                try:
                    item = json.loads(raw)
                except ValueError:
                    out.append(raw)
                    continue
                if isinstance(item, dict) and isinstance(item.get("at"), int | float):
                    item["t"] = round(float(item["at"]) - t0, 3)
                    out.append(json.dumps(item, separators=(",", ":")).encode())
                else:
                    out.append(raw)
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line in out))
            tmp.replace(self.path)

    def _write(self, data: bytes) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                f.write(data)
        except OSError as err:
            say_on_stderr(f"could not write {self.path}: {err}")
