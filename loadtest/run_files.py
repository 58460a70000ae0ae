"""The run directory: which files a run writes and how they are read back.

``config.json`` (how to reproduce), ``requests.jsonl`` (one record per request),
``timeline.jsonl`` (one sample every few seconds), ``events.jsonl`` (steps starting and
ending, workers lost, interruptions; appended as they happen so a crash keeps them),
``summary.json``, ``report.html`` and ``report.md``. Analysis and reports read only these
files, so they never know which target produced them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TextIO, TypeVar

from pydantic import BaseModel

CONFIG = "config.json"
REQUESTS = "requests.jsonl"
TIMELINE = "timeline.jsonl"
EVENTS = "events.jsonl"
SUMMARY = "summary.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"


class RunDirError(ValueError):
    """A run directory is missing or incomplete; the message says which file."""


T = TypeVar("T")


def write_json(path: Path, model: BaseModel) -> None:
    """Write a model as pretty JSON atomically (a half-written summary must never be read)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(model.model_dump_json(indent=2, by_alias=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> object:
    """Read a JSON file, naming it when it is missing or broken."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(
            f"{path} is missing; is {path.parent} a qwen-stress run directory?"
        ) from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path} is not text (UTF-8); it is not a run file") from None
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON: {err}") from None


@dataclass
class JsonlRead(Generic[T]):
    """What a JSONL file held: the lines read, and how many could not be read.

    Unreadable lines are counted, not dropped silently: a torn last line is what a killed run
    leaves; more says the file is damaged.
    """

    path: Path
    items: list[T] = field(default_factory=list)
    unreadable: int = 0
    """Lines that were not JSON or not the expected shape."""
    missing: bool = False
    """The file does not exist."""


def read_jsonl(path: Path, parse: Callable[[str], T]) -> JsonlRead[T]:
    """Every line of a JSONL file that ``parse`` accepts; the others are counted.

    ``parse`` takes the line's text (a model's ``validate_json``), so each line is read once.
    """
    result: JsonlRead[T] = JsonlRead(path)
    try:
        lines = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        result.missing = True
        return result
    with lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                result.items.append(parse(line))
            except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
                result.unreadable += 1
    return result


class JsonlWriter:
    """An append-only JSONL file, flushed after every write so a crash loses nothing written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, model: BaseModel, *, exclude_none: bool = False) -> None:
        """Append one model (``exclude_none``: leave out what was not measured)."""
        self._append(model.model_dump_json(by_alias=True, exclude_none=exclude_none) + "\n")

    def write_many(self, items: Iterable[Mapping[str, object]]) -> None:
        """Append plain objects in one write (records: no validation on the hot path)."""
        self._append(
            "".join(
                json.dumps(i, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
                for i in items
            )
        )

    def _append(self, text: str) -> None:
        if text:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()
