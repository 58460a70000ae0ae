"""Read the GitHub Actions workflows as data: jobs, steps, run scripts, actions, commands."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.pulumi_mocks import ROOT

WORKFLOW_DIR = ROOT / ".github" / "workflows"
ACTIONS_RECORD = ROOT / "tests" / "data" / "github_actions.yaml"
DEPRECATED_RUNTIMES = {"node12", "node16", "node20"}
"""Node versions GitHub's runners no longer run actions on (node20 since 2026)."""


def workflow_files() -> list[Path]:
    """Every workflow file."""
    return sorted([*WORKFLOW_DIR.glob("*.yml"), *WORKFLOW_DIR.glob("*.yaml")])


def load(name: str) -> dict[str, Any]:
    """One workflow by file stem (``preview``)."""
    document: dict[str, Any] = yaml.safe_load((WORKFLOW_DIR / f"{name}.yml").read_text("utf-8"))
    return document


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    """The ``on:`` block (YAML 1.1 reads a bare ``on`` key as True)."""
    found = workflow.get("on", workflow.get(True))
    return found if isinstance(found, dict) else {str(found): None}


@dataclass(frozen=True)
class Step:
    """One step, with the workflow and job it belongs to."""

    workflow: str
    job: str
    body: dict[str, Any]

    @property
    def uses(self) -> str | None:
        """The action reference (``owner/repo@ref``), if the step runs one."""
        value = self.body.get("uses")
        return str(value) if value else None

    @property
    def run(self) -> str:
        """The step's shell script ('' for an action step)."""
        return str(self.body.get("run") or "")

    @property
    def inputs(self) -> dict[str, Any]:
        """The step's ``with:`` inputs."""
        return dict(self.body.get("with") or {})


def jobs(name: str) -> dict[str, dict[str, Any]]:
    """A workflow's jobs by id."""
    return dict(load(name)["jobs"])


def steps(name: str | None = None) -> Iterator[Step]:
    """Every step of one workflow, or of all of them."""
    names = [name] if name else [p.stem for p in workflow_files()]
    for workflow in names:
        for job_id, job in jobs(workflow).items():
            for body in job.get("steps", []):
                yield Step(workflow, job_id, body)


def action_steps(name: str | None, action: str) -> list[Step]:
    """Steps that run one action (``pulumi/actions``), whatever its ref."""
    return [s for s in steps(name) if s.uses and s.uses.split("@")[0] == action]


def script_lines(script: str) -> list[str]:
    """A run script's commands, with backslash continuations joined."""
    return [line.strip() for line in script.replace("\\\n", " ").splitlines() if line.strip()]


def commands(name: str | None, program: str) -> list[list[str]]:
    """Every invocation of a program in run scripts, as argument lists (program excluded).

    ``.venv/bin/qwen-stress`` counts as ``qwen-stress``; redirections end the arguments.
    """
    found = []
    for step in steps(name):
        for line in script_lines(step.run):
            words = shlex.split(line, comments=True)
            for i, word in enumerate(words):
                if word == program or word.endswith(f"/{program}"):
                    args = []
                    for arg in words[i + 1 :]:
                        if arg in (">", ">>", "|", "&&", "||", ";") or re.match(r"^\d?>", arg):
                            break
                        args.append(arg)
                    found.append(args)
    return found


def actions_record() -> dict[str, dict[str, Any]]:
    """The recorded majors, runtimes and inputs of the actions in use."""
    record: dict[str, dict[str, Any]] = yaml.safe_load(ACTIONS_RECORD.read_text("utf-8"))
    return record
