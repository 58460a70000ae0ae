"""Entrypoint of the load-test pods: ``python -m loadtest.pod master|worker|check ROLE``.

Every container of the ephemeral stack runs this module (``loadtest.cloud.contract.ENTRYPOINT``)
with its settings in the environment and the run's payload in a mounted file, both named in
``loadtest.cloud.contract``. ``check ROLE`` is what the no-registry path's second init container
runs after installing the wheel: it reads the role's settings and imports every module the role
will run, so a broken install or a missing variable fails the pod at once, with one line saying
which. It prints one JSON line about what it found, never the API key.

``master`` runs the plan (``loadtest.master_pod.run_master``: the shared ``PlanRun``, the fleet
from Prometheus, the HTTP API the CLI follows); ``worker`` runs a Locust worker that connects to
the master Service. Both read the run's payload (``loadtest.payload``); a setting or payload
they cannot use stops them with exit code 2 and one line. Started by a local process (the
rehearsal), they hold a lifeline to it (``domain.lifeline``); in the cluster a worker whose
master is gone exits by itself, so its Job ends.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from domain import lifeline
from domain.vllm_args import API_KEY_ENV
from loadtest.cloud import contract

USAGE = "usage: python -m loadtest.pod master|worker|check master|check worker"
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "worker": ("gevent", "locust", "loadtest.payload", "loadtest.llm_user", "loadtest.worker"),
    "master": (
        "gevent",
        "gevent.pywsgi",
        "locust",
        "loadtest.payload",
        "loadtest.master_pod",
        "loadtest.plan_run",
        "loadtest.master_api",
        "loadtest.cluster_target",
        "loadtest.collector",
        "loadtest.plans",
        "loadtest.run_files",
    ),
}
"""What each role imports to run: the check fails if the install cannot provide one."""
NEVER_IN_POD = ("pulumi", "pulumi_aws", "pulumi_kubernetes", "twin")
"""Not in the pods' lock (or not their business): importing one means a module reached too far."""
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "worker": (
        contract.ENV_RUN_ID,
        contract.ENV_PAYLOAD,
        contract.ENV_VLLM_URL,
        contract.ENV_MODEL,
        contract.ENV_MASTER_HOST,
        contract.ENV_MASTER_PORT,
        API_KEY_ENV,
    ),
    "master": (
        contract.ENV_RUN_ID,
        contract.ENV_PAYLOAD,
        contract.ENV_VLLM_URL,
        contract.ENV_MODEL,
        contract.ENV_MASTER_PORT,
        contract.ENV_WORKERS,
        contract.ENV_API_PORT,
        contract.ENV_PROMETHEUS_URL,
        contract.ENV_RUN_DIR,
        API_KEY_ENV,
    ),
}


class PodError(Exception):
    """A pod cannot start: a setting is missing or wrong, or the code is incomplete."""


@dataclass(frozen=True)
class PodSettings:
    """A role's settings as the manifests set them (the API key stays in the environment)."""

    role: str
    env: dict[str, str]
    payload: dict[str, object]

    @classmethod
    def from_env(cls, role: str, environ: dict[str, str]) -> PodSettings:
        """Read and check the role's variables and the payload file."""
        missing = [name for name in REQUIRED_ENV[role] if not environ.get(name)]
        if missing:
            raise PodError(f"{role}: environment variable {', '.join(missing)} is not set")
        path = Path(environ[contract.ENV_PAYLOAD])
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise PodError(f"{role}: cannot read the run payload {path}: {err}") from None
        if not isinstance(payload, dict):
            raise PodError(f"{role}: the run payload {path} is not a JSON object")
        for name in (contract.ENV_MASTER_PORT, contract.ENV_WORKERS, contract.ENV_API_PORT):
            if name in REQUIRED_ENV[role] and not environ[name].isdigit():
                raise PodError(f"{role}: {name}={environ[name]!r} is not a number")
        env = {name: environ[name] for name in REQUIRED_ENV[role] if name != API_KEY_ENV}
        return cls(role, env, payload)


def check(role: str, environ: dict[str, str]) -> dict[str, object]:
    """Settings readable and every runtime module importable; what was found, for the log."""
    settings = PodSettings.from_env(role, environ)
    for name in RUNTIME_MODULES[role]:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise PodError(f"{role}: the installed code cannot import {name}: {err}") from None
    stray = sorted(name for name in NEVER_IN_POD if name in sys.modules)
    if stray:
        raise PodError(f"{role}: the pod's modules imported {', '.join(stray)}")
    return {
        "role": role,
        "run_id": settings.env[contract.ENV_RUN_ID],
        "python": sys.version.split()[0],
        "qwen_stress": metadata.version("qwen-stress"),
        "locust": metadata.version("locust"),
        "code": str(Path(importlib.import_module("loadtest").__file__ or "").parent),
        "payload_keys": sorted(settings.payload),
    }


def run_role(role: str, environ: dict[str, str]) -> int:
    """Run the master or a worker until the run ends; the pod's exit code."""
    settings = PodSettings.from_env(role, environ)
    # Locust (gevent's monkey-patching) loads only here: ``check`` and the tests stay plain.
    from loadtest.master_pod import run_master, run_worker_pod  # noqa: PLC0415
    from loadtest.payload import PayloadError, RunPayload  # noqa: PLC0415

    lifeline.hold(environ)  # after the patching: its watch must be a greenlet there

    try:
        payload = RunPayload.read(settings.payload)
    except PayloadError as err:
        raise PodError(f"{role}: {err}") from None
    if role == "master":
        return run_master(settings.env, payload, environ)
    return run_worker_pod(settings.env, payload)


def main(argv: list[str] | None = None) -> int:
    """Run one role; exit 2 with one line on stderr when the pod cannot start."""
    args = sys.argv[1:] if argv is None else argv
    environ = dict(os.environ)
    try:
        if len(args) == 2 and args[0] == "check" and args[1] in contract.ROLES:
            print(json.dumps(check(args[1], environ), sort_keys=True))
            return 0
        if len(args) == 1 and args[0] in contract.ROLES:
            return run_role(args[0], environ)
        raise PodError(USAGE)
    except PodError as err:
        print(f"qwen-stress pod: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
