"""Keep the API key out of everything a run writes: one redactor, applied where outside text enters.

The key travels in every request's ``Authorization`` header, so a target can send it back: a
proxy or debug server that echoes the request's headers in an error body, an exception whose
message quotes a header. That text would reach ``requests.jsonl`` (a record's ``detail``),
``summary.json`` (``failure_examples``), the reports and the logs. The tool knows the key, so
every piece of outside text passes through a ``Redactor`` before it is kept: a failed request's
detail (``loadtest.llm_user``), a worker's log (``RedactingWriter``), what a target's poll said
(``loadtest.local_runner``) and the errors the CLI prints about a run.

A cut is where a key can slip through half-hidden: text cut at 300 characters in the middle of
the key keeps its first part. ``clip`` redacts before it cuts, and drops a cut-off start of a key.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterable
from typing import TextIO

MASK = "[redacted]"


class Redactor:
    """Replaces every known secret in a text by ``MASK``, as sent and as servers re-encode it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            for text in {secret, secret.strip()} - {""}:
                escaped = json.dumps(text)[1:-1]
                # JSON may escape "/" too; a URL or a query string percent-encodes.
                forms |= {text, escaped, escaped.replace("/", "\\/"), urllib.parse.quote(text)}
        # Longest first: a form that contains another must be replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)

    @classmethod
    def from_env(cls, *names: str | None) -> Redactor:
        """A redactor of the values of these environment variables (unset ones are skipped)."""
        return cls(os.environ.get(name, "") for name in names if name)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``MASK``."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def clip(self, text: str, limit: int) -> str:
        """Redact, then cut to ``limit`` characters, dropping the start of a secret cut off."""
        text = self(text)
        if len(text) <= limit:
            return text
        text = text[:limit]
        for form in self._forms:
            for length in range(min(len(form) - 1, len(text)), 0, -1):
                if text.endswith(form[:length]):
                    return text[:-length]
        return text


class RedactingWriter:
    """A text stream that redacts whole lines before passing them on (a worker's stdout/stderr).

    ``print`` and ``traceback`` write a line in pieces; a key split over two writes would pass
    a per-write redactor, so text is held until its line ends (or the stream is flushed).
    """

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        self._stream = stream
        self._redact = redactor
        self._pending = ""

    def write(self, text: str) -> int:
        """Take ``text``; complete lines go out redacted."""
        self._pending += text
        head, newline, self._pending = self._pending.rpartition("\n")
        if newline:
            self._stream.write(self._redact(head + newline))
        return len(text)

    def flush(self) -> None:
        """Write out a partial line too (redacted), then flush the stream underneath."""
        if self._pending:
            self._stream.write(self._redact(self._pending))
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        """Never a terminal: the worker's output is its log file."""
        return False

    def __getattr__(self, name: str) -> object:
        # ``encoding``, ``fileno`` and the like, for code that asks the stream about itself.
        return getattr(self._stream, name)
