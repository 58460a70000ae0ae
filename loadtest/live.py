"""The one live line a run shows while it goes, and the notes printed above it.

On a terminal the line redraws in place (rich ``Live``); elsewhere (CI logs, tests) only the
notes are printed, one per line, so logs stay readable. ``LiveLine`` redraws from a greenlet (a
local run's master, under gevent); ``ThreadLiveLine`` from a thread (a cloud run's CLI, which
follows a master in the cluster and never loads gevent).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.text import Text

from loadtest.schema import TimelineSample

console = Console(stderr=True, highlight=False)


class _RunView(Protocol):
    last_sample: TimelineSample | None

    def now_s(self) -> float: ...


def note(message: str) -> None:
    """Print one line above the live line (or on its own line without a terminal)."""
    console.print(f"[dim]{_clock(_Clock.now())}[/dim] {message}")


class _Clock:
    run: _RunView | None = None

    @staticmethod
    def now() -> float:
        return _Clock.run.now_s() if _Clock.run is not None else 0.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(int(seconds), 0), 60)
    return f"{minutes:02d}:{secs:02d}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def render(elapsed_s: float, sample: TimelineSample) -> Text:
    """The live line: elapsed, step, users, RPS, TTFT p50/p99, errors, replicas when known.

    A fleet that scales shows ready/desired replicas and its GPU nodes.
    """
    s = sample
    parts = [
        f"{_clock(elapsed_s)}",
        f"step {'-' if s.step is None else s.step} {s.phase or ''}".strip(),
        f"users {s.users or 0}",
        f"RPS {s.rps or 0.0:.1f}",
        f"TTFT p50 {_ms(s.ttft_p50_ms)} ms p99 {_ms(s.ttft_p99_ms)} ms",
        f"errors {(s.error_rate or 0.0) * 100:.1f}%",
        f"requests {s.requests_total or 0}",
    ]
    if s.desired_replicas is not None:
        parts.append(f"replicas {s.ready_replicas}/{s.desired_replicas} nodes {s.nodes}")
    elif s.replicas is not None:
        parts.append(f"replicas {s.replicas}")
    if s.worker_cpu:
        parts.append(f"worker CPU {max(s.worker_cpu.values()):.0f}%")
    return Text(" | ".join(parts))


class LiveLine:
    """Redraws the live line every second from the run's latest timeline sample (a greenlet)."""

    def __init__(self, run: _RunView, enabled: bool = True) -> None:
        self.run = run
        _Clock.run = run
        self.enabled = enabled and console.is_terminal
        self._live: Live | None = None
        self._worker: Any = None

    def _loop(self) -> None:
        while self._live is not None:
            sample = self.run.last_sample
            if sample is not None:
                self._live.update(render(self.run.now_s(), sample), refresh=True)
            self._sleep(1.0)

    def _sleep(self, seconds: float) -> None:
        import gevent  # noqa: PLC0415 - only the gevent variant needs it

        gevent.sleep(seconds)

    def _spawn(self) -> None:
        import gevent  # noqa: PLC0415

        self._worker = gevent.spawn(self._loop)

    def _halt(self) -> None:
        if self._worker is not None:
            self._worker.kill()

    def start(self) -> None:
        """Begin redrawing (a no-op without a terminal)."""
        if not self.enabled:
            return
        self._live = Live(console=console, auto_refresh=False, transient=True)
        self._live.start()
        self._spawn()

    def stop(self) -> None:
        """Stop redrawing and print the last state once."""
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()
        self._halt()
        if self.run.last_sample is not None:
            console.print(render(self.run.now_s(), self.run.last_sample))


class ThreadLiveLine(LiveLine):
    """The same line, redrawn from a daemon thread."""

    def __init__(self, run: _RunView, enabled: bool = True) -> None:
        super().__init__(run, enabled)
        self._stopped = threading.Event()

    def _sleep(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    def _spawn(self) -> None:
        self._stopped.clear()
        self._worker = threading.Thread(target=self._loop, name="live-line", daemon=True)
        self._worker.start()

    def _halt(self) -> None:
        self._stopped.set()
        if self._worker is not None:
            self._worker.join(timeout=2)
