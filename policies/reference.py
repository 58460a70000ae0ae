"""The README's policy tables, generated from the pack itself.

``python -m policies.reference`` prints the rule table (every rule, its level, what it checks,
its settings and their defaults) and the table of checked-in config files; a test fails when the
README holds anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pulumi_policy import Policy, StackValidationPolicy

from policies import pack

CONFIG_DIR = Path(__file__).resolve().parent / "config"


def _settings(policy: Policy) -> str:
    schema = policy.config_schema.properties if policy.config_schema else {}
    return (
        "<br>".join(
            f"`{key}` = `{json.dumps(prop['default'])}`: {prop.get('description', '')}"
            for key, prop in schema.items()
        )
        or "-"
    )


def rule_table() -> str:
    """Markdown table: every rule, its default level, resource or stack, meaning, settings."""
    rows = [
        "| Rule | Level | Checks | What it enforces | Settings (default) |",
        "|---|---|---|---|---|",
    ]
    for policy in sorted(pack.POLICIES, key=lambda p: p.name):
        level = (policy.enforcement_level or pack.DEFAULT_LEVEL).value
        scope = "the stack" if isinstance(policy, StackValidationPolicy) else "each resource"
        rows.append(
            f"| `{policy.name}` | {level} | {scope} | {policy.description} | {_settings(policy)} |"
        )
    return "\n".join(rows)


def _override(name: str, entry: Any) -> str:
    if isinstance(entry, str):
        return f"`{name}` level {entry}"
    parts = [f"level {entry['enforcementLevel']}"] if "enforcementLevel" in entry else []
    parts += [f"`{k}` = `{json.dumps(v)}`" for k, v in entry.items() if k != "enforcementLevel"]
    return f"`{name}`: " + ", ".join(parts)


def config_table(directory: Path = CONFIG_DIR) -> str:
    """Markdown table: each checked-in ``--policy-pack-config`` file and what it changes."""
    rows = ["| Config file | Changes from the defaults |", "|---|---|"]
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        changes = "<br>".join(_override(n, e) for n, e in document.items())
        rows.append(f"| `policies/config/{path.name}` | {changes} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(rule_table())
    print()
    print(config_table())
