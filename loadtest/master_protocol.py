"""What the master pod's HTTP API says, shared by the master (``master_api``) and the follower.

The master serves on ``contract.MASTER_API_PORT`` (reached by the CLI through a port-forward):

- ``GET /status``: a ``MasterStatus`` (the state, the last timeline sample for the live line,
  each run file's size);
- ``GET /files/<name>?offset=N``: the bytes of a run file from byte ``N``, ending at the last
  complete line (so a reader never takes half a record), at most ``CHUNK_BYTES`` (404 before the
  file exists, 416 past its end, 400 for an offset that is not a number or not at the start of
  a line). The follower keeps one offset per file and asks from there, so after a dropped
  connection it resumes without losing or repeating a byte. ``config.json`` is written once,
  whole, and is read from offset 0 in one answer whatever its size;
- ``POST /stop`` (graceful: the users finish their requests, the files are completed);
  ``POST /stop?urgent=1`` (the workers are ended at once);
- ``POST /release``: the follower has every byte; the master may exit (else it keeps serving
  for ``LINGER_S`` after the run, then exits).

Pure pydantic: the CLI imports it without Locust or gevent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from loadtest import run_files
from loadtest.schema import TimelineSample

STATUS_PATH = "/status"
FILES_PATH = "/files/"
STOP_PATH = "/stop"
RELEASE_PATH = "/release"
CHUNK_BYTES = 4 * 1024 * 1024
"""At most this much per answer: a long run's records come home in a few requests a second."""
LINGER_S = 600.0
"""After the run, how long the master keeps serving its files if nobody releases it."""
JSONL_FILES = (run_files.REQUESTS, run_files.TIMELINE, run_files.EVENTS)
"""The files that grow as the run goes, read by offset."""
FILES = (run_files.CONFIG, *JSONL_FILES)

MasterState = Literal[
    "preflight", "waiting_for_workers", "running", "stopping", "finished", "failed"
]


class MasterStatus(BaseModel):
    """``GET /status``: where the run is, for the live line and for knowing when it is over."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    state: MasterState
    elapsed_s: float = 0.0
    """Seconds since the run's start (``config.json``'s ``started_at``)."""
    workers_connected: int = 0
    workers_expected: int = 0
    sample: TimelineSample | None = None
    files: dict[str, int] = {}
    """Size in bytes of each run file that exists (complete lines only for the JSONL files)."""
    stop_reason: str = ""
    error: str | None = None
    """Why the run could not start or failed (the pre-flight, workers that never connected)."""

    @property
    def over(self) -> bool:
        """The run will write nothing more."""
        return self.state in ("finished", "failed")
