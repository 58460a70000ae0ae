"""The pull request's preview comment: verdict, policy findings, cost, and a bounded log."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.pulumi_mocks import ROOT

SCRIPT = ROOT / ".github" / "scripts" / "preview_comment.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("preview_comment", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


preview_comment = _module()

# The end of a `pulumi preview --diff --policy-pack policies` log with one violation.
FAILED_LOG = """\
Previewing update (pr-12)

+ pulumi:pulumi:Stack: (create)
    + aws:eks/nodeGroup:NodeGroup: (create)
        scalingConfig: { maxSize: 50 }

Policies:
    ❌ qwen-stress-guardrails@v0.1.0 (local: policies)
        - [mandatory]  gpu-budget  (aws:eks/nodeGroup:NodeGroup: nodes-gpu)
          A GPU node group at its maximum size (maxSize x hourly price) stays within the budget.
          nodes-gpu: at maxSize 50 x g4dn.xlarge (on-demand, $0.526/h) the GPU nodes cost $26.30/h

Resources:
    + 80 to create

error: preview failed
"""
PASSED_LOG = """\
Previewing update (pr-12)

Policies:
    ✅ qwen-stress-guardrails@v0.1.0 (local: policies)

Resources:
    + 80 to create
"""
COST = "| Item | USD/h |\n|---|---|\n| GPU nodes (max) | 1.05 |\n"


def test_a_failed_preview_names_the_mandatory_violations_and_quotes_them() -> None:
    text = preview_comment.comment("pr-12", FAILED_LOG, 255, COST)
    assert "### Pulumi preview of stack `pr-12`" in text
    assert "**Preview failed: mandatory policy violations**" in text
    policies = text.split("#### Policy pack", 1)[1].split("#### Hourly cost", 1)[0]
    assert "[mandatory]  gpu-budget" in policies and "Resources:" not in policies
    assert "| GPU nodes (max) | 1.05 |" in text
    assert "<details>" in text and "scalingConfig: { maxSize: 50 }" in text


def test_a_passed_preview_says_so() -> None:
    text = preview_comment.comment("pr-12", PASSED_LOG, 0, COST)
    assert "**Preview passed**" in text and "✅ qwen-stress-guardrails" in text


def test_a_preview_that_failed_before_the_policies_ran_says_so() -> None:
    text = preview_comment.comment("pr-12", "error: program failed\n", 1, None)
    assert "before the policies could judge it" in text
    assert "_No policy report in the log._" in text
    assert "_No estimate:" in text


def test_a_huge_log_is_cut_from_the_front_to_fit_a_comment() -> None:
    log = "x" * 200_000 + "\n" + PASSED_LOG
    text = preview_comment.comment("pr-12", log, 0, COST)
    assert len(text) < 65_536
    assert "[... start of the log cut ...]" in text and text.rstrip().endswith("</details>")
    assert "+ 80 to create" in text


def test_a_log_holding_a_code_fence_cannot_close_the_comment_s_fence() -> None:
    text = preview_comment.comment("pr-12", "```\nnot code\n```\n", 1, None)
    assert "````\n```\nnot code" in text


def test_the_script_reads_the_files_the_workflow_writes(tmp_path: Path) -> None:
    (tmp_path / "preview.log").write_text(FAILED_LOG, encoding="utf-8")
    (tmp_path / "cost.md").write_text(COST, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--stack", "pr-12", "--log", "preview.log",
         "--status", "1", "--cost", "cost.md"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "[mandatory]  gpu-budget" in result.stdout and "1.05" in result.stdout
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), "--stack", "pr-12", "--log", "preview.log",
         "--status", "1", "--cost", "absent.md"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "_No estimate:" in missing.stdout
