"""Every ``qwen-stress`` command a workflow runs exists in the CLI, with every option it passes.

A workflow calls the CLI only in the cloud, where a renamed option would surface as a failed
nightly reap or load test; this test reads the commands out of the workflows' run scripts and
looks each one up in the Typer app (``loadtest/cli.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from loadtest.cli import app
from tests.workflows import commands

CALLS = commands(None, "qwen-stress")


def _is_group(command: Any) -> bool:
    # Typer ships its own copy of click; its groups are told apart by their subcommands.
    return isinstance(getattr(command, "commands", None), dict)


def _resolve(args: list[str]) -> tuple[Any, list[str], list[str]]:
    """The command an argument list selects, the words that selected it, and the rest."""
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"qwen-stress has no command {' '.join([*path, rest[0]])!r}"
        command, path = sub, [*path, rest.pop(0)]
    return command, path, rest


def test_the_workflows_call_the_cli() -> None:
    assert {tuple(c[:2]) for c in CALLS} >= {("run", "--stack"), ("reap", "--older-than")}


@pytest.mark.parametrize("args", CALLS, ids=[" ".join(c) for c in CALLS])
def test_each_command_and_option_exists(args: list[str]) -> None:
    command, path, rest = _resolve(args)
    assert not _is_group(command), f"qwen-stress {' '.join(path)} needs a subcommand"
    known = {opt for param in command.params for opt in param.opts}
    flags = {o for p in command.params if getattr(p, "is_flag", False) for o in p.opts}
    i = 0
    while i < len(rest):
        option = rest[i]
        assert option.startswith("--"), f"unexpected argument {option!r} in {args}"
        assert option in known, f"qwen-stress {' '.join(path)} has no option {option}"
        i += 1 if option in flags else 2
