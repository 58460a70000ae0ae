"""What ``pulumi preview --json`` prints for a program run under mocks.

The shape is Pulumi's ``PreviewDigest`` (pkg/backend/display/json.go): ``config``, ``steps``
(``op``, ``urn``, ``provider``, ``newState`` with ``type``, ``custom``, ``inputs``, ``parent``),
``diagnostics`` and ``changeSummary``. Values unknown until the update are the string
``04da6b54-80e4-46f7-96ec-b56ff0331ba9`` and secrets are ``[secret]``;
``with_values`` puts them where a test wants them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from costs.preview import SECRET, UNKNOWN
from tests.pulumi_mocks import PROJECT, ROOT, Program, stack_config

__all__ = ["SECRET", "UNKNOWN", "from_program", "with_values"]


def _urn(stack: str, type_token: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{type_token}::{name}"


def from_program(program: Program, stack: str) -> dict[str, Any]:
    """Every registered resource as a ``create`` step, as a new stack's preview lists them."""
    root = _urn(stack, "pulumi:pulumi:Stack", f"{PROJECT}-{stack}")
    steps: list[dict[str, Any]] = [
        {"op": "create", "urn": root, "newState": {"urn": root, "type": "pulumi:pulumi:Stack"}}
    ]
    for r in program.resources:
        urn = _urn(stack, r.type, r.name)
        steps.append(
            {
                "op": "create",
                "urn": urn,
                "provider": r.provider or "",
                "newState": {
                    "urn": urn,
                    "custom": True,
                    "type": r.type,
                    "inputs": copy.deepcopy(r.inputs),
                    "parent": root,
                },
            }
        )
    settings = stack_config(stack) if (ROOT / f"Pulumi.{stack}.yaml").exists() else {}
    config = {
        k: "[secret]" if isinstance(v, dict) and "secure" in v else str(v)
        for k, v in settings.items()
    }
    return {
        "config": config,
        "steps": steps,
        "diagnostics": [],
        "changeSummary": {"create": len(steps)},
        "duration": 1_000_000_000,
    }


def with_values(
    document: dict[str, Any], type_token: str, name: str, values: Mapping[str, Any]
) -> dict[str, Any]:
    """A copy where one resource's inputs (by dotted path) hold other values, e.g. ``UNKNOWN``."""
    out = copy.deepcopy(document)
    (step,) = [s for s in out["steps"] if s["urn"].endswith(f"::{type_token}::{name}")]
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        target = step["newState"]["inputs"]
        for key in parents:
            target = target[key]
        target[leaf] = value
    return out
