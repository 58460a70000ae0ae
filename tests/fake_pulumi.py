"""A stand-in for the ``pulumi`` executable: records every call, answers like the CLI.

``install(root)`` writes ``root/bin/pulumi`` (what ``PulumiCommand(root=...)`` runs). Each call
appends one JSON line to ``$FAKE_PULUMI_LOG``: its argv, working directory, process group,
session, and any signal it receives (it keeps running, so a signal that reached it shows).
Stacks and their tags live in ``$FAKE_PULUMI_STATE``. ``$FAKE_PULUMI_FAULTS`` (JSON) maps a
command (``up``, ``refresh``, ``destroy``...) to a list of outcomes for its next calls:
``"fail"``, ``"locked"`` or ``"ok"`` (``"fail!"``: every call from then on fails);
``$FAKE_PULUMI_UP_S`` makes ``up`` last that long.
Only the commands the Automation API sends for qwen-stress are understood.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

VERSION = "v3.272.0"
LOCKED = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) "
    "to end or delete the lock file with `pulumi cancel`."
)


def install(root: Path) -> Path:
    """Write ``root/bin/pulumi`` running this file with this interpreter; return ``root``."""
    binary = root / "bin" / "pulumi"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{Path(__file__).resolve()}" "$@"\n')
    binary.chmod(0o755)
    return root


def calls(log: Path) -> list[dict[str, Any]]:
    """Every call logged so far (signal lines merged into their call)."""
    out: dict[int, dict[str, Any]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        item = json.loads(line)
        entry = out.setdefault(item["pid"], {"signals": [], "done": False})
        if "signal" in item:
            entry["signals"].append(item["signal"])
        elif "done" in item:
            entry["done"] = True
        else:
            entry.update(item)
    return list(out.values())


def _log(**fields: Any) -> None:
    with open(os.environ["FAKE_PULUMI_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"pid": os.getpid(), **fields}) + "\n")


def _state() -> dict[str, Any]:
    path = Path(os.environ["FAKE_PULUMI_STATE"])
    return json.loads(path.read_text()) if path.exists() else {"stacks": {}, "faults": {}}


def _save(state: dict[str, Any]) -> None:
    Path(os.environ["FAKE_PULUMI_STATE"]).write_text(json.dumps(state))


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1] if name in args else ""


def _fault(state: dict[str, Any], command: str) -> str:
    """The next outcome queued for ``command``, consuming it (``fail!`` never runs out)."""
    queued = state["faults"].setdefault(
        command, json.loads(os.environ.get("FAKE_PULUMI_FAULTS", "{}")).get(command, [])
    )
    if not queued:
        return "ok"
    outcome: str = queued[0] if queued[0].endswith("!") else queued.pop(0)
    return outcome


def main(argv: list[str]) -> int:
    def record(signum: int, _frame: object) -> None:
        _log(signal=signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, record)
    _log(
        argv=argv,
        cwd=os.getcwd(),
        pgid=os.getpgid(0),
        sid=os.getsid(0),
        automation=os.environ.get("PULUMI_AUTOMATION_API"),
        path0=os.environ.get("PATH", "").split(os.pathsep)[0],
    )
    try:
        return _run([a for a in argv if a != "--non-interactive"])
    finally:
        _log(done=True)


def _run(args: list[str]) -> int:
    if args == ["version"]:
        print(os.environ.get("FAKE_PULUMI_VERSION", VERSION))
        return 0
    state = _state()
    stacks: dict[str, Any] = state["stacks"]
    name = _flag(args, "--stack")
    words = [a for a in args if not a.startswith("-")]
    if words[:2] == ["stack", "select"]:
        if name not in stacks:
            print(f"error: no stack named '{name}' found", file=sys.stderr)
            return 255
        return 0
    if words[:2] == ["stack", "init"]:
        stacks[words[2]] = {
            "tags": {},
            "resources": 0,
            "secrets_provider": _flag(args, "--secrets-provider") or None,
        }
        _save(state)
        return 0
    if words[:3] == ["stack", "tag", "set"]:
        stacks[name]["tags"][words[3]] = words[4]
        _save(state)
        return 0
    if words[:3] == ["stack", "tag", "ls"]:
        print(json.dumps(stacks[name]["tags"]))
        return 0
    if words[:2] == ["stack", "ls"]:
        print(
            json.dumps(
                [
                    {"name": n, "current": False, "lastUpdate": "2025-01-01T10:00:00.000Z"}
                    for n in stacks
                ]
            )
        )
        return 0
    if words[:2] == ["stack", "output"]:
        secret = "--show-secrets" in args
        print(
            json.dumps(
                {"masterService": "locust-master", "apiKey": "k3y" if secret else "[secret]"}
            )
        )
        return 0
    if words[:2] == ["stack", "history"]:
        print(
            json.dumps(
                [
                    {
                        "kind": "update",
                        "startTime": "2025-01-01T10:00:00.000Z",
                        "message": "",
                        "environment": {},
                        "config": {},
                        "result": "succeeded",
                        "endTime": "2025-01-01T10:01:00.000Z",
                    }
                ]
            )
        )
        return 0
    if words[:2] == ["stack", "export"]:
        pending = stacks.get(name, {}).get("pending", [])
        print(json.dumps({"version": 3, "deployment": {"pending_operations": pending}}))
        return 0
    if words[:2] == ["stack", "rm"]:
        target = words[2]
        if stacks.get(target, {}).get("resources"):
            print(f"error: '{target}' still has resources; removal rejected", file=sys.stderr)
            return 255
        stacks.pop(target, None)
        _save(state)
        return 0
    if words[:2] == ["config", "set-all"]:
        return 0
    command = words[0]
    outcome = _fault(state, command)
    _save(state)
    if outcome.startswith("locked"):
        print(LOCKED, file=sys.stderr)
        return 255
    if outcome.startswith("fail"):
        print(f"error: {command} failed: ThrottlingException: Rate exceeded", file=sys.stderr)
        return 255
    if command == "up":
        print("Updating (dev):")
        time.sleep(float(os.environ.get("FAKE_PULUMI_UP_S", "0")))
        print(" +  pulumi:pulumi:Stack qwen-stress-loadtest created")
        state = _state()
        state["stacks"][name]["resources"] = 7
        _save(state)
        return 0
    if command == "refresh":
        stacks[name]["pending"] = []
        _save(state)
        return 0
    if command == "destroy":
        stacks[name]["resources"] = 0
        _save(state)
        return 0
    if command == "cancel":
        return 0
    print(f"error: the fake pulumi does not know {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
