"""The load-test pods' roles: the master (plan, run files, HTTP API) and a worker.

The master runs the same ``PlanRun`` as a local run, with the workers as pods that connect to
it through the master Service, and the fleet read from the cluster's Prometheus
(``ClusterTarget``). Before any load it asks vLLM's ``/v1/models`` from inside the cluster
(the key, the model and the NetworkPolicy's path all proven at once). Its HTTP API
(``master_api``) lets the CLI follow the run through a port-forward; after the run it keeps
serving the files until the CLI has them all (``POST /release``), or ``LINGER_S``, then exits.
A SIGTERM (the Job's deadline, the stack's destroy, the rehearsal's stop) stops the plan as
Ctrl-C does locally and skips the wait.

Imports Locust (through ``plan_run``): only the pod entrypoint loads this module.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from domain.vllm_args import API_KEY_ENV
from loadtest import master_protocol, slo
from loadtest.cloud import contract
from loadtest.cluster_target import ClusterTarget
from loadtest.llm_user import UserSettings
from loadtest.master_api import MasterApi
from loadtest.payload import RunPayload
from loadtest.plan_run import ExitedWorker, PlanRun, RunError
from loadtest.run_spec import RunSpec
from loadtest.targets import UrlTarget, list_models
from loadtest.worker import redact_output, run_worker

ALL_INTERFACES = "0.0.0.0"
EXIT_FAILED = 1


def log(message: str) -> None:
    """One line to the pod's log (``kubectl logs``; the rehearsal's ``logs/pod-*.log``)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class PodWorkers:
    """Workers that are pods of their own: they connect to the master; nothing to start here."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.log_dir: Path | None = None

    def start(self, master_host: str, master_port: int, user_class: str) -> None:
        """Nothing: the worker Job's pods connect through the master Service."""

    def exited(self) -> list[ExitedWorker]:
        """No process to watch: a lost worker shows as missed heartbeats."""
        return []

    def any_alive(self) -> bool | None:
        """Unknown from here (the plan run counts the workers still connected)."""
        return None

    def stop(self) -> None:
        """Nothing: the master's quit message ends the worker pods (their Job completes)."""

    def kill(self) -> None:
        """Nothing more than ``stop``: the master quits and the workers follow."""


def preflight(base_url: str, model: str, api_key: str) -> str | None:
    """Ask ``/v1/models`` with the key, as the workers will; why not to start, or None."""
    status, models = list_models(base_url, api_key)
    url = f"{base_url}/v1/models"
    if status == 0:
        return (
            f"nothing answered at {url} from the master pod: check the vLLM Service and that "
            "its NetworkPolicy admits the load-test namespace"
        )
    if status in (401, 403):
        return f"{url} refused the API key (HTTP {status}): the load-test Secret holds another"
    if status != 200:
        return f"{url} answered HTTP {status}"
    if model not in models:
        return f"vLLM at {base_url} serves {', '.join(models) or 'no model'}, not {model!r}"
    return None


def _spec(payload: RunPayload, env: Mapping[str, str], target: ClusterTarget) -> RunSpec:
    options = payload.options
    return RunSpec(
        out_dir=Path(env[contract.ENV_RUN_DIR]),
        plan=payload.plan(),
        plan_options=options.plan_options(),
        workload=payload.workload,
        slo=slo.parse(options.slo),
        target=target,
        model=env[contract.ENV_MODEL],
        options=options,
        workers=int(env[contract.ENV_WORKERS]),
        time_scale=options.effective_time_scale,
        api_key_env=API_KEY_ENV,
        max_inflight=options.max_inflight,
        sample_interval_s=payload.sample_interval_s,
        command=payload.command,
        show_live=False,
        run_id=env[contract.ENV_RUN_ID],
        loadgen=payload.loadgen,
    )


def _linger(api: MasterApi, plan: PlanRun) -> None:
    """Serve the files until the CLI has them, ``LINGER_S`` passes, or a signal says go."""
    deadline = time.monotonic() + master_protocol.LINGER_S
    while not api.released.is_set() and time.monotonic() < deadline and not plan.signalled:
        api.released.wait(0.5)
    if not api.released.is_set():
        log("nobody collected the run files: exiting without waiting further")


def run_master(env: Mapping[str, str], payload: RunPayload, environ: Mapping[str, str]) -> int:
    """The master role: pre-flight, plan, API; the exit code of the pod."""
    redact_output(API_KEY_ENV)  # the pod's log: a traceback may quote what vLLM sent
    run_dir = Path(env[contract.ENV_RUN_DIR])
    run_dir.mkdir(parents=True, exist_ok=True)
    host = environ.get(contract.ENV_BIND_HOST) or ALL_INTERFACES
    api = MasterApi(env[contract.ENV_RUN_ID], run_dir, host, int(env[contract.ENV_API_PORT]))
    api.workers_expected = int(env[contract.ENV_WORKERS])
    api.start()
    log(f"master API on {host}:{api.port}")
    base = UrlTarget(env[contract.ENV_VLLM_URL])
    target = ClusterTarget.for_fleet(base, env[contract.ENV_PROMETHEUS_URL], payload.cluster)
    plan = PlanRun(
        _spec(payload, env, target),
        PodWorkers(api.workers_expected),
        bind_host=host,
        port=int(env[contract.ENV_MASTER_PORT]),
        worker_connect_timeout_s=contract.WORKER_WAIT_S,
    )
    code = 0
    try:
        with plan.signals():
            problem = preflight(base.base_url, env[contract.ENV_MODEL], environ[API_KEY_ENV])
            if problem is not None:
                api.phase, api.error, code = "failed", f"pre-flight: {problem}", EXIT_FAILED
                log(api.error)
            elif not plan.stop.event.is_set() and not api.stop_requests:
                log(f"pre-flight passed; waiting for {api.workers_expected} workers")
                api.plan = plan
                code = _run_plan(api, plan, target)
                if api.phase != "failed":
                    api.phase = "finished"  # settled: the status may say the run is over
            else:
                # Stopped (the CLI, a signal) before any load: nothing to collect, and the
                # follower that asked must hear that the run is over, not "preflight" for ever.
                api.phase = "finished"
                log("stopped before the plan started")
            _linger(api, plan)
    finally:
        api.close()
    return code


def _run_plan(api: MasterApi, plan: PlanRun, target: ClusterTarget) -> int:
    target.start()
    try:
        plan.run()
    except RunError as err:
        api.phase, api.error = "failed", str(err)
        log(f"the run failed: {err}")
        return EXIT_FAILED
    finally:
        target.stop()
    if plan.error is not None:
        # A local run exits 1 for this; the follower reads it from the status, the Job from
        # the exit code. The files are complete all the same (``PlanRun`` closed them).
        api.error = plan.error
        log(f"the run failed: {plan.error}")
        return EXIT_FAILED
    log(f"the run ended: {plan.stop.reason}")
    return 0


def run_worker_pod(env: Mapping[str, str], payload: RunPayload) -> int:
    """The worker role: a Locust worker whose users load vLLM with the key from the environment."""
    redact_output(API_KEY_ENV)
    settings = UserSettings(
        workload=payload.workload, model=env[contract.ENV_MODEL], api_key_env=API_KEY_ENV
    )
    user_class = "ArrivalUser" if payload.plan().open_loop else "LLMUser"
    redact_output(API_KEY_ENV)  # before logging takes the stream
    # Locust's own lines (connected, quit message, heartbeats missed) belong in the pod's log.
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s: %(message)s")
    index = os.environ.get(contract.ENV_JOB_INDEX, "?")
    log(f"worker {index}: connecting to {env[contract.ENV_MASTER_HOST]}")
    return run_worker(
        settings, env[contract.ENV_MASTER_HOST], int(env[contract.ENV_MASTER_PORT]), user_class
    )
