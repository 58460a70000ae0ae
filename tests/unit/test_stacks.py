"""Every example stack runs the real program under mocks, so the examples can never rot."""

from __future__ import annotations

import pulumi
import pytest

from tests.pulumi_mocks import example_stacks, run_program


def test_there_are_example_stacks() -> None:
    assert {"dev", "a10g"} <= set(example_stacks())


@pytest.mark.parametrize("stack", example_stacks())
def test_example_stack_runs(stack: str) -> None:
    program = run_program(stack)
    assert program.outputs["gpuInstanceType"].startswith(("g4dn.", "g5.", "g6."))


def test_bad_config_stops_the_program_before_any_resource() -> None:
    with pytest.raises(pulumi.RunError, match=r"qwen-stress:gpu\.maxNodes"):
        run_program(
            "dev", overrides={"qwen-stress:gpu": {"instanceType": "g4dn.xlarge", "maxNodes": 0}}
        )
