"""VLLM's Prometheus metrics for one replica, on the replica's own registry.

Names, labels and bucket edges are vLLM V1's (``vllm/v1/metrics/loggers.py``,
``PrometheusStatLogger``): every series carries ``model_name`` and ``engine`` (the engine index,
``0`` for a single engine), and ``vllm:request_success_total`` adds ``finished_reason``. Each
replica owns a ``CollectorRegistry``, so several replicas in one process expose separate
``/metrics`` endpoints, as separate pods would.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from domain import vllm_metrics as vm
from twin.emulator.engine import EngineStats, Sequence, StepResult

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
INTER_TOKEN_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort")
ENGINE_INDEX = "0"


class StepHistogram(Collector):
    """A histogram fed a whole step's observations at once.

    Inter-token latency gets one observation per streamed token: tens of thousands a second.
    prometheus-client's ``Histogram.observe`` takes a lock and walks the buckets per call; this
    collector counts a step's values with one bisect each and exposes the same text format.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: dict[str, str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self._buckets = buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        """Count every value (``le`` semantics: a value equal to an edge falls in that bucket)."""
        counts, edges = self._counts, self._buckets
        total = 0.0
        for value in values:
            counts[bisect_left(edges, value)] += 1
            total += value
        self._sum += total

    def collect(self) -> Iterator[Metric]:
        """The cumulative buckets, sum and count, as prometheus-client's Histogram exposes them."""
        family = HistogramMetricFamily(self._name, self._documentation, labels=list(self._labels))
        cumulative, running = [], 0
        for edge, count in zip((*self._buckets, float("inf")), self._counts, strict=True):
            running += count
            cumulative.append((floatToGoString(edge), running))  # type: ignore[no-untyped-call]
        family.add_metric(list(self._labels.values()), cumulative, self._sum)
        yield family


class ReplicaMetrics:
    """The metrics one vLLM replica exports, updated once per engine step."""

    def __init__(self, model_name: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = [vm.MODEL_LABEL, vm.ENGINE_LABEL]
        values = (model_name, ENGINE_INDEX)
        reg = self.registry
        self.running = Gauge(
            vm.RUNNING,
            "Number of requests in model execution batches.",
            labels,
            registry=reg,
        ).labels(*values)
        self.waiting = Gauge(
            vm.WAITING,
            "Number of requests waiting to be processed.",
            labels,
            registry=reg,
        ).labels(*values)
        self.kv_usage = Gauge(
            vm.KV_CACHE_USAGE,
            "KV-cache usage. 1 means 100 percent usage.",
            labels,
            registry=reg,
        ).labels(*values)
        self.prompt_tokens = Counter(
            vm.PROMPT_TOKENS, "Number of prefill tokens processed.", labels, registry=reg
        ).labels(*values)
        self.generation_tokens = Counter(
            vm.GENERATION_TOKENS,
            "Number of generation tokens processed.",
            labels,
            registry=reg,
        ).labels(*values)
        self.preemptions = Counter(
            vm.PREEMPTIONS,
            "Cumulative number of preemption from the engine.",
            labels,
            registry=reg,
        ).labels(*values)
        success = Counter(
            vm.REQUEST_SUCCESS,
            "Count of successfully processed requests.",
            [*labels, "finished_reason"],
            registry=reg,
        )
        self.success = {r: success.labels(*values, r) for r in FINISH_REASONS}

        def histogram(name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, documentation, labels, buckets=buckets, registry=reg).labels(
                *values
            )

        self.ttft = histogram(
            vm.TIME_TO_FIRST_TOKEN,
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        )
        self.inter_token = StepHistogram(
            vm.INTER_TOKEN_LATENCY,
            "Histogram of inter-token latency in seconds.",
            dict(zip(labels, values, strict=True)),
            INTER_TOKEN_BUCKETS,
            reg,
        )
        self.e2e = histogram(
            vm.E2E_REQUEST_LATENCY,
            "Histogram of e2e request latency in seconds.",
            REQUEST_LATENCY_BUCKETS,
        )
        self.queue_time = histogram(
            vm.REQUEST_QUEUE_TIME,
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_LATENCY_BUCKETS,
        )

    def record_step(self, result: StepResult) -> None:
        """Counters and histograms for one completed step."""
        if result.prompt_tokens:
            self.prompt_tokens.inc(result.prompt_tokens)
        if result.new_tokens:
            self.generation_tokens.inc(len(result.new_tokens))
        if result.preempted:
            self.preemptions.inc(result.preempted)
        for value in result.ttfts:
            self.ttft.observe(value)
        self.inter_token.observe_many(result.inter_token_latencies)
        for seq in result.finished:
            self.record_finished(seq)

    def record_finished(self, seq: Sequence) -> None:
        """A request left the engine (finished or aborted)."""
        reason = seq.finish_reason or "abort"
        self.success[reason].inc()
        if seq.finished_at is not None:
            self.e2e.observe(seq.finished_at - seq.arrival)
        if seq.first_scheduled is not None:
            # vLLM times the queue in the engine core: from when it got the request, not from
            # the HTTP arrival (the front end's tokenization is not queueing).
            queued = seq.arrival if seq.queued_at is None else seq.queued_at
            self.queue_time.observe(seq.first_scheduled - queued)

    def record_state(self, stats: EngineStats) -> None:
        """The scheduler gauges."""
        self.running.set(stats.running)
        self.waiting.set(stats.waiting)
        self.kv_usage.set(stats.kv_cache_usage)

    def exposition(self) -> bytes:
        """The Prometheus text format of this replica's registry."""
        return generate_latest(self.registry)
