"""The README's configuration reference, cost table and fit figures, generated from the code.

The README must list every key with its default, each example stack's hourly cost and what
the fit check makes of it; written by hand they drift. ``python -m infra.config_reference``
prints every block, and a test fails when the README holds anything else.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from domain import prices
from domain.catalog import GIB
from domain.fit import overhead_bytes, scheduler_defaults
from domain.stack_config import NAMESPACE, ConfigError, StackConfig, load_stack_file, parse

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


FIT_EXAMPLE = ("dev", "Qwen/Qwen2.5-7B-Instruct")
"""The misfit the README shows: the dev stack's T4 with the full-precision 7B model."""


def _gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def fit_table(root: Path = ROOT) -> str:
    """Markdown: what the fit check computes for each example stack, and one refusal.

    Priced with the bundled table, as the cost table is.
    """
    table = prices.bundled()
    stacks = {p.name.split(".")[1]: load_stack_file(p) for p in sorted(root.glob("Pulumi.*.yaml"))}
    defaults = {scheduler_defaults(cfg.fit.gpu) for cfg in stacks.values()}
    if len(defaults) != 1:
        raise ValueError("the example stacks' GPUs differ in vLLM's scheduler defaults")
    ((seqs, tokens),) = defaults
    rows = [
        f"The example stacks (vLLM API-server defaults: `max_num_seqs` {seqs}, {tokens:,} "
        "batched tokens):",
        "",
        "| stack | model | instance (GPU) | dtype | weights / GPU | overhead | KV cache "
        "| KV tokens | maxModelLen | full-length sequences | $/h per replica |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, cfg in stacks.items():
        fit = cfg.fit
        rows.append(
            f"| {name} | {fit.model.name.removeprefix('Qwen/')} | {fit.instance.instance_type} "
            f"({fit.gpu.name}, {_gib(fit.gpu.memory_bytes)}) | {fit.dtype} | "
            f"{_gib(fit.model.weight_bytes / fit.tensor_parallel)} | "
            f"{_gib(overhead_bytes(fit.model, fit.gpu))} | {_gib(fit.kv_bytes_per_gpu)} | "
            f"{fit.kv_cache_tokens:,} | {fit.max_model_len:,} | {int(fit.max_concurrency)} | "
            f"{fit.hourly_usd_per_replica(cfg.gpu.capacity_type, table):.3f} |"
        )
    stack, model = FIT_EXAMPLE
    gpu = stacks[stack].fit.gpu
    return "\n".join(
        [
            *rows,
            "",
            f"GPU memory is what CUDA reports, not the EC2 figure: the {gpu.name} shows "
            f"{_gib(gpu.memory_bytes)} of its {gpu.ec2_memory_bytes / GIB:.0f} GiB. With "
            f"{model} instead, the {stack} stack's `pulumi preview` stops with:",
            "",
            "```text",
            refusal(root / f"Pulumi.{stack}.yaml", model),
            "```",
        ]
    )


def refusal(path: Path, model: str) -> str:
    """What ``pulumi preview`` says of a stack file with ``model`` in place of its own."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    values = dict(document["config"])
    key = f"{NAMESPACE}:model"
    values[key] = {**values.get(key, {}), "name": model}
    try:
        parse(values, region=values.get("aws:region"))
    except ConfigError as err:
        return str(err)
    raise ValueError(f"{model} fits the stack in {path.name}: the README needs a misfit")


if __name__ == "__main__":
    print(reference())
    print()
    print(cost_table())
    print()
    print(fit_table())
