"""One raw record per request: the unit every worker sends and every analysis reads.

Reports compute percentiles from these records, never from Locust's bucketed stats, so the
record holds everything a metric needs: start time, TTFT, every inter-chunk gap, end time and
the server's token counts. ``requests.jsonl`` holds one record per line, appended as batches
arrive from the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from pydantic import TypeAdapter

from loadtest.run_files import JsonlRead, read_jsonl

REASON_TIMEOUT = "timeout"
REASON_CONNECTION = "connection"
REASON_BROKEN_STREAM = "broken_stream"
REASON_EMPTY_STREAM = "empty_stream"
REASON_BAD_RESPONSE = "bad_response"
REASON_NOT_A_STREAM = "not_a_stream"
"""HTTP 200 with a body that is no stream at all: a proxy's HTML page, a JSON answer."""
REASON_CLIENT_ERROR = "client_error"
"""The client could not make the request (it raised before or while sending)."""

DETAIL_CHARS = 300
"""A failure's ``detail`` is cut to this many characters (after the API key is redacted)."""


def http_reason(status: int) -> str:
    """The failure reason of an HTTP error status (``http_429``, ``http_503``...)."""
    return f"http_{status}"


_LOAD_DEPENDENT_4XX = (408, 429)
"""Client errors an overloaded server or gateway sends: request timeout, rate limit."""


_NOT_LOAD = (REASON_CONNECTION, REASON_NOT_A_STREAM, REASON_CLIENT_ERROR)
"""Failures that say nothing about load: no connection, no stream, a request never made."""


def refused_outright(status: int, reason: str | None) -> bool:
    """A failure that no change of load would fix: no connection, no stream, the request refused.

    A 4xx other than 408 and 429 says the request is wrong (key, model name, length); sent again
    at once it fails again at once, so a user pauses instead of flooding target and records. The
    same holds for a request the client could not make and for a 200 answer that is no stream
    (a proxy's page): both come back at once, every time.
    """
    if reason in _NOT_LOAD:
        return True
    return 400 <= status < 500 and status not in _LOAD_DEPENDENT_4XX


class RecordDict(TypedDict):
    """A record as one line of ``requests.jsonl`` and in a worker's batch (TPOT derived)."""

    start: float
    ok: bool
    task: str
    endpoint: str
    worker: int
    status: int
    reason: str | None
    detail: str | None
    ttft_ms: float | None
    e2e_ms: float | None
    itl_ms: list[float]
    prompt_tokens: int | None
    output_tokens: int | None
    usage: bool
    late_ms: float | None
    tpot_ms: float | None


class RecordBatch(TypedDict):
    """What a worker sends the master every half second: its records and its vital signs."""

    worker: int
    pid: int
    records: list[RecordDict]
    cpu: float
    """Percent of one core since the last batch."""
    open: list[tuple[float, float | None]]
    """``(send time, TTFT ms or None)`` of its open requests (lists once sent)."""
    arrivals: int
    dropped: int
    late: int


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
    ``empty_stream``, ``bad_response``, ``not_a_stream``, ``client_error``); ``None`` on
    success."""
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

    def to_json(self) -> RecordDict:
        """The record as written to ``requests.jsonl`` (with the derived TPOT)."""
        # Field by field, no validation: workers write thousands a second (dataclasses.asdict
        # would deep-copy the ITL list, once per float).
        return RecordDict(
            start=self.start,
            ok=self.ok,
            task=self.task,
            endpoint=self.endpoint,
            worker=self.worker,
            status=self.status,
            reason=self.reason,
            detail=self.detail,
            ttft_ms=self.ttft_ms,
            e2e_ms=self.e2e_ms,
            itl_ms=self.itl_ms,
            prompt_tokens=self.prompt_tokens,
            output_tokens=self.output_tokens,
            usage=self.usage,
            late_ms=self.late_ms,
            tpot_ms=self.tpot_ms,
        )

    @classmethod
    def from_json(cls, data: RecordDict) -> RequestRecord:
        """A record from a batch of this version's workers (the derived TPOT is dropped)."""
        return cls(
            start=data["start"],
            ok=data["ok"],
            task=data["task"],
            endpoint=data["endpoint"],
            worker=data["worker"],
            status=data["status"],
            reason=data["reason"],
            detail=data["detail"],
            ttft_ms=data["ttft_ms"],
            e2e_ms=data["e2e_ms"],
            itl_ms=data["itl_ms"],
            prompt_tokens=data["prompt_tokens"],
            output_tokens=data["output_tokens"],
            usage=data["usage"],
            late_ms=data["late_ms"],
        )


_LINE = TypeAdapter(RequestRecord)
"""Reads one line of ``requests.jsonl`` by the dataclass's own types; keys it lacks take their
defaults, keys it does not know (the derived ``tpot_ms``, a newer version's) are ignored."""


def read(path: Path) -> JsonlRead[RequestRecord]:
    """Every record of a ``requests.jsonl``, and how many lines could not be read.

    A torn last line (a killed run leaves one) counts as unreadable, as does a line whose
    fields have the wrong types.
    """
    return read_jsonl(path, _LINE.validate_json)
