"""Every test prices with the bundled table and can never reach AWS with someone's credentials.

``domain.prices.current`` reads ``$QWEN_STRESS_PRICES`` and ``$QWEN_STRESS_PRICES_DIR``; both
are pointed away from the user's cache. boto3 would read the user's profile, credentials and
endpoint, and ask the EC2 instance-metadata service (an address off this machine) for
credentials; all of that is switched off before any test (or a process it starts) runs. Tests
that talk to AWS set their own fake credentials and a loopback endpoint or a botocore Stubber.

Every test also leaves the environment as it found it, so no test passes only because of the
order tests run in.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from domain import prices

_EMPTY = tempfile.mkdtemp(prefix="qwen-stress-test-")
atexit.register(shutil.rmtree, _EMPTY, True)

os.environ.pop(prices.PRICES_ENV, None)
os.environ[prices.PRICES_DIR_ENV] = _EMPTY
for _name in (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
):  # fmt: skip
    os.environ.pop(_name, None)
os.environ["AWS_CONFIG_FILE"] = os.path.join(_EMPTY, "aws-config")
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(_EMPTY, "aws-credentials")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

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
