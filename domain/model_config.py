"""The ``qwen-stress:model`` stack setting: which Qwen2.5 checkpoint vLLM serves, and how."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from domain import catalog

_SERVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")


class ModelConfig(BaseModel):
    """What vLLM serves; checked against the GPU by ``domain.fit`` at config time."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name: str = Field(
        default="Qwen/Qwen2.5-7B-Instruct-AWQ",
        description="Hugging Face id of the checkpoint (Qwen2.5 Instruct, or its -AWQ variant).",
    )
    served_name: str | None = Field(
        default=None,
        description="Model name clients send (vLLM --served-model-name); defaults to `name`.",
    )
    max_model_len: int = Field(
        default=8192,
        description="Longest prompt + completion in tokens (vLLM --max-model-len).",
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        description="Fraction of GPU memory vLLM may use (--gpu-memory-utilization).",
    )
    tensor_parallel: int = Field(
        default=1, description="GPUs per replica (--tensor-parallel-size)."
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        catalog.model(value)
        return value

    @field_validator("served_name")
    @classmethod
    def _served_name(cls, value: str | None) -> str | None:
        # It lands in PromQL label matchers and HTTP request bodies: keep it to safe characters.
        if value is not None and not _SERVED_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r}: use 1-128 letters, digits, '.', '_', '/' or '-', starting with a "
                "letter or digit (clients send it as the model name)"
            )
        return value

    @property
    def served(self) -> str:
        """The name clients use in requests and the ``model_name`` label on vLLM's metrics."""
        return self.served_name or self.name
