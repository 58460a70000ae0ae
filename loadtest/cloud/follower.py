"""Follow a run whose master is elsewhere: the live line, and the run files brought home.

``Follower`` is the orchestrator's ``follow``: with the ephemeral stack's outputs it reaches
the master's HTTP API (``loadtest.master_protocol``) through a ``Connector`` (a Kubernetes
port-forward in the cloud, a loopback socket in the rehearsal and the tests), shows the same
live line as a local run, and appends each run file's new bytes to the local run directory,
asking from the offset it holds. A dropped connection is opened again and the pull resumes at
those offsets: nothing received is lost or written twice. It returns once the master says the
run is over and every byte is home (then releases the master); a stop request is passed on to
the master (graceful, or urgent on the second signal, when it returns at once).

The master is lost for good when the connector says so (its pod failed or is gone, its process
exited) or when nothing has answered for ``lost_after_s``: ``MasterLostError``.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from loadtest import live, plans, run_files
from loadtest import master_protocol as proto
from loadtest.cloud.orchestrator import MasterLostError, StopRequest
from loadtest.cloud.run_events import RunEventLog
from loadtest.master_protocol import MasterStatus
from loadtest.redact import Redactor
from loadtest.schema import RunConfig, TimelineSample

REQUEST_TIMEOUT_S = 20.0
POLL_S = 1.0
LOST_AFTER_S = 120.0
"""Nothing answering for this long means the master is gone, even if its pod says otherwise."""
STARTUP_S = 600.0
"""Before the master first answers, how long it may take: its pod waits for a node, pulls the
image or installs the wheel (a few minutes on fresh nodes)."""
GONE_CONFIRM_S = 5.0
"""A master reported gone is given this long to answer once more (its last bytes)."""
RETRY_S = 1.0
"""Between two attempts to reach the master again."""


class Connector(Protocol):
    """How the follower reaches the master's API, and learns that it is gone for good."""

    def connect(self) -> socket.socket:
        """A stream connected to the master's API port (``OSError`` if none can be made now)."""

    def master_gone(self) -> str | None:
        """Why the master will never answer again (its pod failed, its process exited), or None."""

    def close(self) -> None:
        """Release what ``connect`` holds."""


class TcpConnector:
    """The master's API on a TCP address (the rehearsal's process on loopback, the tests)."""

    def __init__(self, host: str, port: int, gone: Callable[[], str | None] = lambda: None) -> None:
        self.host, self.port, self._gone = host, port, gone

    def connect(self) -> socket.socket:
        """A new TCP connection."""
        return socket.create_connection((self.host, self.port), timeout=REQUEST_TIMEOUT_S)

    def master_gone(self) -> str | None:
        """What the caller's check says."""
        return self._gone()

    def close(self) -> None:
        """Nothing to release."""


class RunFailedError(RuntimeError):
    """The master could not run the plan, or its runner failed mid-run (files up to then home)."""


class _DroppedError(Exception):
    """The connection to the master broke (the follower reconnects)."""


class Follower:
    """The ``follow`` of a cloud run or a rehearsal (see the module notes)."""

    def __init__(
        self,
        connector_for: Callable[[Mapping[str, Any]], Connector],
        run_dir: Path,
        events: RunEventLog,
        *,
        say: Callable[[str], None] = live.note,
        show_live: bool = True,
        poll_s: float = POLL_S,
        lost_after_s: float = LOST_AFTER_S,
        startup_s: float = STARTUP_S,
        redact: Redactor | None = None,
        retry_s: float = RETRY_S,
    ) -> None:
        self.connector_for = connector_for
        self.run_dir = run_dir
        self.events = events
        self.say = say
        self.show_live = show_live
        self.poll_s = poll_s
        self.lost_after_s = lost_after_s
        self.startup_s = startup_s
        self.redact = redact or Redactor(())
        """The API key out of every byte written here (the master redacts too; this is the
        CLI's own guard, as for a local run's files)."""
        self.retry_s = retry_s
        self.offsets: dict[str, int] = dict.fromkeys(proto.JSONL_FILES, 0)
        """Bytes of each master file already home (the next request starts there)."""
        self.config: RunConfig | None = None
        self.status: MasterStatus | None = None
        self.last_sample: TimelineSample | None = None
        self.reconnects = 0
        self._since = time.time()

    # -- what the live line reads ---------------------------------------------------------------
    def now_s(self) -> float:
        """Seconds since the master's run started (or since following began)."""
        started = self.config.started_at if self.config is not None else self._since
        return time.time() - started

    # -- the orchestrator's entry point --------------------------------------------------------
    def __call__(self, outputs: Mapping[str, Any], stop: StopRequest) -> None:
        """Follow until the run is over and home, ``stop`` says so, or the master is lost."""
        connector = self.connector_for(outputs)
        display = live.ThreadLiveLine(self, enabled=self.show_live)
        display.start()
        try:
            self._follow(connector, stop)
        finally:
            display.stop()
            connector.close()

    def _follow(self, connector: Connector, stop: StopRequest) -> None:
        conn: http.client.HTTPConnection | None = None
        sent = ""  # the stop passed on to the master so far: "", "graceful" or "urgent"
        last_ok = time.monotonic()
        failing_since: float | None = None
        contacted = False
        final: MasterStatus | None = None  # the run is over and home: only the release is left
        while True:
            try:
                conn = conn or self._open(connector)
                wanted = "urgent" if stop.urgent else "graceful" if stop.requested else ""
                if wanted and wanted != sent:
                    self._post(conn, proto.STOP_PATH + ("?urgent=1" if stop.urgent else ""))
                    sent = wanted
                    if stop.urgent:  # the stack is about to go: collect nothing more
                        return
                status = self._status(conn)
                if failing_since is not None and contacted:
                    self.say("reconnected to the master; resuming where the files stopped")
                # It answered: from now on a silence is a lost master, not a slow start, even if
                # this round's pull breaks off.
                last_ok, failing_since, contacted = time.monotonic(), None, True
                got = self._pull_all(conn, status)
                last_ok = time.monotonic()
                if status.over and self._home(status):
                    final = status
                    self._post(conn, proto.RELEASE_PATH)
                    conn.close()
                    self._ended(final)
                    return
                if got:
                    continue
                if sent:
                    time.sleep(self.poll_s)
                else:
                    stop.wait(self.poll_s)  # a stop request wakes it to pass the stop on
            except _DroppedError as err:
                if conn is not None:
                    conn.close()
                conn = None
                if final is not None:
                    # Everything is home; the release's answer was lost, or the master, released,
                    # exited before it could say so. Either way there is nothing left to fetch.
                    self._ended(final)
                    return
                if stop.urgent or (stop.requested and not contacted):
                    return  # nothing came home yet, and nothing will: the destroy follows
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    if contacted:
                        self.reconnects += 1
                        self.say(f"lost the connection to the master ({err}); reconnecting")
                    else:
                        self.say(f"waiting for the master to answer ({err})")
                gone = connector.master_gone()
                if gone is not None and now - failing_since >= GONE_CONFIRM_S:
                    raise MasterLostError(gone) from None
                limit = self.lost_after_s if contacted else self.startup_s
                if now - last_ok >= limit:
                    raise MasterLostError(
                        f"the master's API has not answered for {limit:.0f} s ({err})"
                    ) from None
                time.sleep(self.retry_s)

    @staticmethod
    def _ended(status: MasterStatus) -> None:
        """The run is over and home: how it ended (``RunFailedError`` if the master failed).

        A master that finished with an error (its plan driver or sampler crashed: the run was
        cut short, its files are complete) fails the run as that crash fails a local one.
        """
        if status.state == "failed" or status.error:
            raise RunFailedError(status.error or "the master could not run the plan")

    # -- HTTP -----------------------------------------------------------------------------------
    def _open(self, connector: Connector) -> http.client.HTTPConnection:
        try:
            sock = connector.connect()
        except OSError as err:
            raise _DroppedError(f"cannot connect: {err}") from None
        sock.settimeout(REQUEST_TIMEOUT_S)
        conn = http.client.HTTPConnection("master", timeout=REQUEST_TIMEOUT_S)
        conn.sock = sock
        return conn

    def _request(
        self, conn: http.client.HTTPConnection, method: str, path: str
    ) -> tuple[int, bytes]:
        try:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise _DroppedError(f"{type(err).__name__}: {err}".rstrip(": ")) from None
        expected = int(response.getheader("Content-Length") or len(body))
        if len(body) != expected:  # cut mid-answer: take nothing of it
            raise _DroppedError(f"answer cut after {len(body)} of {expected} bytes")
        return response.status, body

    def _post(self, conn: http.client.HTTPConnection, path: str) -> None:
        status, body = self._request(conn, "POST", path)
        if status >= 300:
            raise _DroppedError(f"POST {path} answered HTTP {status}: {body[:200]!r}")

    def _status(self, conn: http.client.HTTPConnection) -> MasterStatus:
        code, body = self._request(conn, "GET", proto.STATUS_PATH)
        if code != 200:
            raise _DroppedError(f"/status answered HTTP {code}")
        try:
            status = MasterStatus.model_validate_json(body)
        except ValueError as err:
            raise _DroppedError(f"/status is not a status: {str(err)[:200]}") from None
        self.status = status
        if status.sample is not None:
            self.last_sample = status.sample
        return status

    # -- files ----------------------------------------------------------------------------------
    def _pull_all(self, conn: http.client.HTTPConnection, status: MasterStatus) -> int:
        """Bring home what is new; bytes received this round."""
        got = 0
        if self.config is None and run_files.CONFIG in status.files:
            self._pull_config(conn)
        if self.config is None:
            return 0
        for name in proto.JSONL_FILES:
            while self.offsets[name] < status.files.get(name, 0):
                data = self._chunk(conn, name)
                if not data:
                    break
                got += len(data)
        return got

    def _pull_config(self, conn: http.client.HTTPConnection) -> None:
        code, body = self._request(conn, "GET", f"{proto.FILES_PATH}{run_files.CONFIG}")
        if code != 200:
            raise _DroppedError(f"config.json answered HTTP {code}")
        try:
            config = RunConfig.model_validate_json(body)
        except ValueError as err:
            raise _DroppedError(f"config.json is not a run config: {str(err)[:200]}") from None
        path = self.run_dir / run_files.CONFIG
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(self._redacted(body))
        tmp.replace(path)
        # The stack's events so far counted from the CLI's start; from now on, from the run's.
        self.events.rebase(config.started_at)
        self.config = config

    def _chunk(self, conn: http.client.HTTPConnection, name: str) -> bytes:
        offset = self.offsets[name]
        code, data = self._request(conn, "GET", f"{proto.FILES_PATH}{name}?offset={offset}")
        if code == 404:
            return b""
        if code != 200:
            raise _DroppedError(f"{name} from {offset} answered HTTP {code}: {data[:200]!r}")
        if data and not data.endswith(b"\n"):
            raise _DroppedError(f"{name} from {offset}: the answer does not end with a whole line")
        if not data:
            return b""
        kept = self._redacted(data)
        if name == run_files.EVENTS:
            self.events.append(kept)
            self._note_events(kept)
        else:
            with (self.run_dir / name).open("ab") as f:
                f.write(kept)
        self.offsets[name] = offset + len(data)  # the master's bytes, whatever was masked here
        return data

    def _redacted(self, data: bytes) -> bytes:
        if not self.redact:
            return data
        return self.redact(data.decode("utf-8", "surrogateescape")).encode(
            "utf-8", "surrogateescape"
        )

    def _note_events(self, data: bytes) -> None:
        """Say what a local run says as it goes: steps starting, workers lost."""
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("kind")
            if kind == "step_start":
                load = plans.load_label(event.get("users"), event.get("rate"))
                self.say(
                    f"step {event.get('index')}: {event.get('phase')} at {load} for "
                    f"{float(event.get('planned_s') or 0):.0f} s"
                )
            elif kind == "worker_lost":
                self.say(f"worker {event.get('worker')} lost: {event.get('detail', '')}")
            elif kind == "workers_ready":
                self.say(f"{event.get('workers')} workers connected; the plan starts")

    def _home(self, status: MasterStatus) -> bool:
        """Every byte the master has written is here."""
        if run_files.CONFIG in status.files and self.config is None:
            return False
        return all(self.offsets[n] >= status.files.get(n, 0) for n in proto.JSONL_FILES)
