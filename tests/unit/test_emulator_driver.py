"""The engine loop survives what clients do between two of its turns."""

from __future__ import annotations

import asyncio

from twin.emulator.engine import Sequence
from twin.emulator.server import ReplicaServer

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def test_a_request_aborted_before_the_loop_wakes_leaves_the_engine_serving() -> None:
    """A client that connects and drops at once: submit and abort land in one loop turn."""

    async def scenario() -> tuple[Sequence, bool]:
        driver = ReplicaServer(MODEL, "L4", max_model_len=2048).driver
        driver.start()
        await asyncio.sleep(0)  # the loop parks, waiting for work
        gone = Sequence(prompt_tokens=16, max_output_tokens=4, arrival=driver.now())
        driver.submit(gone)
        driver.abort(gone)
        await asyncio.wait_for(driver.wait_idle(), 2)
        kept = Sequence(prompt_tokens=16, max_output_tokens=4, arrival=driver.now())
        driver.submit(kept)
        await asyncio.wait_for(driver.wait_idle(), 5)
        alive = driver._task is not None and not driver._task.done()
        await driver.stop()
        return kept, alive

    kept, alive = asyncio.run(scenario())
    assert kept.finish_reason == "length"
    assert alive
