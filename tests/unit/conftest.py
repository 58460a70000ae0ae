"""Shared runs of the real program: each example stack is run once per test session."""

from __future__ import annotations

from functools import cache

import pytest

from domain.stack_config import StackConfig, load_stack_file
from tests.pulumi_mocks import ROOT, Program, run_program


@cache
def example(stack: str) -> Program:
    """``pulumi preview`` of ``Pulumi.<stack>.yaml`` as it is, cached: tests only read it."""
    return run_program(stack)


@pytest.fixture
def dev() -> Program:
    return example("dev")


@pytest.fixture
def a10g() -> Program:
    return example("a10g")


@pytest.fixture
def dev_config() -> StackConfig:
    return load_stack_file(ROOT / "Pulumi.dev.yaml")
