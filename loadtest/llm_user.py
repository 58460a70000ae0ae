"""The Locust users that load an LLM API: closed-loop (``LLMUser``) and open-loop (``ArrivalUser``).

Each request streams, is timed chunk by chunk (``loadtest.streaming``) and becomes one
``RequestRecord`` handed to the process's record sink (the worker batches them to the master).
Locust's own request event still fires, with the end-to-end time, so its UI and stats work.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import gevent
from gevent import GreenletExit
from gevent.pool import Group
from geventhttpclient._parser import HTTPParseError
from geventhttpclient.response import HTTPConnectionClosed
from geventhttpclient.useragent import ConnectionError as UserAgentConnectionError
from locust import FastHttpUser, between, task
from locust.contrib.fasthttp import LocustBadStatusCode
from locust.user.task import LOCUST_STATE_STOPPING
from pydantic import BaseModel, ConfigDict

from loadtest.records import (
    DETAIL_CHARS,
    REASON_BROKEN_STREAM,
    REASON_CLIENT_ERROR,
    REASON_CONNECTION,
    REASON_NOT_A_STREAM,
    REASON_TIMEOUT,
    RequestRecord,
    http_reason,
    refused_outright,
)
from loadtest.redact import Redactor
from loadtest.streaming import StreamOutcome, read_generate, read_sse
from loadtest.workload import RequestBuilder, Workload

RETRY_PAUSE_S = 1.0
"""After a failure that load does not explain (no connection, a refused request) a user waits
this long, so a down or misconfigured target is probed, not hammered in a tight loop that
would burn the worker's CPU and flood the records."""

KILL_WAIT_S = 5.0
"""How long a stopped arrival generator waits for its open requests to record themselves."""

LATE_AFTER_MS = 50.0
"""An open-loop arrival sent later than this after its scheduled time counts as late."""


class RecordSink(Protocol):
    """Where a process's records go (the worker's batcher; in benchmarks, a stand-in for it)."""

    def add(self, record: RequestRecord) -> None:
        """Take one finished request."""
        ...


class UserSettings(BaseModel):
    """What every user in a worker needs: the mix, the model name, where the API key is."""

    model_config = ConfigDict(extra="forbid")

    workload: Workload
    model: str
    api_key_env: str | None = None
    """Name of the environment variable holding the API key; the key itself never travels."""


class InFlight:
    """Requests open in this process, reported to the master with every batch.

    The master's live step verdict counts them: a request queued at the server for longer than
    the step has no record yet, and judging the step by finished requests alone would miss
    exactly the slow ones.
    """

    open: ClassVar[dict[int, tuple[float, StreamOutcome]]] = {}

    @classmethod
    def snapshot(cls) -> list[tuple[float, float | None]]:
        """``(send time, TTFT in ms or None)`` of every open request."""
        return [
            (start, None if out.first_s is None else round(out.first_s * 1000.0, 3))
            for start, out in cls.open.values()
        ]


class LLMClientUser(FastHttpUser):
    """What both users share: the workload, the request, the timing, the record."""

    abstract = True
    settings: ClassVar[UserSettings | None] = None
    sink: ClassVar[RecordSink]
    redact: ClassVar[Redactor] = Redactor(())
    """Applied to every failure's detail: a target may echo the request's headers, key and all."""
    wait_time = between(0, 0)
    # A request is bounded by the workload's timeout_s (one gevent timer per request). No socket
    # timeout: gevent would arm and disarm a timer around every read, once per streamed chunk.
    network_timeout = None  # type: ignore[assignment]
    connection_timeout = 10.0

    @classmethod
    def configure(cls, settings: UserSettings, sink: RecordSink) -> None:
        """Set the workload for every user of this class in this process."""
        cls.settings = settings
        cls.sink = sink
        cls.redact = Redactor.from_env(settings.api_key_env)
        low, high = settings.workload.think_time_s
        cls.wait_time = between(low, high)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        settings = self.settings
        if settings is None:
            raise RuntimeError("LLMUser.configure() was not called before users started")
        self._workload = settings.workload
        self._builder = RequestBuilder(settings.workload, settings.model, random.Random())
        self._url = str(self.host).rstrip("/") + settings.workload.path
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if settings.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(settings.api_key_env, '')}"
        self._headers = headers
        self._fire: Callable[..., Any] = environment.events.request.fire

    def send(self, late_ms: float | None = None) -> RequestRecord:
        """Send one request, stream the answer and record it (and report it to Locust)."""
        name, body = self._builder.next()
        endpoint = self._workload.endpoint
        record = RequestRecord(start=time.time(), ok=False, task=name, endpoint=endpoint)
        record.late_ms = late_ms
        t0 = time.perf_counter()
        deadline = gevent.Timeout(self._workload.timeout_s)
        deadline.start()
        outcome = StreamOutcome()
        InFlight.open[id(outcome)] = (record.start, outcome)
        stopped: GreenletExit | None = None
        try:
            response = self.client.client.urlopen(
                self._url, method="POST", payload=body, headers=self._headers
            )
            record.status = response.status_code
            stream = response.stream
            try:
                if endpoint == "generate":
                    read_generate(stream, t0, outcome)
                else:
                    read_sse(stream, t0, endpoint == "chat", outcome)
            finally:
                stream.release()
            _fill(record, outcome)
            if record.reason == REASON_NOT_A_STREAM:
                kind = response.headers.get("content-type")
                record.detail = f"{record.detail} (content-type {kind!r})"
        except gevent.Timeout as err:
            if err is not deadline:
                raise
            _fail(
                record, REASON_TIMEOUT, f"no complete answer within {self._workload.timeout_s:g} s"
            )
        except LocustBadStatusCode as err:
            record.status = _status(err)
            _fail(record, http_reason(record.status), _error_body(err))
        except UserAgentConnectionError as err:
            _fail(record, REASON_CONNECTION, str(err))
        except (HTTPParseError, HTTPConnectionClosed) as err:
            reason = REASON_BROKEN_STREAM if record.status else REASON_CONNECTION
            _fail(record, reason, f"{type(err).__name__}: {err}")
        except TimeoutError as err:
            _fail(record, REASON_TIMEOUT, f"socket timeout: {err}")
        except OSError as err:
            _fail(record, REASON_CONNECTION, f"{type(err).__name__}: {err}")
        except GreenletExit as err:
            # The user is being stopped (the run ended, or the step has fewer users) and the
            # drain did not see this request answered: a hung target's requests end here, and
            # without a record they would vanish from the report.
            stopped = err
            _fail(
                record,
                REASON_TIMEOUT,
                f"unanswered after {_ms_since(t0) / 1000.0:.0f} s, when the run stopped the user",
            )
        except Exception as err:
            # The request could not be made (an address the client cannot use, a header it
            # will not send...): recorded and paced like a refused request, never a traceback
            # per attempt in the worker's log.
            _fail(record, REASON_CLIENT_ERROR, f"{type(err).__name__}: {err}")
        finally:
            deadline.close()
            del InFlight.open[id(outcome)]
        if record.detail:
            record.detail = self.redact.clip(record.detail, DETAIL_CHARS)
        self.sink.add(record)
        if stopped is not None:
            raise stopped
        self._fire(
            request_type="POST",
            name=name,
            response_time=record.e2e_ms if record.e2e_ms is not None else _ms_since(t0),
            response_length=record.output_tokens or 0,
            exception=None if record.ok else RuntimeError(record.reason),
            context={},
        )
        return record


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _fail(record: RequestRecord, reason: str, detail: str) -> None:
    # Kept whole here: ``send`` redacts the key, then cuts to ``DETAIL_CHARS``.
    record.ok = False
    record.reason = reason
    record.detail = detail


def _fill(record: RequestRecord, outcome: StreamOutcome) -> None:
    if outcome.first_s is not None:
        record.ttft_ms = round(outcome.first_s * 1000.0, 3)
    if outcome.last_s is not None:
        record.e2e_ms = round(outcome.last_s * 1000.0, 3)
    record.itl_ms = outcome.gaps_ms
    record.usage = outcome.output_tokens is not None
    record.prompt_tokens = outcome.prompt_tokens
    record.output_tokens = outcome.output_tokens if record.usage else outcome.chunks
    if outcome.failure is not None:
        _fail(record, outcome.failure, outcome.detail or "")
    else:
        record.ok = True


def _status(err: LocustBadStatusCode) -> int:
    # geventhttpclient stores the status as a keyword attribute the type stubs do not declare.
    return int(getattr(err, "code", 0))


def _error_body(err: LocustBadStatusCode) -> str:
    response = getattr(err, "response", None)
    try:
        text = response.text if response is not None else None
    except Exception:  # the body of a failed request is best-effort detail
        text = None
    return f"HTTP {_status(err)}: {text or ''}".strip()


class LLMUser(LLMClientUser):
    """A closed-loop user: sends one streamed completion, waits ``think_time_s``, repeats."""

    @task
    def complete(self) -> None:
        """One streamed completion, then a pause if it failed in a way load does not explain."""
        record = self.send()
        if refused_outright(record.status, record.reason):
            gevent.sleep(RETRY_PAUSE_S)


class ArrivalUser(LLMClientUser):
    """An open-loop arrival generator: Poisson arrivals that never wait for responses.

    Each generator sends at ``rate_per_user`` requests/s (the master splits the plan's rate
    over all generators); an arrival finding ``max_inflight`` requests already open in this
    process is dropped, and one sent more than ``LATE_AFTER_MS`` after its scheduled time is
    late. Both are counted and reported, since either means the offered load was not what the
    plan said. The cap is read at every arrival, so a rate message that reaches the worker
    after its users started still bounds them (and Locust may start several users here when
    it rebalances a lost worker's users).
    """

    rate_per_user: ClassVar[float] = 0.0
    max_inflight: ClassVar[int] = 256
    """This process's share of ``--max-inflight`` (every arrival user here together)."""
    arrivals: ClassVar[int] = 0
    dropped: ClassVar[int] = 0
    late: ClassVar[int] = 0
    concurrency = 1024
    _requests: ClassVar[list[Group]] = []
    """Each running user's open requests; a greenlet joins its group when it is spawned."""

    @classmethod
    def open_requests(cls) -> int:
        """Requests open in this process (spawned and not yet finished)."""
        return sum(len(group) for group in cls._requests)

    @task
    def arrive(self) -> None:
        """Run the arrival process until the user is stopped, then abandon what is open."""
        group = Group()
        ArrivalUser._requests.append(group)
        try:
            self._arrivals(group)
            # Stopping gracefully: no new arrivals, let the open requests finish.
            group.join()
        finally:
            # Killed at the end of the drain: each open request records itself as it goes
            # (``send``), before the worker ships its last batch.
            group.kill(block=True, timeout=KILL_WAIT_S)
            ArrivalUser._requests.remove(group)

    def _arrivals(self, group: Group) -> None:
        rng = random.Random()
        next_at = time.perf_counter()
        while self._state != LOCUST_STATE_STOPPING:
            rate = ArrivalUser.rate_per_user
            if rate <= 0:
                gevent.sleep(0.1)
                next_at = time.perf_counter()
                continue
            next_at += rng.expovariate(rate)
            delay = next_at - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            if self._state == LOCUST_STATE_STOPPING:
                return
            ArrivalUser.arrivals += 1
            late_ms = max((time.perf_counter() - next_at) * 1000.0, 0.0)
            if late_ms > LATE_AFTER_MS:
                ArrivalUser.late += 1
            if ArrivalUser.open_requests() >= ArrivalUser.max_inflight:
                ArrivalUser.dropped += 1
                continue
            group.spawn(self.send, round(late_ms, 3))
