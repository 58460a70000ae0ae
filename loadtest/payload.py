"""The run's payload: what the CLI hands the load-test pods in a ConfigMap (``run.json``).

Everything the master needs to run the plan exactly as a local run would (the flags as given,
the workload mix as resolved, the stack's fleet for the Prometheus queries, the command line
for ``config.json``) and what the workers need (the mix). Never the API key: the pods read
it from ``VLLM_API_KEY``, which comes from a Secret (``LoadTestSpec`` refuses a payload that
holds it). Pure pydantic: the CLI builds it without Locust, the pods read it back.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.run_cost import LoadGenInfo
from loadtest.cluster_target import ClusterFleet
from loadtest.plans import Plan
from loadtest.run_options import RunOptions
from loadtest.workload import Workload

PAYLOAD_VERSION = 1


class PayloadError(ValueError):
    """A payload the pods cannot run (another version's, or a damaged one)."""


class RunPayload(BaseModel):
    """``run.json`` in the pods."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    payload_version: int = PAYLOAD_VERSION
    options: RunOptions
    workload: Workload
    cluster: ClusterFleet
    loadgen: LoadGenInfo | None = None
    """The load-generator nodes as sized (``config.json`` records them: they price the run)."""
    command: list[str] = Field(default_factory=list)
    sample_interval_s: float = Field(default=2.0, gt=0)

    def plan(self) -> Plan:
        """The plan the flags describe (checked again here: a payload is input like any other)."""
        return self.options.load_plan()

    @classmethod
    def read(cls, data: Mapping[str, object]) -> RunPayload:
        """Read a payload; ``PayloadError`` says what is wrong with it, in one line."""
        version = data.get("payload_version")
        if version != PAYLOAD_VERSION:
            raise PayloadError(
                f"the run payload has version {version!r} and this code reads "
                f"{PAYLOAD_VERSION}: the pods run another qwen-stress than the CLI"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            raise PayloadError(f"the run payload is not valid: {where}: {first['msg']}") from None
