"""Write the pull request's preview comment: status, policy findings, hourly cost, the diff.

``.github/workflows/preview.yml`` runs ``pulumi preview --diff`` with the policy pack into a
log, ``qwen-stress cost estimate --preview`` into a Markdown file, then this script; the comment
it prints replaces the previous one on the pull request. GitHub refuses comments over 65,536
characters, so the log is cut from the front (the policy findings and the summary are at its
end, and are also quoted in full above it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

COMMENT_LIMIT = 60_000
"""Characters of the whole comment, under GitHub's 65,536 with room for the wrapping."""
SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
"""A top-level heading of pulumi's output (``Policies:``, ``Resources:``, ``Outputs:``)."""


def section(log: str, heading: str) -> str:
    """The lines of one top-level section of a pulumi log, heading excluded; empty if absent."""
    lines = log.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == f"{heading}:")
    except StopIteration:
        return ""
    body = []
    for line in lines[start + 1 :]:
        if SECTION.match(line):
            break
        body.append(line)
    return "\n".join(body).strip("\n")


def verdict(status: int, policies: str) -> str:
    """One line saying whether the preview passed and why not."""
    if status == 0:
        return "**Preview passed**: no mandatory policy violation."
    if "[mandatory]" in policies:
        return "**Preview failed: mandatory policy violations** (below); fix them before merging."
    return "**Preview failed** before the policies could judge it; see the log below."


def fenced(text: str) -> str:
    """Text in a code fence that no line of the text can close."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def comment(stack: str, log: str, status: int, cost: str | None) -> str:
    """The comment's Markdown."""
    policies = section(log, "Policies")
    parts = [
        f"### Pulumi preview of stack `{stack}`",
        verdict(status, policies),
        "#### Policy pack",
        fenced(policies) if policies else "_No policy report in the log._",
        "#### Hourly cost",
        cost.strip()
        if cost and cost.strip()
        else "_No estimate: `qwen-stress cost estimate` failed or is not available (see the "
        "job log)._",
    ]
    head = "\n\n".join(parts)
    room = COMMENT_LIMIT - len(head) - 200
    shown = log if len(log) <= room else "[... start of the log cut ...]\n" + log[-room:]
    return (
        f"{head}\n\n<details><summary>Diff and log of <code>pulumi preview</code></summary>\n\n"
        f"{fenced(shown)}\n\n</details>\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the comment for the files the preview job wrote."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--log", type=Path, required=True, help="pulumi preview --diff output")
    parser.add_argument("--status", type=int, required=True, help="pulumi preview's exit code")
    parser.add_argument("--cost", type=Path, help="qwen-stress cost estimate's Markdown")
    args = parser.parse_args(argv)
    log = args.log.read_text(encoding="utf-8", errors="replace") if args.log.exists() else ""
    cost = args.cost.read_text(encoding="utf-8") if args.cost and args.cost.exists() else None
    sys.stdout.write(comment(args.stack, log, args.status, cost))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
