"""The README's cold-start figures, generated from the twin's own arithmetic.

The phases come from ``domain/data/timings.csv`` through ``twin.fleet.timings``, which the twin
runs on; written by hand in the README they drift. ``python -m twin.fleet.timing_reference``
prints the block, and a test fails when the README holds anything else.
"""

from __future__ import annotations

from pathlib import Path

from domain import catalog
from domain.catalog import GB
from domain.stack_config import load_stack_file
from twin.fleet.timings import REFERENCE_WEIGHT_BYTES, timings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_STACK = "dev"
"""The stack whose model the README's worked example uses (``make demo`` rehearses it)."""


def _s(seconds: float) -> str:
    return f"{seconds:.0f}"


def _about(seconds: float) -> str:
    """Rounded to 10 s: the measurements behind it vary far more than that."""
    return f"{round(seconds, -1):.0f}"


def cold_start(root: Path = ROOT) -> str:
    """Markdown: each cold-start phase, then what a replica of the example stack waits."""
    cfg = load_stack_file(root / f"Pulumi.{EXAMPLE_STACK}.yaml")
    model = catalog.model(cfg.model.name)
    t = timings(model.name, cfg.cluster_autoscaler)
    per = f"per {REFERENCE_WEIGHT_BYTES / GB:.0f} GB of checkpoint"
    share = model.weight_bytes / REFERENCE_WEIGHT_BYTES
    new_node = t.node_boot_s + t.image_pull_s + t.pod_start_s
    phases = (t.node_boot_s, t.image_pull_s, t.weights_download_s, t.weights_load_s)
    return "\n".join(
        [
            "| cold-start phase | seconds | paid by |",
            "|---|---|---|",
            f"| node boot | {_s(t.node_boot_s)} | each new node |",
            f"| image pull | {_s(t.image_pull_s)} | the first pod on a node (later ones find the "
            "image) |",
            f"| weights download | {_s(t.weights_download_s / share)} {per} | every pod (the "
            "cache is an emptyDir) |",
            f"| weights load | {_s(t.weights_load_s / share)} {per} | every pod |",
            f"| engine start-up | {_s(t.engine_init_s)} | every pod (compile, CUDA graphs, "
            "profiling) |",
            "",
            f"For {model.name.removeprefix('Qwen/')} ({model.weight_bytes / GB:.1f} GB, the "
            f"{EXAMPLE_STACK} stack's model) a replica on a new node serves about "
            f"{_about(new_node)} s after the HPA asks for it "
            f"({' + '.join(_s(p) for p in phases)} + {_s(t.engine_init_s)}), on a node that "
            f"already has the image about {_about(t.pod_start_s)} s.",
        ]
    )


if __name__ == "__main__":
    print(cold_start())
