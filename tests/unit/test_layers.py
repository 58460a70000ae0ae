"""The packages depend one way: domain at the bottom, the command line at the top, no cycles.

Someone new reads the tree top-down; an import against the direction (the domain reaching up
into Pulumi components, the twin reaching into the load test) would tie layers that must change
alone. Every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "twin": {"domain"},
    "infra": {"domain"},
    "workloads": {"domain"},
    "costs": {"domain"},
    "loadtest": {"domain", "twin", "infra", "workloads", "costs"},
    "policies": {"domain"},
}
"""What each project package may import; everything may use ``domain``, nothing imports up."""

FOREIGN: dict[str, set[str]] = {
    "domain": {"pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_random", "locust", "gevent"},
    "twin": {"pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_random", "locust", "gevent"},
    "infra": {"locust", "gevent"},
    "workloads": {"locust", "gevent"},
    "costs": {"pulumi", "pulumi_aws", "pulumi_kubernetes", "pulumi_random", "locust", "gevent"},
    "policies": {"locust", "gevent"},
}
"""Third-party packages a layer must not need: the domain runs without Pulumi or Locust."""


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_one_above_it(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if name in ALLOWED and name != package and name not in ALLOWED[package]
    }
    assert not wrong, "imports against the layer direction:\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize("package", sorted(FOREIGN))
def test_lower_layers_need_neither_pulumi_nor_locust(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path) & FOREIGN[package]
    }
    assert not wrong, "\n".join(sorted(wrong))


def test_the_allowed_graph_has_no_cycle() -> None:
    seen: list[str] = []

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, " -> ".join((*path, package))
        for lower in ALLOWED[package]:
            visit(lower, (*path, package))
        seen.append(package)

    for package in ALLOWED:
        visit(package, ())
    assert set(seen) == set(ALLOWED)


def test_package_init_files_import_nothing() -> None:
    """Importing ``twin.emulator`` for one constant must not start loading the whole server."""
    heavy = {
        str(path.relative_to(ROOT))
        for package in ALLOWED
        for path in _modules(package)
        if path.name == "__init__.py" and _imports(path) - {"__future__"}
    }
    assert not heavy


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


def test_the_command_line_loads_neither_the_twin_nor_locust_until_used() -> None:
    """``qwen-stress run --url`` and ``--help`` start fast: no emulator, no gevent patching.

    boto3 (and botocore, a second of imports) load only in the commands that call AWS.
    """
    loaded = _loaded_after("import loadtest.cli")
    assert not {m for m in loaded if m.startswith(("twin.emulator.", "twin.fleet."))} - {
        "twin.emulator.cli",
        "twin.fleet.cli",
    }
    assert "locust" not in loaded
    assert "pulumi" not in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("boto3", "botocore", "plotly")}
    # `qwen-stress reap` and cloud runs load the Automation API and the Kubernetes client when
    # they run, not when `--help` or a local run starts.
    assert "kubernetes" not in loaded
    assert not {"loadtest.cloud.automation", "loadtest.cloud.kube_probe"} & loaded
    assert "loadtest.cloud.reap" in loaded  # registered, so its import must stay this light
