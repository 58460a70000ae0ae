"""vLLM's host-side costs in the emulator: per step, per sequence, per request, async scheduling."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from domain import catalog
from domain.versions import VLLM_VERSION
from twin.emulator.driver import EngineDriver
from twin.emulator.engine import Engine, EngineLimits, Sequence
from twin.emulator.http_protocol import HttpRequest
from twin.emulator.metrics import ReplicaMetrics
from twin.emulator.perf_model import BOUNDS, Efficiencies, StepCostModel, fitted
from twin.emulator.server import ReplicaServer
from twin.emulator.simulate import Workload, run_closed_loop

MODEL = catalog.model("Qwen/Qwen2.5-0.5B-Instruct")
GPU = catalog.gpu("L4")
NO_HOST = replace(
    fitted(),
    step_overhead_s=0.0,
    seq_overhead_s=0.0,
    request_overhead_s=0.0,
    v0_overhead_s_per_layer=0.0,
    v0_seq_overhead_s=0.0,
)


def _engine(eff: Efficiencies, *, async_scheduling: bool = True) -> Engine:
    limits = EngineLimits(
        kv_blocks=10_000,
        max_num_seqs=256,
        max_num_batched_tokens=2048,
        max_model_len=4096,
        async_scheduling=async_scheduling,
    )
    return Engine(limits, StepCostModel(MODEL, GPU, efficiencies=eff))


def test_a_step_costs_the_gpu_time_plus_a_fixed_and_a_per_sequence_host_cost() -> None:
    host = replace(NO_HOST, step_overhead_s=0.002, seq_overhead_s=0.00005)
    gpu_only = StepCostModel(MODEL, GPU, efficiencies=NO_HOST)
    with_host = StepCostModel(MODEL, GPU, efficiencies=host)
    for n in (1, 32, 256):
        args = (n, n * 300, n * 300)
        extra = with_host.step_seconds(*args, sequences=n) - gpu_only.step_seconds(*args, n)
        assert extra == pytest.approx(0.002 + n * 0.00005)


def test_v0_rows_use_their_own_per_layer_and_per_sequence_costs() -> None:
    eff = replace(NO_HOST, v0_overhead_s_per_layer=0.0001, v0_seq_overhead_s=0.0001)
    v0 = StepCostModel(MODEL, GPU, efficiencies=eff, generation="v0")
    base = StepCostModel(MODEL, GPU, efficiencies=NO_HOST, generation="v0")
    extra = v0.step_seconds(8, 800, 800, 8) - base.step_seconds(8, 800, 800, 8)
    assert extra == pytest.approx(MODEL.layers * 0.0001 + 8 * 0.0001)


@pytest.mark.parametrize("name", list(BOUNDS))
def test_every_parameter_outside_its_physical_range_is_refused(name: str) -> None:
    low, high = BOUNDS[name]
    with pytest.raises(ValueError, match=name):
        replace(fitted(), **{name: high * 1.01 + 1e-9})
    with pytest.raises(ValueError, match=name):
        replace(fitted(), **{name: low - 1e-9 if low else -1e-9})


def test_the_committed_parameters_charge_the_host_costs_vllm_v1_has() -> None:
    eff = fitted()
    assert eff.step_overhead_s > 0
    assert eff.seq_overhead_s > 0
    assert eff.request_overhead_s > 0


def test_the_request_overhead_is_added_to_every_time_to_first_token() -> None:
    def ttft(eff: Efficiencies) -> float:
        workload = Workload(concurrency=1, requests=3, prompt_tokens=256, output_tokens=[8])
        return run_closed_loop(_engine(eff), workload).ttft_percentile(50)

    with_overhead = replace(NO_HOST, request_overhead_s=0.02)
    assert ttft(with_overhead) - ttft(NO_HOST) == pytest.approx(0.02)


def test_a_request_reaching_a_busy_engine_joins_the_step_after_next() -> None:
    def steps_before_admission(async_scheduling: bool) -> int:
        engine = _engine(NO_HOST, async_scheduling=async_scheduling)
        engine.add(Sequence(prompt_tokens=16, max_output_tokens=50, arrival=0.0))
        plan = engine.schedule(0.0)
        assert plan is not None
        late = Sequence(prompt_tokens=16, max_output_tokens=5, arrival=plan.ends / 2)
        engine.add(late)  # while the first step runs: the next one is already planned
        now, steps = plan.ends, 0
        engine.complete(plan, now)
        while late.status == "waiting":
            plan = engine.schedule(now)
            assert plan is not None
            now = plan.ends
            engine.complete(plan, now)
            steps += 1
        return steps

    assert steps_before_admission(async_scheduling=False) == 1
    assert steps_before_admission(async_scheduling=True) == 2


def test_an_idle_engine_admits_a_request_at_once_even_with_async_scheduling() -> None:
    engine = _engine(NO_HOST)
    engine.add(Sequence(prompt_tokens=16, max_output_tokens=2, arrival=5.0))
    plan = engine.schedule(5.0)
    assert plan is not None and len(plan.scheduled) == 1


def test_an_idle_engine_asked_to_plan_before_its_request_arrived_starts_when_it_arrives() -> None:
    # The real-time driver plans in modelled time, which may trail the clock by a few ms: a
    # request handed over in between used to leave the engine with work and nothing to schedule.
    engine = _engine(NO_HOST)
    engine.add(Sequence(prompt_tokens=16, max_output_tokens=2, arrival=0.97), now=1.0)
    plan = engine.schedule(0.99)
    assert plan is not None
    assert plan.started == 1.0
    assert plan.scheduled[0][0].first_scheduled == 1.0


def test_queue_time_counts_from_when_the_engine_got_the_request() -> None:
    metrics = ReplicaMetrics(MODEL.name)
    seq = Sequence(prompt_tokens=16, max_output_tokens=1, arrival=1.0)
    seq.queued_at, seq.first_scheduled, seq.finished_at = 1.02, 1.05, 1.2
    seq.finish_reason = "length"
    metrics.record_finished(seq)
    assert metrics.registry.get_sample_value(
        "vllm:request_queue_time_seconds_sum", {"model_name": MODEL.name, "engine": "0"}
    ) == pytest.approx(0.03)


def test_the_driver_hands_a_request_over_after_the_overhead_and_an_abort_before_that_is_clean() -> (
    None
):
    eff = replace(NO_HOST, request_overhead_s=0.05)

    async def scenario() -> tuple[int, int, Sequence, Sequence, bool]:
        driver = EngineDriver(_engine(eff), ReplicaMetrics(MODEL.name))
        driver.start()
        kept = Sequence(prompt_tokens=16, max_output_tokens=2, arrival=driver.now())
        gone = Sequence(prompt_tokens=16, max_output_tokens=2, arrival=driver.now())
        driver.submit(kept)
        driver.submit(gone)
        driver.abort(gone)
        await asyncio.sleep(0.01)
        in_engine_early = driver.stats().waiting + driver.stats().running
        await asyncio.wait_for(driver.wait_idle(), 5)
        after = driver.stats().waiting + driver.stats().running
        await driver.stop()
        return in_engine_early, after, kept, gone, driver.engine.has_work

    early, after, kept, gone, busy = asyncio.run(scenario())
    assert early == 0  # still in the front end
    assert kept.first_token_at is not None
    assert kept.first_token_at - kept.arrival >= 0.05
    assert kept.queued_at is not None and kept.queued_at - kept.arrival >= 0.05
    assert gone.finish_reason == "abort" and gone.first_scheduled is None
    assert after == 0 and not busy


class _Conn:
    def __init__(self) -> None:
        self.response: tuple[int, bytes] | None = None

    def respond(self, status: int, body: bytes, content_type: str = "") -> None:
        self.response = (status, body)


def test_version_names_the_release_the_cluster_deploys() -> None:
    server = ReplicaServer(MODEL.name, "L4", max_model_len=2048)
    conn = _Conn()
    server.api.handle(HttpRequest("GET", "/version", {}, b"", True), conn)  # type: ignore[arg-type]
    assert conn.response is not None
    assert json.loads(conn.response[1]) == {"version": VLLM_VERSION.removeprefix("v")}
