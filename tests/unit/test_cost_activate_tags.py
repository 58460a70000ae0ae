"""``qwen-stress cost activate-tags``: the five cost tags, activated once per account (Stubber).

moto does not implement ``UpdateCostAllocationTagsStatus``; the request and answer shapes are
botocore's (ce 2017-10-25).
"""

from __future__ import annotations

import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from costs import aws
from domain.topology import COST_TAGS, RUN_ID_TAG
from loadtest.cli import app
from tests.aws_fakes import stubbed

runner = CliRunner()
REQUEST = {
    "CostAllocationTagsStatus": [
        {"TagKey": key, "Status": "Active"} for key in (*COST_TAGS, RUN_ID_TAG)
    ]
}


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Stubber:
    client, stubber = stubbed("ce")
    monkeypatch.setattr(aws, "client", lambda service, region=None: client)
    stubber.activate()
    return stubber


def test_every_cost_tag_and_run_id_is_activated(stub: Stubber) -> None:
    stub.add_response("update_cost_allocation_tags_status", {"Errors": []}, REQUEST)
    done = runner.invoke(app, ["cost", "activate-tags"])
    assert done.exit_code == 0, done.output
    for key in ("owner", "cost-center", "project", "stack", "run-id"):
        assert f"{key}: active" in done.output
    stub.assert_no_pending_responses()


def test_a_tag_aws_has_not_seen_yet_is_named_with_the_fix(stub: Stubber) -> None:
    error = {"TagKey": "run-id", "Code": "TagKeysNotFoundException", "Message": "not found"}
    stub.add_response("update_cost_allocation_tags_status", {"Errors": [error]}, REQUEST)
    done = runner.invoke(app, ["cost", "activate-tags"])
    assert done.exit_code == 2
    assert "stack: active" in done.output and "run-id: active" not in done.output
    (line,) = [x for x in done.output.splitlines() if x.startswith("error:")]
    assert "run-id: TagKeysNotFoundException" in line and "after the first cloud run" in line


def test_missing_permission_is_one_line(stub: Stubber) -> None:
    stub.add_client_error(
        "update_cost_allocation_tags_status",
        service_error_code="AccessDeniedException",
        http_status_code=400,
    )
    done = runner.invoke(app, ["cost", "activate-tags"])
    assert done.exit_code == 2
    assert (
        done.output.strip().splitlines() == [done.output.strip()]
        and "ce:UpdateCostAllocationTagsStatus" in done.output
    )
