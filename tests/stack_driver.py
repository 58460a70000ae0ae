"""A small cloud-run driver for the signal tests: the real orchestrator and Automation API
workspace on the fake ``pulumi`` (``tests/fake_pulumi.py``), run as its own process so a test
can Ctrl-C or kill it as a terminal or an OOM killer would.

``python -m tests.stack_driver STATE_DIR RUN_DIR PULUMI_ROOT PLATFORM_DIR [--plain]``:
``--plain`` uses the SDK's own ``PulumiCommand`` (the CLI in the driver's process group), the
control case. ``follow`` writes ``RUN_DIR/following`` and waits for a stop, then writes
``RUN_DIR/collected``. Prints the outcome as JSON and exits with its exit code.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from loadtest.cloud.automation import AutomationWorkspace
from loadtest.cloud.journal import Journal
from loadtest.cloud.orchestrator import EventLog, Orchestrator, StackRequest, StopRequest
from loadtest.cloud.workspace import StackRef


def main(argv: list[str]) -> int:
    state, run_dir, root, platform = (Path(a) for a in argv[:4])
    plain = "--plain" in argv
    workspace = AutomationWorkspace(
        platform_dir=platform,
        work_root=state / "work",
        platform_stack=StackRef.parse("dev"),
        pulumi_root=str(root),
        command=auto.PulumiCommand(root=str(root)) if plain else None,
    )

    def follow(outputs: Mapping[str, Any], stop: StopRequest) -> None:
        (run_dir / "following").write_text(json.dumps(sorted(outputs)))
        if stop.wait(60) and not stop.urgent:
            (run_dir / "collected").write_text(stop.reason)

    orchestrator = Orchestrator(
        workspace,
        Journal(state),
        events=EventLog(run_dir),
        log_path=run_dir / "logs" / "pulumi.log",
        retry_delays_s=(0.1,),
        heartbeat_s=0.5,
    )
    request = StackRequest(
        run_id="20250101-120000-capacity",
        platform_stack=StackRef.parse("dev"),
        program=lambda: None,
        run_dir=run_dir,
        lifetime_s=600,
        config={"aws:region": "us-east-1"},
    )
    outcome = orchestrator.run(request, follow)
    print(json.dumps(dataclasses.asdict(outcome)))
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
