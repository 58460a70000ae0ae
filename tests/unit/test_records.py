"""Which failures make a user pause before its next request."""

from __future__ import annotations

import pytest

from loadtest.records import (
    REASON_BROKEN_STREAM,
    REASON_CLIENT_ERROR,
    REASON_CONNECTION,
    REASON_NOT_A_STREAM,
    REASON_TIMEOUT,
    http_reason,
    refused_outright,
)


@pytest.mark.parametrize(
    ("status", "reason", "pause"),
    [
        (0, REASON_CONNECTION, True),
        # a request the client could not make, a 200 answer that is a page: back at once
        (0, REASON_CLIENT_ERROR, True),
        (200, REASON_NOT_A_STREAM, True),
        (401, http_reason(401), True),
        (404, http_reason(404), True),
        (400, http_reason(400), True),
        # what an overloaded server or its gateway answers is a measurement: no pause
        (429, http_reason(429), False),
        (408, http_reason(408), False),
        (503, http_reason(503), False),
        (0, REASON_TIMEOUT, False),
        (200, REASON_BROKEN_STREAM, False),
        (200, None, False),
    ],
)
def test_only_failures_load_does_not_explain_pause_the_user(
    status: int, reason: str | None, pause: bool
) -> None:
    assert refused_outright(status, reason) is pause
