"""Turn the Kubernetes resources a program registered back into manifests, and check them.

Manifests go to ``kubernetes-validate`` (the Kubernetes OpenAPI schema, offline) and to checkov,
exactly as ``kubectl apply`` would have received them from Pulumi.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.pulumi_mocks import ROOT, Program

NOT_OBJECTS = ("pulumi:providers:kubernetes", "kubernetes:helm.sh/v3:Release")
SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")
"""How a secret value crosses the mock RPC boundary: ``{sig key: sig value, "value": ...}``."""


def _ints(value: Any) -> Any:
    # Values cross the mock RPC boundary as protobuf numbers: 1 comes back as 1.0.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if value.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            return _ints(value.get("value"))
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def manifests(program: Program) -> list[dict[str, Any]]:
    """Every Kubernetes object (not Helm releases) as a manifest dict."""
    out = []
    for r in program.resources:
        if not r.type.startswith("kubernetes:") or r.type in NOT_OBJECTS:
            continue
        body = _ints(dict(r.inputs))
        metadata = dict(body.get("metadata") or {})
        metadata.setdefault("name", r.name)  # Pulumi auto-names; under mocks nothing does
        body["metadata"] = metadata
        out.append(body)
    return out


def is_core(manifest: dict[str, Any]) -> bool:
    """Built-in API groups, which the Kubernetes schema covers (CRDs such as KEDA's are not)."""
    group = str(manifest["apiVersion"]).rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


def schema_errors(manifest: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Errors against the Kubernetes schema of that version (strict: no unknown fields)."""
    try:
        kubernetes_validate.validate(manifest, kubernetes_version + ".0", strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{manifest['kind']}/{manifest['metadata']['name']}: {err.message}"]
    return []


def write_manifests(items: list[dict[str, Any]], directory: Path) -> Path:
    """Write one YAML file per object (what checkov scans)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(items):
        name = f"{i:02d}-{m['kind'].lower()}-{m['metadata']['name']}.yaml"
        (directory / name).write_text(yaml.safe_dump(m, sort_keys=False), encoding="utf-8")
    return directory


def checkov_binary() -> str:
    """The checkov executable: ``make test`` provides it in its own virtualenv."""
    candidate = os.environ.get("QWEN_STRESS_CHECKOV") or str(ROOT / ".venv-checkov/bin/checkov")
    if not Path(candidate).exists() and shutil.which("checkov") is None:
        raise RuntimeError("checkov is not installed: run the tests with `make test`")
    return candidate if Path(candidate).exists() else "checkov"
