"""The Pulumi test harness itself: each run of a program is independent of the runs before it."""

from __future__ import annotations

import asyncio

import pulumi
import pulumi_random as random

from tests.pulumi_mocks import run_function

PASSWORD = "random:index/randomPassword:RandomPassword"


def test_a_later_run_does_not_rewrite_what_an_earlier_one_recorded() -> None:
    def first_body() -> None:
        before = random.RandomPassword("before", length=8)
        random.RandomPassword("after", length=8, opts=pulumi.ResourceOptions(depends_on=[before]))
        pulumi.export("first", "yes")

    def second_body() -> None:
        random.RandomPassword("after", length=8)
        pulumi.export("second", "yes")

    first = run_function(first_body)
    second = run_function(second_body)
    assert first.depends_on(first.one(PASSWORD, "after")) == {"before"}
    assert second.depends_on(second.one(PASSWORD, "after")) == set()
    assert (set(first.outputs), set(second.outputs)) == ({"first"}, {"second"})


def test_a_run_after_asyncio_run_has_an_event_loop() -> None:
    """asyncio.run() (the emulator's tests) leaves no current loop; a run must not need one."""
    asyncio.run(asyncio.sleep(0))
    program = run_function(lambda: pulumi.export("after", "yes"))
    assert program.outputs == {"after": "yes"}
