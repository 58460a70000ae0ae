"""A run directory read into the run-file models, for what it holds.

``qwen-stress report`` meets directories written by other versions, and by runs that were
killed: a config section this version cannot read, a missing file, a torn line. What the
analysis cannot do without (when the run started, its plan, its SLOs) stops the report with one
line naming it; everything else is left out and said so (``RunData.unread``), never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from loadtest import records, run_files
from loadtest.records import RequestRecord
from loadtest.schema import (
    SCHEMA_VERSION,
    OtherTarget,
    RunConfig,
    RunEvent,
    TimelineSample,
)

_OPTIONAL = {
    ("target",): "no cost or autoscaling figures",
    ("plan", "options"): "not needed for the report",
    ("plan", "summary"): "not needed for the report",
    ("plan", "open_loop"): "not needed for the report",
    ("time_scale",): "durations and hours are taken as unscaled",
    ("workload",): "not needed for the report",
    ("options",): "the report does without it (a --hourly-usd price is left out of the cost)",
    ("loadgen",): "the load-generator nodes are left out of the cost",
    ("versions",): "not needed for the report",
    ("command",): "not needed for the report",
    ("model",): "not needed for the report",
    ("workers",): "the worker count is left out",
    ("api_key_env",): "not needed for the report",
    ("max_inflight",): "not needed for the report",
    ("started_at_iso",): "not needed for the report",
}
"""Sections of ``config.json`` the report can do without, and what their loss leaves out."""

_EVENT: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)
T = TypeVar("T")


def _section(loc: tuple[int | str, ...]) -> tuple[str, ...] | None:
    """The optional section an error falls in, or None when it hits what the report needs."""
    for length in (2, 1):
        prefix = tuple(str(p) for p in loc[:length])
        if prefix in _OPTIONAL:
            return prefix
    return None


def _without(data: dict[str, object], section: tuple[str, ...]) -> dict[str, object]:
    """``data`` with one section removed (its default applies), copying only what changes."""
    head, *rest = section
    if not rest:
        return {k: v for k, v in data.items() if k != head}
    inner = data.get(head)
    if not isinstance(inner, dict):
        return data
    return {**data, head: _without(inner, tuple(rest))}


def read_config(path: Path) -> tuple[RunConfig, list[str]]:
    """``config.json`` for what this version can read, and a line for each part it could not.

    ``RunDirError`` when the file is missing, not JSON, or lacks what every report needs.
    """
    data = run_files.read_json(path)
    if not isinstance(data, dict):
        raise run_files.RunDirError(f"{path} is not a JSON object: not a qwen-stress config.json")
    given = data
    notes: list[str] = []
    version = data.get("schema_version", 0)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        notes.append(
            f"{path.name} was written by a newer qwen-stress (run-file schema {version}; this "
            f"one reads up to {SCHEMA_VERSION}): what it added is left out"
        )
    # Each pass leaves out one unreadable optional section, so this ends.
    for _ in range(len(_OPTIONAL) + 1):
        try:
            config = RunConfig.from_file(data)
            break
        except ValidationError as err:
            errors = err.errors(include_url=False)
            needed = sorted(
                {".".join(map(str, e["loc"])) for e in errors if _section(e["loc"]) is None}
            )
            section = _section(errors[0]["loc"])
            if needed or section is None:
                raise run_files.RunDirError(
                    f"{path} lacks or cannot read {', '.join(needed)}: not the config.json of a "
                    "qwen-stress run"
                ) from None
            where = ".".join(map(str, errors[0]["loc"]))
            notes.append(
                f"{path.name}: {'.'.join(section)} could not be read "
                f"({where}: {errors[0]['msg'].lower()}): {_OPTIONAL[section]}"
            )
            data = _without(data, section)
    else:
        raise run_files.RunDirError(f"{path} cannot be read: not a qwen-stress config.json")
    if "target" not in given:
        notes.append(f"{path.name} names no target: no cost or autoscaling figures")
    elif isinstance(config.target, OtherTarget) and "target" in data:
        notes.append(
            f"{path.name}: the target kind {config.target.kind!r} is not one this version "
            "knows: no cost or autoscaling figures"
        )
    return config, notes


def _lines_note(read: run_files.JsonlRead[T], missing: str) -> list[str]:
    if read.missing:
        return [f"{read.path.name} is missing: {missing}"]
    if read.unreadable:
        s = "s" if read.unreadable > 1 else ""
        return [f"{read.path.name}: {read.unreadable} unreadable line{s} skipped"]
    return []


@dataclass(frozen=True)
class RunData:
    """A run directory's files, read once: a long run's ``requests.jsonl`` is hundreds of MB."""

    config: RunConfig
    events: list[RunEvent]
    timeline: list[TimelineSample]
    records: list[RequestRecord]
    unread: list[str] = field(default_factory=list)
    """What could not be read, one sentence each (shown in the reports)."""

    @classmethod
    def read(cls, run_dir: Path) -> RunData:
        """Read every file the analysis and the reports use."""
        config, notes = read_config(run_dir / run_files.CONFIG)
        events = run_files.read_jsonl(run_dir / run_files.EVENTS, _EVENT.validate_json)
        timeline = run_files.read_jsonl(
            run_dir / run_files.TIMELINE, TimelineSample.model_validate_json
        )
        recs = records.read(run_dir / run_files.REQUESTS)
        notes += _lines_note(events, "no load steps, so no per-step figures")
        notes += _lines_note(timeline, "no charts over time, no autoscaling figures")
        notes += _lines_note(recs, "no request was measured")
        return cls(config, events.items, timeline.items, recs.items, notes)
