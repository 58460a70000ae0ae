"""Every test leaves the process as it found it, so no test passes only because of the order."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

PYTEST_OWN = "PYTEST_CURRENT_TEST"
"""Set by pytest itself around every test phase."""


@pytest.fixture(autouse=True)
def environment_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an environment variable changed, and undo the change.

    A variable set by a test (or by code it runs in-process) would reach every later test and
    every process they start; ``monkeypatch.setenv`` undoes its own, this catches the rest.
    """
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    changed = sorted(
        k for k in before.keys() | after.keys() if k != PYTEST_OWN and before.get(k) != after.get(k)
    )
    for key in changed:
        if key in before:
            os.environ[key] = before[key]
        else:
            del os.environ[key]
    if changed:
        pytest.fail(
            f"{request.node.nodeid} changed the environment ({', '.join(changed)}); use "
            "monkeypatch, or a fixture that restores what the code under test sets"
        )
