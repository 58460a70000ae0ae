"""A synthetic cloud run directory: what ``qwen-stress run --stack dev`` leaves behind.

No cloud run can happen in the tests, so its files are written from the same models the runner
writes them with: a ``cluster`` target made by ``ClusterTarget.for_stack`` from
``Pulumi.dev.yaml`` (its GPU node group, region and NAT gateways), load-generator nodes sized
by ``loadtest.cloud.sizing``, the load-test stack's events (``stack_up``, ``stack_destroyed``
with unix times), a timeline with the fleet Prometheus reports (nodes and the running GPU-hours
counter) and one request a second. Every figure is chosen so a test can price it by hand:

- the load-test stack lives ``LIFETIME_S`` (32 min): created 7 min before the load, destroyed
  5 min after it; its 2 c7i.2xlarge spot nodes, the EKS control plane and the dev stack's one
  NAT gateway are billed for that long;
- GPU nodes (g4dn.xlarge, one T4 each): one for the first 5 min of the 20-min load, then two:
  ``GPU_HOURS`` = (300 + 2 x 900) / 3600;
- 1,200 requests of 100 output tokens; in the second step every fifth has a 2.5 s TTFT, over
  the default p99 limit of 2 s, so ``GOOD_REQUESTS`` = 1,080.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from domain.stack_config import load_stack_file
from loadtest import run_files, slo
from loadtest.cloud import sizing
from loadtest.cluster_target import ClusterTarget
from loadtest.records import RecordDict, RequestRecord
from loadtest.schema import (
    EventBase,
    Finished,
    PlanInfo,
    RunConfig,
    StackCreating,
    StackDestroyed,
    StackUp,
    StepEnd,
    StepStart,
    TimelineSample,
    WorkersReady,
)
from loadtest.targets import Target
from tests.pulumi_mocks import ROOT

RUN_ID = "cloud-run"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC).timestamp()
STACK = "dev-loadtest-cloud-run"
CREATED_BEFORE_S = 420.0
UP_S = 360.0
LOAD_S = 1200.0
DESTROYED_AFTER_S = 300.0
LIFETIME_S = CREATED_BEFORE_S + LOAD_S + DESTROYED_AFTER_S
SCALE_OUT_AT_S = 300.0
GPU_HOURS = round((SCALE_OUT_AT_S + 2 * (LOAD_S - SCALE_OUT_AT_S)) / 3600, 4)
OUTPUT_TOKENS = 1200 * 100
GOOD_REQUESTS = 1200 - 600 // 5
LOADGEN = sizing.size(40, workers=8)
"""Eight worker processes and the master: two c7i.2xlarge nodes of seven slots, spot."""


def _record(at: float, ttft_ms: float) -> RecordDict:
    return RequestRecord(
        T0 + at,
        True,
        "chat",
        "chat",
        ttft_ms=ttft_ms,
        e2e_ms=ttft_ms + 99 * 20.0,
        itl_ms=[20.0] * 99,
        prompt_tokens=200,
        output_tokens=100,
        usage=True,
    ).to_json()


def _sample(t: float) -> TimelineSample:
    nodes = 1 if t < SCALE_OUT_AT_S else 2
    gpu_seconds = min(t, SCALE_OUT_AT_S) + 2 * max(t - SCALE_OUT_AT_S, 0.0)
    ready = 1 if t < SCALE_OUT_AT_S + 120 else 2
    return TimelineSample(
        t=t,
        step=0 if t < LOAD_S / 2 else 1,
        users=20 if t < LOAD_S / 2 else 40,
        rps=1.0,
        replicas=ready,
        ready_replicas=ready,
        desired_replicas=1 if t < SCALE_OUT_AT_S else 2,
        nodes=nodes,
        ready_nodes=nodes,
        gpus=nodes,
        queue=0.0 if t < SCALE_OUT_AT_S else 3.0,
        running=20.0,
        gpu_hours=round(gpu_seconds / 3600, 6),
    )


def _events() -> list[EventBase]:
    half = LOAD_S / 2
    return [
        StackCreating(
            t=-CREATED_BEFORE_S,
            at=T0 - CREATED_BEFORE_S,
            stack=STACK,
            project="qwen-stress-loadtest",
            platform_stack="dev",
            expires_at=T0 + 7200,
        ),
        StackUp(
            t=-CREATED_BEFORE_S + UP_S,
            at=T0 - CREATED_BEFORE_S + UP_S,
            stack=STACK,
            project="qwen-stress-loadtest",
            up_s=UP_S,
            outputs=["masterService", "namespace"],
        ),
        WorkersReady(t=0.0, workers=LOADGEN.workers),
        StepStart(t=0.0, index=0, phase="baseline", users=20),
        StepEnd(t=half, index=0, live_pass=True),
        StepStart(t=half, index=1, phase="ramp", users=40),
        StepEnd(t=LOAD_S, index=1, live_pass=True),
        Finished(t=LOAD_S + 1, interrupted=False, stop_reason="the plan finished"),
        StackDestroyed(
            t=LOAD_S + DESTROYED_AFTER_S,
            at=T0 + LOAD_S + DESTROYED_AFTER_S,
            stack=STACK,
            lifetime_s=LIFETIME_S,
            destroy_s=240.0,
            attempts=1,
        ),
    ]


def write(run_dir: Path) -> Path:
    """Write the run's files (no summary or report: ``loadtest.summary.write`` makes those)."""
    run_dir.mkdir(parents=True)
    stack = load_stack_file(ROOT / "Pulumi.dev.yaml")
    endpoint = Target()
    endpoint.base_url = "http://vllm.qwen-stress.svc:8000"
    endpoint.description = endpoint.base_url
    target = ClusterTarget.for_stack(endpoint, "http://127.0.0.1:9090", stack, "dev").info()
    config = RunConfig(
        run_id=RUN_ID,
        started_at=T0,
        plan=PlanInfo(name="ramp", summary="baseline, then one step up"),
        target=target,
        model=stack.model.served,
        slo=slo.parse(None),
        workers=LOADGEN.workers,
        command=["run", "--stack", "dev", "--plan", "ramp"],
        loadgen=LOADGEN.info(),
    )
    run_files.write_json(run_dir / run_files.CONFIG, config)
    with (run_dir / run_files.EVENTS).open("w", encoding="utf-8") as f:
        f.writelines(e.model_dump_json() + "\n" for e in _events())
    with (run_dir / run_files.TIMELINE).open("w", encoding="utf-8") as f:
        f.writelines(
            _sample(float(t)).model_dump_json(exclude_none=True) + "\n"
            for t in range(0, int(LOAD_S) + 1, 10)
        )
    with (run_dir / run_files.REQUESTS).open("w", encoding="utf-8") as f:
        for i in range(int(LOAD_S)):
            slow = i >= LOAD_S / 2 and i % 5 == 0
            f.write(json.dumps(_record(i + 0.5, 2500.0 if slow else 300.0)) + "\n")
    return run_dir
