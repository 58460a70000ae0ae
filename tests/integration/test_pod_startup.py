"""The no-registry path's pod start-up, run locally: build the wheel, install it, check it.

The init containers' rendered commands run as local processes (``loadtest.cloud.local_pod``)
against a wheel built from this checkout, offline: the lock's third-party packages are not
downloaded here (``--no-index --find-links`` on the bootstrap directory, the lock replaced by an
empty one; this environment already has them), so what is exercised is the wheel's build, its
hash check, the install into the pod's site directory and the installed code's own check.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from loadtest.cloud import contract, delivery, manifests
from loadtest.cloud.local_pod import LocalContainer, materialise
from loadtest.cloud.spec import CodeWheel
from tests.loadtest_specs import API_KEY, spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEP_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = delivery.source_root()
    had_build_dir = (root / "build").exists()
    path = delivery.build_wheel(root, tmp_path_factory.mktemp("wheel"))
    # The build ran on a copy: the checkout gains no build/ directory for mypy to trip over.
    assert (root / "build").exists() == had_build_dir
    return path


def _pod(
    code: CodeWheel, role: str, root: Path
) -> tuple[list[LocalContainer], list[LocalContainer]]:
    s = spec(code=code)
    objects = manifests.objects(s, lock="")  # the third-party packages are already here
    config_maps = {m["metadata"]["name"]: m for m in objects if m["kind"] == "ConfigMap"}
    (job,) = [
        m for m in objects if m["kind"] == "Job" and m["metadata"]["name"] == f"locust-{role}"
    ]
    secrets = {manifests.API_KEY_SECRET: {manifests.API_KEY_SECRET_KEY: API_KEY}}
    return materialise(job["spec"]["template"]["spec"], config_maps, secrets, root)


def _run(container: LocalContainer, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **container.env}
    # Offline: the package index is the bootstrap directory itself.
    return subprocess.run(
        [*container.argv, *extra],
        env=env,
        cwd=container.cwd,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both roles' pods materialised in one root (same volumes), the wheel installed once."""
    root = tmp_path_factory.mktemp("pod")
    code = CodeWheel(filename=wheel.name, content=wheel.read_bytes())
    pods = {role: _pod(code, role, root) for role in ("worker", "master")}
    (install, _), _ = pods["worker"]
    site = root / "site"
    rendered = [a.replace(contract.SITE_DIR, str(site)) for a in manifests.install_command()]
    assert install.argv[1:] == rendered[1:]
    done = _run(install, "--no-index", "--find-links", str(install.cwd))
    assert done.returncode == 0, done.stderr
    return {"site": site, "pods": pods}


def test_the_init_container_installs_the_wheel_into_the_pods_site(
    installed: dict[str, Any],
) -> None:
    site: Path = installed["site"]
    assert (site / "loadtest" / "pod.py").is_file()
    assert (site / "loadtest" / "cloud" / "data" / contract.LOCK_REQUIREMENTS).is_file()
    assert (site / "domain" / "data" / "instances-us-east-1.csv").is_file()


@pytest.mark.parametrize("role", ["worker", "master"])
def test_the_installed_code_checks_out_in_each_role(installed: dict[str, Any], role: str) -> None:
    site: Path = installed["site"]
    (_, check), (main,) = installed["pods"][role]
    checked = _run(check)
    assert checked.returncode == 0, checked.stderr
    found: dict[str, Any] = json.loads(checked.stdout)
    # The installed wheel ran, not this checkout: PYTHONPATH puts the pod's site first.
    assert found["code"] == str(site / "loadtest")
    assert found["role"] == role
    assert found["payload_keys"] == ["maxUsers", "plan"]
    assert API_KEY not in checked.stdout + checked.stderr
    assert main.argv[-1] == role and main.env["PYTHONPATH"] == str(site)


def test_a_wheel_that_does_not_match_its_hash_is_refused(wheel: Path, tmp_path: Path) -> None:
    code = CodeWheel(filename=wheel.name, content=wheel.read_bytes())
    (install, _), _ = _pod(code, "worker", tmp_path)
    tampered = install.cwd / wheel.name
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    done = _run(install, "--no-index", "--find-links", str(install.cwd))
    assert done.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr
    assert not (tmp_path / "site" / "loadtest").exists()
