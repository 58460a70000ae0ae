"""The run directory: which files a run writes and how they are read back.

``config.json`` (how to reproduce), ``requests.jsonl`` (one record per request),
``timeline.jsonl`` (one sample every few seconds), ``events.jsonl`` (steps starting and
ending, workers lost, interruptions; appended as they happen so a crash keeps them),
``summary.json``, ``report.html`` and ``report.md``. Analysis and reports read only these
files, so they never know which target produced them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

CONFIG = "config.json"
REQUESTS = "requests.jsonl"
TIMELINE = "timeline.jsonl"
EVENTS = "events.jsonl"
SUMMARY = "summary.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"


class RunDirError(ValueError):
    """A run directory is missing or incomplete; the message says which file."""


def write_json(path: Path, data: Any) -> None:
    """Write pretty JSON atomically (a half-written summary must never be read)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """Read a JSON file, naming it when it is missing or broken."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(
            f"{path} is missing; is {path.parent} a qwen-stress run directory?"
        ) from None
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON: {err}") from None


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Every object of a JSONL file; a torn last line (killed process) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                yield data


class JsonlWriter:
    """An append-only JSONL file, flushed after every write so a crash loses nothing written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, *items: dict[str, Any]) -> None:
        """Append objects, one per line."""
        self.write_many(items)

    def write_many(self, items: Any) -> None:
        """Append an iterable of objects in one write."""
        text = "".join(
            json.dumps(i, ensure_ascii=False, separators=(",", ":")) + "\n" for i in items
        )
        if text:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()
