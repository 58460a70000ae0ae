"""One emulated vLLM replica: engine, driver, metrics and the HTTP API on one port.

See ``twin.emulator`` for the in-process API built on this class.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from prometheus_client import CollectorRegistry

from twin.emulator.api import ApiSettings, OpenAIApi
from twin.emulator.driver import EngineDriver, LagHistogram
from twin.emulator.engine import EngineStats
from twin.emulator.http_protocol import HttpConnection, HttpLimits
from twin.emulator.metrics import ReplicaMetrics
from twin.emulator.replica_spec import ReplicaSpec, replica_spec
from twin.emulator.tokens import TokenCounter, token_counter


class ReplicaServer:
    """A vLLM stand-in for ``model`` on ``gpu``, refused as vLLM would refuse it.

    Construction checks the fit (``CatalogError`` / ``FitError`` with the catalog's message) and
    builds the engine; nothing listens until ``start``. A caller that starts many replicas of one
    kind (the fleet) passes ``spec``, what ``replica_spec`` gives for the other arguments, and
    ``counter`` once built, so neither the fit check nor the tokenizer file runs again; each
    replica still has its own engine, metrics registry and API state. ``http_limits`` bounds
    what a client may send (sizes, read timeout); the defaults are real servers'.
    """

    def __init__(
        self,
        model: str,
        gpu: str,
        *,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel: int = 1,
        api_key: str | None = None,
        tokenizer_file: Path | None = None,
        spec: ReplicaSpec | None = None,
        counter: TokenCounter | None = None,
        http_limits: HttpLimits | None = None,
        served_name: str | None = None,
    ) -> None:
        if spec is None:
            spec = replica_spec(
                model,
                gpu,
                max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization,
                tensor_parallel=tensor_parallel,
            )
        self.spec: ReplicaSpec = spec
        # As vLLM's --served-model-name: what clients send and the metrics' model_name label.
        self.model_name = served_name or self.spec.model.name
        self.metrics = ReplicaMetrics(self.model_name)
        self.driver = EngineDriver(self.spec.new_engine(), self.metrics)
        if counter is None:
            counter = token_counter(self.spec.model.name, tokenizer_file)
        self.counter: TokenCounter = counter
        settings = ApiSettings(
            served_model=self.model_name,
            max_model_len=self.spec.fit.max_model_len,
            api_key=api_key or None,
            counter=self.counter,
        )
        self.api = OpenAIApi(settings, self.driver, self.metrics.exposition, self._accepts)
        self._server: asyncio.Server | None = None
        self._http_limits = http_limits or HttpLimits()
        self._connections: set[HttpConnection] = set()
        self._draining = False
        self.host = ""
        self.port = 0

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus ``CollectorRegistry`` of this replica (what ``/metrics`` exposes)."""
        return self.metrics.registry

    @property
    def url(self) -> str:
        """Base URL once started, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{self.host}:{self.port}"

    @property
    def draining(self) -> bool:
        """True once ``drain`` or ``stop`` began: no new requests are accepted."""
        return self._draining

    @property
    def lag(self) -> LagHistogram:
        """Emission lag of every token delivered so far."""
        return self.driver.lag

    def _accepts(self) -> bool:
        return not self._draining

    def stats(self) -> EngineStats:
        """Running and waiting requests and KV usage, read in-process (no scrape needed)."""
        return self.driver.stats()

    def _connection(self) -> HttpConnection:
        return HttpConnection(self.api, self._connections, self._http_limits)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 picks a free port) and start the engine; return the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, host, port, reuse_address=True)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        self.driver.start()
        return self.port

    async def drain(self, timeout: float | None = None) -> bool:
        """Refuse new requests (503, ``/health`` too) and wait for in-flight ones to finish.

        Returns False if ``timeout`` seconds passed first; the server keeps running either way.
        """
        self._draining = True
        try:
            await asyncio.wait_for(self.driver.wait_idle(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Close the listener and every connection (aborting what is in flight), stop stepping."""
        self._draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close()
        self._connections.clear()
        await self.driver.stop()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None
