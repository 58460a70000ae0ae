"""The README's table of ``qwen-stress run`` flags, generated from the command itself.

``python -m loadtest.run_flags`` prints it; ``tests/unit/test_readme.py`` fails when the block
between the README's ``run-flags`` markers differs, so the README says what ``--help`` says:
each flag with its value's name, its default (``show_default`` where the default depends on the
run) and its help text.
"""

from __future__ import annotations

import re
from typing import Any

import typer.main

MARKER = "run-flags"


def _default(param: Any) -> str:
    if isinstance(param.show_default, str):
        return param.show_default
    if getattr(param, "is_flag", False):
        return "on" if param.default else "off"
    if param.default is None:
        return "none"
    if isinstance(param.default, float):
        return f"{param.default:g}"
    return str(param.default)


_CODE = re.compile(r"(?<![\w`])(--[a-z][a-z-]*|[\w./-]*<[\w-]+>[\w./<>-]*)")
"""Flags and names with placeholders (``Pulumi.<stack>.yaml``): code in the table, so that
Markdown does not take ``<stack>`` for an HTML tag."""


def _cell(text: str, *, code: bool = True) -> str:
    text = text.replace("|", "\\|")
    return _CODE.sub(r"`\1`", text) if code else text


def reference() -> str:
    """The flags table: flag and value name, default, help text."""
    from loadtest.cli import app  # noqa: PLC0415 - the app imports this package's commands

    command: Any = typer.main.get_command(app)
    rows = ["| flag | default | what |", "|---|---|---|"]
    for param in command.commands["run"].params:
        name = max(param.opts, key=len)
        if name == "--help":
            continue
        flag = f"{name} {param.metavar}" if param.metavar else name
        cells = (f"`{_cell(flag, code=False)}`", _cell(_default(param)), _cell(param.help or ""))
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference())
