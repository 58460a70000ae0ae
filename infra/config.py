"""The running Pulumi program's stack configuration, typed by ``domain.stack_config``.

The schema and its checks are pure (the CLI reads stack files with them, no Pulumi runtime);
this module is the one place the Pulumi program reads its configuration through the engine.
"""

from __future__ import annotations

import pulumi
from pulumi.runtime import config as runtime_config

from domain.stack_config import StackConfig, parse


def load() -> StackConfig:
    """Read the running Pulumi program's configuration (``pulumi up``, or mocks in tests)."""
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    aws = pulumi.Config("aws")
    return parse(values, region=aws.get("region"), profile=aws.get("profile"))
