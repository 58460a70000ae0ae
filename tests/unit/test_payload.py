"""The run's payload: what the CLI writes into the pods' ConfigMap and the master reads back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loadtest.payload import PAYLOAD_VERSION, PayloadError, RunPayload
from tests.loadtest_specs import run_payload


def written() -> dict[str, Any]:
    """As the pod reads it: the JSON text the ConfigMap holds, parsed."""
    data: dict[str, Any] = json.loads(run_payload().model_dump_json())
    return data


def test_what_the_cli_writes_the_pod_reads_back_as_the_same_run() -> None:
    read = RunPayload.read(written())
    assert read == run_payload()
    assert read.plan().name == "capacity"
    assert [s.users for s in read.plan().steps()][:2] == [10, 30]


def test_another_versions_payload_is_refused_in_one_line() -> None:
    data = {**written(), "payload_version": PAYLOAD_VERSION + 1}
    with pytest.raises(PayloadError, match="another qwen-stress than the CLI") as raised:
        RunPayload.read(data)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"sample_interval_s": 0}, "sample_interval_s"),
        ({"surprise": 1}, "surprise"),
        ({"options": {"plan": "no-such-plan"}}, "options"),
        ({"cluster": {"served_name": "m"}}, "cluster.gpus_per_node"),
    ],
)
def test_a_damaged_payload_names_what_is_wrong_in_one_line(
    change: dict[str, Any], where: str
) -> None:
    with pytest.raises(PayloadError) as raised:
        RunPayload.read({**written(), **change})
    message = str(raised.value)
    assert message.startswith(f"the run payload is not valid: {where}")
    assert "\n" not in message
