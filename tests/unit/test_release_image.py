"""The Dockerfile and its release workflow agree with the code that runs the image."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from domain import versions
from loadtest.cloud import contract
from tests.pulumi_mocks import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
WORKFLOW = yaml.safe_load((ROOT / ".github/workflows/release-image.yml").read_text())


def _instruction(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_the_image_is_built_on_the_python_the_pods_and_the_lock_are_pinned_to() -> None:
    assert _instruction("ARG") == [f"PYTHON_IMAGE={versions.POD_PYTHON_IMAGE}"]
    assert _instruction("FROM") == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    assert "3.11" in versions.POD_PYTHON_IMAGE and ":latest" not in versions.POD_PYTHON_IMAGE


def test_the_image_installs_only_hashed_pins_and_runs_the_pod_entrypoint_unprivileged() -> None:
    installs = [r for r in _instruction("RUN") if "pip install" in r]
    for lock in ("build-requirements.txt", "pod-requirements.txt"):
        (line,) = [r for r in installs if lock in r]
        assert "--require-hashes" in line and "--no-deps" in line and "--only-binary=:all:" in line
    assert json.loads(_instruction("ENTRYPOINT")[0]) == list(contract.ENTRYPOINT)
    assert _instruction("USER") == [f"{contract.UID}:{contract.UID}"]


def test_the_image_gets_every_package_the_wheel_ships() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {c.split()[0] for c in _instruction("COPY") if not c.startswith("--")}
    assert packages <= copied
    allowed = (ROOT / ".dockerignore").read_text()
    for name in packages | {"pyproject.toml", "README.md"}:
        assert re.search(rf"^!{re.escape(name)}/?$", allowed, re.M), name


def test_the_workflow_publishes_on_release_tags_only_with_least_privilege() -> None:
    assert WORKFLOW[True] == {"push": {"tags": ["v*"]}}  # YAML reads the key `on` as True
    assert WORKFLOW["permissions"] == {}
    (job,) = WORKFLOW["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    uses = [step["uses"] for step in job["steps"] if "uses" in step]
    assert all(re.fullmatch(r"[\w-]+/[\w-]+@v\d+", u) for u in uses), uses
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["persist-credentials"] is False
    script = next(s["run"] for s in job["steps"] if "run" in s)
    # The image lands where the CLI looks for it, tagged with the version the tag names.
    assert "LOADTEST_IMAGE_REPOSITORY" in script and "v$version" in script
