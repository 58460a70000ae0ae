"""What a target reports besides the client's view: the ``/metrics`` poller's failure budget."""

from __future__ import annotations

import pytest

from domain import vllm_metrics
from loadtest import targets
from loadtest.schema import TargetMetrics

METRICS = (
    f'{vllm_metrics.WAITING}{{model_name="m"}} 2\n{vllm_metrics.RUNNING}{{model_name="m"}} 5\n'
).encode()


def _scripted(monkeypatch: pytest.MonkeyPatch, answers: list[int]) -> list[str]:
    """``http_get`` answers each poll with the next status (200 with metrics, else nothing)."""
    asked: list[str] = []

    def http_get(url: str, timeout: float = 2.0, **_kw: object) -> tuple[int, bytes]:
        asked.append(url)
        status = answers[len(asked) - 1]
        return status, METRICS if status == 200 else b""

    monkeypatch.setattr(targets, "http_get", http_get)
    return asked


def test_transient_failures_over_a_long_run_do_not_stop_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Four isolated failures, each followed by a good scrape: never three in a row.
    answers = [200, 503, 200, 0, 200, 503, 200, 0, 200]
    asked = _scripted(monkeypatch, answers)
    poller = targets.PrometheusPoller("http://127.0.0.1:9/metrics")
    results = [poller.poll() for _ in answers]
    assert len(asked) == len(answers)
    assert results[-1] == TargetMetrics(queue=2.0, running=5.0)


def test_three_failures_in_a_row_stop_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint without ``/metrics`` is not asked again every sample of the run."""
    asked = _scripted(monkeypatch, [200, 404, 404, 404, 200])
    poller = targets.PrometheusPoller("http://127.0.0.1:9/metrics")
    results = [poller.poll() for _ in range(6)]
    assert len(asked) == 4
    assert results[0] == TargetMetrics(queue=2.0, running=5.0)
    assert results[4:] == [TargetMetrics(), TargetMetrics()]


def test_unparseable_metrics_count_as_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def http_get(url: str, timeout: float = 2.0, **_kw: object) -> tuple[int, bytes]:
        return 200, b"this is { not prometheus text"

    monkeypatch.setattr(targets, "http_get", http_get)
    poller = targets.PrometheusPoller("http://127.0.0.1:9/metrics")
    assert [poller.poll() for _ in range(3)] == [TargetMetrics()] * 3
    monkeypatch.setattr(targets, "http_get", lambda *_a, **_k: (200, METRICS))
    assert poller.poll() == TargetMetrics()  # three bad answers in a row: it gave up
