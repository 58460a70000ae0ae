"""A master's HTTP API served on loopback without a plan, and a proxy that breaks its connections.

``ServedMaster`` runs the real ``MasterApi`` (gevent's WSGI server) on a thread of its own with
its own gevent hub, so a test in the plain pytest process talks to it over 127.0.0.1 while it
plays the master's part by hand: writes the run files, sets the phase. Nothing is
monkey-patched (that would reach every later test in the process).

``FaultProxy`` stands between the follower and that API, forwarding bytes both ways until told
to break: cut every connection after so many bytes of answer (a reset mid-answer), refuse
connections for a while (the port-forward cannot be made), or hold answers back (a stall that
only a timeout ends). Each fault is counted, so a test can say it really happened.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loadtest import run_files

HOST = "127.0.0.1"


class ServedMaster:
    """``MasterApi`` on a free loopback port, on a gevent hub in a thread of its own."""

    def __init__(self, run_dir: Path, run_id: str = "run-1", chunk_bytes: int = 4096) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        self.chunk_bytes = chunk_bytes
        self.api: Any = None
        self._ready = threading.Event()
        self._quit = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="master-api", daemon=True)

    def _serve(self) -> None:
        import gevent  # noqa: PLC0415  (the hub of this thread only)

        from loadtest.master_api import MasterApi  # noqa: PLC0415

        try:
            self.api = MasterApi(self.run_id, self.run_dir, HOST, 0, chunk_bytes=self.chunk_bytes)
            self.api.start()
        except BaseException as err:  # reported to the test's thread
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        while not self._quit.is_set():
            gevent.sleep(0.01)
        self.api.close()

    def __enter__(self) -> ServedMaster:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_exc: object) -> None:
        self._quit.set()
        self._thread.join(10)

    @property
    def port(self) -> int:
        """The API's port."""
        return int(self.api.port)


class Run:
    """The master's run files, written as a plan run writes them (config once, lines appended)."""

    def __init__(self, run_dir: Path, started_at: float) -> None:
        self.dir = run_dir
        self.started_at = started_at
        self.count = 0

    def write_config(self, config: dict[str, Any]) -> None:
        """``config.json``, whole and at once (as ``run_files.write_json`` does)."""
        tmp = self.dir / "config.json.tmp"
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.dir / run_files.CONFIG)

    @staticmethod
    def lines(items: list[dict[str, Any]]) -> bytes:
        """JSON lines, as the run's writers write them."""
        return "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in items).encode()

    def append(self, name: str, items: list[dict[str, Any]]) -> None:
        """Append lines in one write."""
        with (self.dir / name).open("ab") as f:
            f.write(self.lines(items))

    def records(self, n: int, pad: int = 200) -> list[dict[str, Any]]:
        """``n`` request-like records, each numbered and a few hundred bytes long."""
        out = []
        for _ in range(n):
            self.count += 1
            out.append({"seq": self.count, "ok": True, "pad": "x" * pad})
        return out


class FaultProxy:
    """A TCP proxy on loopback to ``upstream_port`` whose connections can be made to fail."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.cut_every: int | None = None
        """Reset each connection after this many bytes of answer (None: never)."""
        self.stalled = False
        """Accept and read, but answer nothing (the client's timeout must end it)."""
        self.cut_after_request: bytes | None = None
        """Pass on a request that starts with this, then reset before its answer comes back."""
        self.answers = bytearray()
        """Every byte of every answer that passed (for what they must never hold)."""
        self.cuts = 0
        self.connections = 0
        self.refused = 0
        self.refusing_until = 0.0
        self._open: list[socket.socket] = []
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- what the test's connector calls ----------------------------------------------------
    def connect(self) -> socket.socket:
        """A connection through the proxy, or ``ConnectionRefusedError`` while refusing."""
        if time.monotonic() < self.refusing_until:
            self.refused += 1
            raise ConnectionRefusedError(111, "Connection refused (test: port-forward down)")
        return socket.create_connection((HOST, self.port), timeout=5)

    def refuse_for(self, seconds: float) -> None:
        """Refuse new connections for ``seconds`` and reset the open ones now."""
        self.refusing_until = time.monotonic() + seconds
        self.reset_all()

    def reset_all(self) -> None:
        """Reset every open connection (RST, as a dropped port-forward gives)."""
        with self._lock:
            for sock in self._open:
                _reset(sock)
            self._open.clear()

    def close(self) -> None:
        """Stop accepting and reset what is open."""
        self._quit.set()
        self._thread.join(5)
        self._listener.close()
        self.reset_all()

    # -- forwarding ---------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._quit.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)  # an idle keep-alive connection is no fault of the proxy's
            for sock in (client, upstream):  # forwarded as it comes, not held for an ACK
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._open += [client, upstream]
            link = _Link(client, upstream, self.cut_every)
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._answers, args=(link,), daemon=True).start()

    def _requests(self, link: _Link) -> None:
        """Copy requests upstream; the one ``cut_after_request`` names loses its answer."""
        with contextlib.suppress(OSError):
            while True:
                data = link.client.recv(65536)
                if not data:
                    link.upstream.shutdown(socket.SHUT_WR)
                    return
                marker = self.cut_after_request
                if marker is not None and data.startswith(marker):
                    self.cut_after_request = None
                    link.muted = True
                    link.upstream.sendall(data)
                    time.sleep(0.2)  # the master acts on it; its answer never reaches the client
                    with self._lock:
                        self.cuts += 1
                    link.reset()
                    return
                link.upstream.sendall(data)

    def _answers(self, link: _Link) -> None:
        """Copy answers back; they may be held back (stalled, muted) or cut after a budget."""
        with contextlib.suppress(OSError):
            while True:
                data = link.upstream.recv(65536)
                if not data:
                    link.client.shutdown(socket.SHUT_WR)
                    return
                if self.stalled or link.muted:
                    continue  # swallowed: the client waits for an answer that never comes
                if link.budget is not None and len(data) >= link.budget:
                    link.client.sendall(data[: link.budget])
                    with self._lock:
                        self.cuts += 1
                    link.reset()
                    return
                if link.budget is not None:
                    link.budget -= len(data)
                with self._lock:
                    self.answers += data
                link.client.sendall(data)


class _Link:
    """One connection through the proxy."""

    def __init__(self, client: socket.socket, upstream: socket.socket, budget: int | None) -> None:
        self.client, self.upstream, self.budget = client, upstream, budget
        self.muted = False

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)


def _reset(sock: socket.socket) -> None:
    """Break a connection as a dropped tunnel does: at once, mid-answer, with an RST.

    ``shutdown`` first: a plain ``close`` would wait for the other pump thread's ``recv`` on
    the same socket, and until then the peer would see nothing at all.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class ProxyConnector:
    """The follower's ``Connector`` through a ``FaultProxy``; ``gone`` says the master is lost."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.gone: str | None = None
        self.closed = False

    def connect(self) -> socket.socket:
        """Through the proxy (refused while the proxy refuses)."""
        return self.proxy.connect()

    def master_gone(self) -> str | None:
        """What the test says."""
        return self.gone

    def close(self) -> None:
        """Note it."""
        self.closed = True


@contextlib.contextmanager
def served(run_dir: Path, **kwargs: Any) -> Iterator[ServedMaster]:
    """A ``ServedMaster`` for the length of a ``with``."""
    with ServedMaster(run_dir, **kwargs) as master:
        yield master
