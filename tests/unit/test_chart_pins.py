"""Every pinned chart is one its repository's index listed when it was read.

``domain/data/chart_index.yaml`` holds the index entries read for each pin, with the date and the
source; a pin moved without reading the index again (or to a version the index never had, as
cluster-autoscaler 9.59.1 was) fails here instead of failing ``pulumi up`` half-way.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
import yaml

from domain import versions
from tests.pulumi_mocks import ROOT

RECORD = ROOT / "domain" / "data" / "chart_index.yaml"


def _repositories() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(RECORD.read_text(encoding="utf-8"))
    return {repo["url"]: repo for repo in document["repositories"]}


def _entry(chart: versions.Chart) -> dict[str, Any]:
    repo = _repositories().get(chart.repo)
    assert repo is not None, f"{chart.repo} has no recorded index in {RECORD.name}"
    listed = repo["entries"].get(chart.chart)
    assert listed is not None, f"{chart.chart} is not recorded for {chart.repo}"
    found = [e for e in listed["versions"] if e["version"] == chart.version]
    assert found, (
        f"{chart.chart} {chart.version} is not in the recorded index of {chart.repo} "
        f"(recorded: {[e['version'] for e in listed['versions']]}); read the index again"
    )
    return dict(found[0])


@pytest.mark.parametrize("chart", versions.CHARTS, ids=lambda c: c.chart)
def test_every_pinned_chart_version_is_in_the_recorded_index(chart: versions.Chart) -> None:
    entry = _entry(chart)
    assert entry["name"] == chart.chart
    assert entry["appVersion"]
    assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"]), "digest: the index's sha256"
    assert entry["urls"] and all(u.startswith("https://") for u in entry["urls"])
    assert any(u.endswith(f"{chart.chart}-{chart.version}.tgz") for u in entry["urls"])
    datetime.datetime.fromisoformat(entry["created"])


def test_each_recorded_index_says_where_and_when_it_was_read() -> None:
    repos = _repositories()
    assert set(repos) == {c.repo for c in versions.CHARTS}, "a record without a pin, or the reverse"
    for url, repo in repos.items():
        assert repo["index"] == f"{url}/index.yaml"
        assert repo["source"].startswith("github.com/")
        assert re.search(r"\b[0-9a-f]{40}\b", repo["source"]), "the commit read"
        datetime.date.fromisoformat(repo["read_on"])


def test_the_autoscaler_chart_is_built_for_the_pinned_kubernetes_minors() -> None:
    """The chart's appVersion is the autoscaler minor its templates and RBAC were written for."""
    app = _entry(versions.CLUSTER_AUTOSCALER)["appVersion"]
    chart_minor = ".".join(str(app).split(".")[:2])
    assert set(versions.KUBERNETES) == {chart_minor}
    for minor, pins in versions.KUBERNETES.items():
        assert pins.cluster_autoscaler_tag.startswith(f"v{minor}.")
