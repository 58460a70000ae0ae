"""The master pod's HTTP API (``master_protocol`` says what each route answers).

A small WSGI app on gevent's server, in the master's own process: it reads the ``PlanRun``'s
state directly and the run files from disk, so it never holds records in memory. Only the CLI
reaches it, through a Kubernetes port-forward (the NetworkPolicy admits nothing else on this
port); nothing it serves holds the API key, which the pods keep in their environment.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from gevent.event import Event
from gevent.pywsgi import WSGIServer

from loadtest import master_protocol as proto
from loadtest import run_files
from loadtest.master_protocol import MasterState, MasterStatus

if TYPE_CHECKING:  # only a type here: importing it would load Locust (and gevent's patching)
    from loadtest.plan_run import PlanRun

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def complete_size(path: Path) -> int:
    """Bytes of a file up to and including its last newline (what a reader may take)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return -1
    if path.name == run_files.CONFIG:
        return size
    with path.open("rb") as f:
        back = min(size, 64 * 1024)
        while back:
            f.seek(size - back)
            tail = f.read(back)
            cut = tail.rfind(b"\n")
            if cut >= 0:
                return size - back + cut + 1
            if back == size:
                return 0
            back = min(size, back * 4)
    return 0


def read_chunk(path: Path, offset: int, limit: int = proto.CHUNK_BYTES) -> tuple[bytes, int]:
    """Complete lines from ``offset`` (at most ``limit`` bytes, at least one line), and the size.

    ``config.json`` comes whole whatever its size: it is one JSON document, not lines, and the
    follower reads it in one answer (a workload of many prompts can make it megabytes).
    """
    size = complete_size(path)
    if size <= offset:
        return b"", size
    whole = path.name == run_files.CONFIG
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(size - offset if whole else min(size - offset, limit))
    if not whole and len(data) < size - offset:
        cut = data.rfind(b"\n")
        if cut < 0:  # one line longer than the limit: send it whole
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            cut = data.find(b"\n")
        data = data[: cut + 1]
    return data, size


class MasterApi:
    """Status, files by offset, stop and release, served while the master lives."""

    def __init__(
        self,
        run_id: str,
        run_dir: Path,
        host: str,
        port: int,
        *,
        chunk_bytes: int = proto.CHUNK_BYTES,
    ) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.chunk_bytes = chunk_bytes
        self.plan: PlanRun | None = None
        self.phase: MasterState = "preflight"
        """What the pod says beyond the plan's own state: ``failed`` (it could not run it), or
        ``finished`` once the run's end is settled (until then a finished plan shows as
        ``stopping``)."""
        self.error: str | None = None
        self.workers_expected = 0
        self.released = Event()
        self.stop_requests: list[bool] = []
        """Each stop asked for (``True``: urgent), for the plan or, before it, the start-up."""
        self._server = WSGIServer((host, port), self._app, log=None)

    @property
    def port(self) -> int:
        """Where it listens (the port given, or the one chosen for 0)."""
        return int(self._server.server_port)

    def start(self) -> None:
        """Listen (in the background: gevent's loop serves it).

        Nagle's algorithm off: the server writes an answer's headers and its body separately,
        and with it on the body waits for the client's delayed ACK of the headers (40 ms per
        answer on Linux, four answers a round of the follower). Accepted sockets inherit the
        option from the listening one on Linux.
        """
        self._server.init_socket()
        self._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server.start()

    def close(self) -> None:
        """Stop listening."""
        self._server.stop(timeout=1)

    # -- what the routes read -----------------------------------------------------------------
    def status(self) -> MasterStatus:
        """The run as the follower sees it."""
        plan = self.plan
        state: MasterState = self.phase
        sample = None
        elapsed = 0.0
        connected = 0
        reason = ""
        if plan is not None and self.phase != "failed":
            state = plan.state if plan.state != "starting" else "waiting_for_workers"
            if state == "finished" and self.phase != "finished":
                # The plan's files are closed, but the pod has not yet said how the run ended
                # (a failure to start is set just after): "finished" now could be taken as a
                # success by a follower that then stops asking.
                state = "stopping"
            sample, elapsed, reason = plan.last_sample, plan.now_s(), plan.stop.reason
            runner = plan.runner
            if runner is not None:
                clients = runner.clients
                connected = len(clients.ready) + len(clients.running) + len(clients.spawning)
        files = {}
        for name in proto.FILES:
            size = complete_size(self.run_dir / name)
            if size >= 0:
                files[name] = size
        return MasterStatus(
            run_id=self.run_id,
            state=state,
            elapsed_s=round(elapsed, 3),
            workers_connected=connected,
            workers_expected=self.workers_expected,
            sample=sample,
            files=files,
            stop_reason=reason,
            # The plan's own failure (its driver or sampler crashed) is known the moment it
            # happens; the pod's (the pre-flight, a failed start) once it has settled it.
            error=self.error or (plan.error if plan is not None else None),
        )

    def _stop(self, urgent: bool) -> None:
        self.stop_requests.append(urgent)
        if self.plan is not None:
            self.plan.request_stop("stopped from the CLI (Ctrl-C or SIGTERM there)", urgent=urgent)

    # -- WSGI ----------------------------------------------------------------------------------
    def _app(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if method == "GET" and path == proto.STATUS_PATH:
            return _reply(start, 200, self.status().model_dump_json(exclude_none=True).encode())
        if method == "GET" and path.startswith(proto.FILES_PATH):
            return self._file(path.removeprefix(proto.FILES_PATH), query, start)
        if method == "POST" and path == proto.STOP_PATH:
            self._stop(urgent=query.get("urgent", ["0"])[0] == "1")
            return _reply(start, 202, b'{"stopping": true}')
        if method == "POST" and path == proto.RELEASE_PATH:
            self.released.set()
            return _reply(start, 200, b'{"released": true}')
        return _reply(start, 404, json.dumps({"error": f"no route {method} {path}"}).encode())

    def _file(self, name: str, query: dict[str, list[str]], start: StartResponse) -> list[bytes]:
        if name not in proto.FILES:
            return _reply(start, 404, json.dumps({"error": f"no run file {name!r}"}).encode())
        offset = _offset(query.get("offset", ["0"])[0])
        if offset is None:
            return _reply(start, 400, b'{"error": "offset must be a whole number of bytes"}')
        path = self.run_dir / name
        if not path.exists():
            return _reply(start, 404, json.dumps({"error": f"{name} does not exist yet"}).encode())
        data, size = read_chunk(path, offset, self.chunk_bytes)
        if offset > size:
            return _reply(start, 416, json.dumps({"error": f"{name} has {size} bytes"}).encode())
        if name != run_files.CONFIG and not _starts_a_line(path, offset):
            # An answer from mid-line would be half a record, written home as if it were whole.
            error = f"offset {offset} of {name} is not at the start of a line"
            return _reply(start, 400, json.dumps({"error": error}).encode())
        return _reply(start, 200, data, "application/x-ndjson")


_MAX_OFFSET_DIGITS = 18
"""Longer than any file's size (and short enough for ``int`` to refuse nothing)."""


def _offset(text: str) -> int | None:
    """A byte offset from the query, or None when it is not one.

    ASCII digits only: ``str.isdigit`` also accepts superscripts and other scripts' digits,
    some of which ``int`` refuses (a crash of the route instead of a 400).
    """
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_OFFSET_DIGITS:
        return None
    return int(text)


def _starts_a_line(path: Path, offset: int) -> bool:
    """Whether ``offset`` is 0 or follows a newline (where the follower's offsets always are)."""
    if offset == 0:
        return True
    with path.open("rb") as f:
        f.seek(offset - 1)
        return f.read(1) == b"\n"


def _reply(
    start: StartResponse,
    status: int,
    body: bytes,
    content_type: str = "application/json",
) -> list[bytes]:
    reason = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 416: "Range"}
    head = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start(f"{status} {reason.get(status, 'Error')}", head)
    return [body]
