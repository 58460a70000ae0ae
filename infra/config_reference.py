"""The README's configuration reference and cost table, generated from the code.

The README must list every key with its default, and each example stack's hourly cost; written
by hand they drift. ``python -m infra.config_reference`` prints both blocks, and a test fails
when the README holds anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from domain import prices
from domain.stack_config import NAMESPACE, StackConfig, load_stack_file

PLATFORM_SECTIONS = ("cluster", "network", "gpu", "tags", "cluster_autoscaler", "budget")
"""The sections the platform reads; the workload sections are documented with the workloads."""
ROOT = Path(__file__).resolve().parents[1]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined:
        return "unset"
    return f"`{json.dumps(value)}`"


def _alias(name: str, field: FieldInfo) -> str:
    return field.alias or name


def reference() -> str:
    """Markdown table: every platform key, its default and what it means."""
    rows = [
        "| Key | Default | Meaning |",
        "|---|---|---|",
        '| `aws:region` | `"us-east-1"` | AWS region; prices in this README are us-east-1\'s. |',
        "| `aws:profile` | unset | AWS CLI profile for AWS calls and the kubeconfig's token. |",
    ]
    for section in PLATFORM_SECTIONS:
        section_field = StackConfig.model_fields[section]
        model = section_field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{section} is not a configuration section")
        prefix = f"{NAMESPACE}:{_alias(section, section_field)}"
        for name, field in model.model_fields.items():
            rows.append(
                f"| `{prefix}.{_alias(name, field)}` | {_default(field)} | "
                f"{field.description or ''} |"
            )
    return "\n".join(rows)


def cost_table(root: Path = ROOT) -> str:
    """Markdown table: each example stack's cost per hour at minimum and maximum size.

    Priced with the bundled table, whatever a developer has refreshed locally: the README must
    be the same for everyone, and it names the table's date.
    """
    table = prices.bundled()
    rows = [
        "| Stack | GPU nodes | At minimum size | At maximum size |",
        "|---|---|---|---|",
    ]
    for path in sorted(root.glob("Pulumi.*.yaml")):
        cfg = load_stack_file(path)
        gpu = cfg.gpu
        rows.append(
            f"| `{path.name.split('.')[1]}` | {gpu.min_nodes}..{gpu.max_nodes} x "
            f"{gpu.instance_type} ({gpu.capacity_type}) | ${cfg.min_hourly_usd(table):.2f}/h | "
            f"${cfg.max_hourly_usd(table):.2f}/h |"
        )
    rows += ["", f"Prices: {table.label()}."]
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference())
    print()
    print(cost_table())
