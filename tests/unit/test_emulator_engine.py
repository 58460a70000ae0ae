"""The emulator's scheduler and step-time model, driven in virtual time (no wall clock)."""

from __future__ import annotations

import pytest

from domain import catalog
from domain.fit import FitError
from twin.emulator.engine import Engine, EngineLimits, Sequence
from twin.emulator.perf_model import StepCostModel
from twin.emulator.replica_spec import replica_spec
from twin.emulator.simulate import Workload, run_closed_loop

MODEL = catalog.model("Qwen/Qwen2.5-7B-Instruct")
GPU = catalog.gpu("A10G")


def _engine(
    kv_blocks: int = 10_000,
    max_num_seqs: int = 256,
    budget: int = 2048,
    max_len: int = 32768,
    block_tokens: int = 16,
) -> Engine:
    limits = EngineLimits(
        kv_blocks=kv_blocks,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=budget,
        max_model_len=max_len,
        block_tokens=block_tokens,
    )
    return Engine(limits, StepCostModel(MODEL, GPU))


def _run(engine: Engine, now: float = 0.0, steps: int = 10_000) -> float:
    for _ in range(steps):
        plan = engine.schedule(now)
        if plan is None:
            break
        now = plan.ends
        engine.complete(plan, now)
    return now


def test_admission_is_bounded_by_max_num_seqs() -> None:
    engine = _engine(max_num_seqs=2)
    seqs = [Sequence(prompt_tokens=10, max_output_tokens=5, arrival=0) for _ in range(3)]
    for s in seqs:
        engine.add(s)
    plan = engine.schedule(0)
    assert plan is not None
    assert [s for s, _ in plan.scheduled] == seqs[:2]
    assert engine.stats().running == 2
    assert engine.stats().waiting == 1


def test_admission_is_bounded_by_free_kv_blocks_in_fcfs_order() -> None:
    # 10 blocks of 16 tokens; the first prompt takes 8, so the second (3 blocks) must wait, and
    # the small third one waits behind it (head-of-line, as vLLM's FCFS queue).
    engine = _engine(kv_blocks=10)
    first = Sequence(prompt_tokens=128, max_output_tokens=4, arrival=0)
    second = Sequence(prompt_tokens=40, max_output_tokens=4, arrival=0)
    third = Sequence(prompt_tokens=8, max_output_tokens=4, arrival=0)
    for s in (first, second, third):
        engine.add(s)
    plan = engine.schedule(0)
    assert plan is not None
    assert [s for s, _ in plan.scheduled] == [first]
    assert engine.used_blocks == 8
    _run(engine)
    assert all(s.status == "finished" for s in (first, second, third))
    assert engine.used_blocks == 0


def test_chunked_prefill_respects_the_token_budget() -> None:
    engine = _engine(budget=2048)
    seq = Sequence(prompt_tokens=5000, max_output_tokens=3, arrival=0)
    engine.add(seq)
    chunks = []
    now = 0.0
    while seq.first_token_at is None:
        plan = engine.schedule(now)
        assert plan is not None
        chunks.append(sum(n for _, n in plan.scheduled))
        now = plan.ends
        engine.complete(plan, now)
    assert chunks == [2048, 2048, 904]
    assert seq.output_tokens == 1


def test_decode_joins_prefill_chunks_in_one_step() -> None:
    engine = _engine(budget=2048)
    decoding = Sequence(prompt_tokens=16, max_output_tokens=50, arrival=0)
    engine.add(decoding)
    _run(engine, steps=2)
    engine.add(Sequence(prompt_tokens=4000, max_output_tokens=2, arrival=0))
    plan = engine.schedule(1.0)
    assert plan is not None
    assert [n for _, n in plan.scheduled] == [1, 2047]


def test_kv_exhaustion_preempts_the_latest_sequence_and_recomputes_it() -> None:
    # Two sequences fit at admission (2 x 2 blocks of 4) but not as they grow: the later one is
    # preempted, requeued first, recomputed, and both still finish with every block freed.
    engine = _engine(kv_blocks=6, max_len=64, block_tokens=4)
    early = Sequence(prompt_tokens=8, max_output_tokens=12, arrival=0)
    late = Sequence(prompt_tokens=8, max_output_tokens=12, arrival=0)
    engine.add(early)
    engine.add(late)
    _run(engine)
    assert engine.preemptions_total >= 1
    assert late.preemptions >= 1
    assert early.preemptions == 0
    assert early.output_tokens == late.output_tokens == 12
    assert engine.used_blocks == 0


def test_step_time_grows_with_batch() -> None:
    cost = StepCostModel(MODEL, GPU)
    times = [
        cost.step_seconds(n, kv_tokens_read=n * 500, attention_pairs=n * 500, sequences=n)
        for n in (1, 16, 64, 256)
    ]
    assert times == sorted(times)
    assert times[-1] > 1.5 * times[0]


def test_inter_token_latency_grows_with_concurrency() -> None:
    def tpot(concurrency: int) -> float:
        workload = Workload(concurrency, concurrency, prompt_tokens=200, output_tokens=[100])
        return run_closed_loop(_engine(), workload).tpot_median()

    assert tpot(1) < tpot(32) < tpot(128)


def test_abort_frees_kv_blocks_of_running_and_waiting_sequences() -> None:
    engine = _engine()
    running = Sequence(prompt_tokens=100, max_output_tokens=500, arrival=0)
    engine.add(running)
    _run(engine, steps=3)
    waiting = Sequence(prompt_tokens=100, max_output_tokens=5, arrival=0)
    engine.add(waiting)
    assert engine.used_blocks > 0
    assert engine.abort(running, 1.0)
    assert engine.used_blocks == 0
    assert running.finish_reason == "abort"
    assert engine.abort(waiting, 1.0)
    assert not engine.has_work
    assert not engine.abort(running, 2.0)


def test_abort_during_a_step_drops_its_token() -> None:
    engine = _engine()
    seq = Sequence(prompt_tokens=10, max_output_tokens=5, arrival=0)
    engine.add(seq)
    plan = engine.schedule(0)
    assert plan is not None
    engine.abort(seq, 0.001)
    result = engine.complete(plan, plan.ends)
    assert result.new_tokens == []
    assert seq.output_tokens == 0


def test_prefix_cache_skips_a_repeated_prompt() -> None:
    engine = _engine()
    first = Sequence(prompt_tokens=1000, max_output_tokens=2, arrival=0, prefix_key=7)
    engine.add(first)
    _run(engine)
    again = Sequence(prompt_tokens=1000, max_output_tokens=2, arrival=0, prefix_key=7)
    other = Sequence(prompt_tokens=1000, max_output_tokens=2, arrival=0, prefix_key=8)
    engine.add(again)
    engine.add(other)
    plan = engine.schedule(1.0)
    assert plan is not None
    assert dict(plan.scheduled) == {again: 1000 - 992, other: 1000}


def test_request_longer_than_max_model_len_is_refused() -> None:
    engine = _engine(max_len=1024)
    with pytest.raises(ValueError, match="max_model_len 1024"):
        engine.add(Sequence(prompt_tokens=1000, max_output_tokens=100, arrival=0))


@pytest.mark.parametrize("gpu", sorted(catalog.gpus()))
def test_single_stream_decode_never_beats_the_bandwidth_bound(gpu: str) -> None:
    for name in catalog.models():
        try:
            spec = replica_spec(name, gpu, max_model_len=4096)
        except FitError:
            continue
        workload = Workload(1, 1, prompt_tokens=1, output_tokens=[256])
        speed = run_closed_loop(spec.new_engine(), workload).output_tokens_per_s
        bound = spec.gpu.hbm_bytes_per_s / spec.model.weight_bytes
        assert speed < bound, f"{name} on {gpu}: {speed:.1f} tok/s beats {bound:.1f}"


def test_replica_spec_refuses_what_vllm_would() -> None:
    with pytest.raises(FitError, match="T4 leaves about"):
        replica_spec("Qwen/Qwen2.5-7B-Instruct", "T4")
    with pytest.raises(catalog.CatalogError, match="unknown GPU 'B200'"):
        replica_spec("Qwen/Qwen2.5-7B-Instruct", "B200")
    with pytest.raises(FitError, match="needs 16 L4 GPUs"):
        replica_spec("Qwen/Qwen2.5-7B-Instruct", "L4", tensor_parallel=16)
