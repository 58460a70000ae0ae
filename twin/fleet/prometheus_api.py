"""``GET /api/v1/query`` on the fleet's port: the PromQL a cloud run sends, answered from the twin.

The twin is not a Prometheus: it answers exactly the expressions of ``domain.fleet_queries`` for
its own model (what kube-prometheus-stack would return for the same fleet) and refuses any
other with Prometheus's error object, so a query the cluster target starts sending cannot go
unnoticed in ``make test``. The response is the Prometheus HTTP API's instant-query shape
(prometheus.io/docs/prometheus/latest/querying/api: ``status``, ``data.resultType`` ``vector``,
``data.result[].metric`` / ``value`` ``[<unix time>, "<number>"]``; errors ``status: error``,
``errorType``, ``error``, HTTP 400 for a bad parameter and 422 for an expression that cannot
be executed).

Gauges are read now, whatever ``time`` says (the twin keeps no history of them); the hours are
the increase of the twin's own counters over the window (``SimCluster.seconds_at``, exact), the
window's wall seconds being ``1 / time_scale`` times as many seconds of cluster time. Hours,
like the twin's status, are in cluster time.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from domain.fleet_queries import HOUR_FIELDS, KV_BY_REPLICA, FleetQueries

QUERY_PATH = "/api/v1/query"
SecondsAt = Callable[[float], tuple[float, float]]
"""Control time -> (GPU-seconds, replica-seconds) accumulated by then (``SimCluster``)."""


def _error(status: int, kind: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"status": "error", "errorType": kind, "error": message}).encode()


def _number(value: float) -> str:
    """A sample value as Prometheus writes it (Go's shortest float format: ``3``, ``0.25``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _time_param(text: str | None) -> float | None:
    """Unix seconds, or RFC 3339, as Prometheus accepts ``time``; None when it is neither."""
    if text is None:
        return time.time()
    try:
        value = float(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return value if math.isfinite(value) else None


def answer(
    query_string: str,
    *,
    queries: FleetQueries,
    status: dict[str, Any],
    seconds_at: SecondsAt,
    cluster_now: float,
    time_scale: float,
) -> tuple[int, bytes]:
    """HTTP status and JSON body for one instant query against the fleet's status.

    ``cluster_now`` is the control time of ``status``; ``seconds_at`` reads the counters back.
    """
    params = parse_qs(query_string, keep_blank_values=True)
    expr = (params.get("query") or [""])[0]
    if not expr:
        return _error(400, "bad_data", 'invalid parameter "query": empty query')
    at = _time_param(params["time"][0] if params.get("time") else None)
    if at is None:
        return _error(400, "bad_data", 'invalid parameter "time": not a unix time or RFC 3339')
    found = queries.match(expr)
    if found is None:
        return _error(
            422,
            "execution",
            "the qwen-stress twin answers only the fleet queries of domain/fleet_queries.py "
            f"for model {queries.served_name!r}; not {expr[:200]!r}",
        )
    field, window = found
    series: list[tuple[dict[str, str], float]]
    if field == KV_BY_REPLICA:
        series = [
            ({"pod": name}, float(replica["kv_usage"]))
            for name, replica in sorted(status["replicas"].items())
            if "kv_usage" in replica
        ]
    elif field in HOUR_FIELDS:
        assert window is not None
        index = HOUR_FIELDS.index(field)
        start = cluster_now - window / 1000.0 / time_scale
        spent = seconds_at(cluster_now)[index] - seconds_at(start)[index]
        series = [({}, round(max(spent, 0.0) / 3600.0, 6))]
    else:
        series = [({}, float(status[field]))]
    body = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [at, _number(v)]} for labels, v in series],
        },
    }
    return 200, json.dumps(body).encode()
