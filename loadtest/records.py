"""One raw record per request: the unit every worker sends and every analysis reads.

Reports compute percentiles from these records, never from Locust's bucketed stats, so the
record holds everything a metric needs: start time, TTFT, every inter-chunk gap, end time and
the server's token counts. ``requests.jsonl`` holds one record per line, appended as batches
arrive from the workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from loadtest.run_files import read_jsonl

REASON_TIMEOUT = "timeout"
REASON_CONNECTION = "connection"
REASON_BROKEN_STREAM = "broken_stream"
REASON_EMPTY_STREAM = "empty_stream"
REASON_BAD_RESPONSE = "bad_response"


def http_reason(status: int) -> str:
    """The failure reason of an HTTP error status (``http_429``, ``http_503``...)."""
    return f"http_{status}"


_LOAD_DEPENDENT_4XX = (408, 429)
"""Client errors an overloaded server or gateway sends: request timeout, rate limit."""


def refused_outright(status: int, reason: str | None) -> bool:
    """A failure that no change of load would fix: no connection, or the request itself refused.

    A 4xx other than 408 and 429 says the request is wrong (key, model name, length); sent again
    at once it fails again at once, so a user pauses instead of flooding target and records.
    """
    if reason == REASON_CONNECTION:
        return True
    return 400 <= status < 500 and status not in _LOAD_DEPENDENT_4XX


@dataclass(slots=True)
class RequestRecord:
    """Timings and token counts of one request, as the client saw them.

    Times are in milliseconds from ``start`` (epoch seconds). ``itl_ms`` lists every gap
    between consecutive content chunks; a chunk that carries several tokens is still one gap,
    exactly as vLLM's benchmark counts it.
    """

    start: float
    """Epoch seconds when the request was sent."""
    ok: bool
    task: str
    endpoint: str
    worker: int = -1
    status: int = 0
    """HTTP status, 0 when no response came back."""
    reason: str | None = None
    """Failure reason (``http_<status>``, ``timeout``, ``connection``, ``broken_stream``,
    ``empty_stream``, ``bad_response``); ``None`` on success."""
    detail: str | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    usage: bool = False
    """True when token counts came from the server's ``usage``; else chunks were counted."""
    late_ms: float | None = None
    """Open-loop plans only: how long after its scheduled arrival the request was sent."""

    @property
    def tpot_ms(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1): the mean decode time per token after the first."""
        if self.ttft_ms is None or self.e2e_ms is None or not self.output_tokens:
            return None
        if self.output_tokens < 2:
            return None
        return (self.e2e_ms - self.ttft_ms) / (self.output_tokens - 1)

    def to_json(self) -> dict[str, Any]:
        """The record as written to ``requests.jsonl`` (with the derived TPOT)."""
        # Field by field: dataclasses.asdict deep-copies the ITL list, once per float.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["tpot_ms"] = self.tpot_ms
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        """Read a record back; derived and unknown keys are ignored so old files still load."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


_FIELDS = tuple(f.name for f in fields(RequestRecord))


def read(path: Path) -> Iterator[RequestRecord]:
    """Every record of a ``requests.jsonl``; a truncated last line (killed run) is skipped."""
    for data in read_jsonl(path):
        yield RequestRecord.from_json(data)
