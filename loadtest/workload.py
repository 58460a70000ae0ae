"""The workload mix: which prompts, how long the answers, which sampling, how often each.

A workload file (YAML) lists tasks with weights; every request picks one task by weight, one
prompt from its set and a ``max_tokens`` from its range, and becomes one request body for the
chosen endpoint. Built-in prompt sets live in ``loadtest/data/prompts.yaml``; a task can also
ask for synthetic prompts of a target token length, or list its own prompts inline.
"""

from __future__ import annotations

import json
import random
from functools import cache
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain.validation import check_order, error_lines
from domain.yaml_input import YamlInputError, read_yaml_file

Endpoint = Literal["chat", "completions", "generate"]

ENDPOINT_PATHS: dict[str, str] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "generate": "/generate",
}

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
"""Unknown keys are mistakes; ``.inf`` and ``.nan`` are too (the mix is written to config.json)."""


MAX_EXPANDED_CHARS = 4 * 1024 * 1024
"""Characters of text a workload may hold once YAML aliases are expanded. Every worker holds the
mix and ``config.json`` stores it: a file of a megabyte (``domain.yaml_input``) that repeats a
long prompt through ``*alias`` references could otherwise stand for gigabytes."""
MAX_WEIGHT = 1_000_000.0
"""Weights are relative shares; bounded so that their sum stays a finite number."""


class WorkloadError(ValueError):
    """A workload file is wrong; the message names the file, the key and the fix."""


class Sampling(BaseModel):
    """Sampling parameters sent with every request of a task (omitted ones use the server's)."""

    model_config = _STRICT

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)

    def body(self) -> dict[str, float]:
        """The set parameters, as request body fields."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Synthetic(BaseModel):
    """Prompts of about ``prompt_tokens`` tokens made of random common words (no cache hits)."""

    model_config = _STRICT

    prompt_tokens: int = Field(ge=16, le=131072)


def _range(value: Any, what: str, low: float) -> tuple[float, float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif isinstance(value, list | tuple) and len(value) == 2:
        pair = (float(value[0]), float(value[1]))
    else:
        raise ValueError(f"{value!r}: write one {what} or a [min, max] pair")
    if pair[0] < low:
        raise ValueError(f"{value!r}: the minimum is {low:g}")
    check_order(("min", pair[0]), ("max", pair[1]), fix=f"write [{pair[1]:g}, {pair[0]:g}]")
    return pair


class Task(BaseModel):
    """One kind of request in the mix."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0, le=MAX_WEIGHT)
    prompts: str | list[str] | None = None
    """A built-in prompt set's name, or a list of prompts."""
    synthetic: Synthetic | None = None
    system: str | None = None
    """An optional system message (chat endpoint only)."""
    max_tokens: tuple[int, int] = (128, 128)
    """Output token budget: one number or a [min, max] range drawn uniformly."""
    sampling: Sampling = Field(default_factory=Sampling)

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _max_tokens(cls, value: Any) -> tuple[int, int]:
        low, high = _range(value, "token count", 1)
        if low != int(low) or high != int(high):
            raise ValueError(f"{value!r}: token counts are whole numbers")
        return int(low), int(high)

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, str) and value not in builtin_prompt_sets():
            known = ", ".join(sorted(builtin_prompt_sets()))
            raise ValueError(
                f"unknown built-in prompt set {value!r}; built in: {known} "
                "(or give a list of prompts, or `synthetic: {prompt_tokens: N}`)"
            )
        if isinstance(value, list) and not value:
            raise ValueError("the prompt list is empty; give at least one prompt")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Task:
        if (self.prompts is None) == (self.synthetic is None):
            raise ValueError(
                f"task {self.name!r} needs exactly one of `prompts` (a set name or a list) "
                "and `synthetic` ({prompt_tokens: N})"
            )
        return self

    def prompt_list(self) -> list[str]:
        """The prompts this task draws from (empty for synthetic tasks)."""
        if isinstance(self.prompts, str):
            return builtin_prompt_sets()[self.prompts]
        return list(self.prompts or [])


class Workload(BaseModel):
    """The whole mix: endpoint, timeouts, think time and the weighted tasks."""

    model_config = _STRICT

    endpoint: Endpoint = "chat"
    timeout_s: float = Field(default=600.0, gt=0, le=3600)
    think_time_s: tuple[float, float] = (0.0, 0.0)
    """Pause between one user's requests: a number or a [min, max] range (seconds)."""
    tasks: list[Task] = Field(min_length=1)

    @field_validator("think_time_s", mode="before")
    @classmethod
    def _think(cls, value: Any) -> tuple[float, float]:
        return _range(value, "number of seconds", 0)

    @model_validator(mode="after")
    def _unique_names(self) -> Workload:
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names must be unique; repeated: {', '.join(dupes)}")
        return self

    def with_max_tokens(self, max_tokens: int | None) -> Workload:
        """The same mix with every task's ``max_tokens`` fixed (``--max-tokens``)."""
        if max_tokens is None:
            return self
        tasks = [t.model_copy(update={"max_tokens": (max_tokens, max_tokens)}) for t in self.tasks]
        return self.model_copy(update={"tasks": tasks})

    def with_endpoint(self, endpoint: Endpoint | None) -> Workload:
        """The same mix against another endpoint (``--endpoint``)."""
        return self if endpoint is None else self.model_copy(update={"endpoint": endpoint})

    @property
    def path(self) -> str:
        """The URL path requests go to."""
        return ENDPOINT_PATHS[self.endpoint]


@cache
def builtin_prompt_sets() -> dict[str, list[str]]:
    """The prompt sets shipped with the package, by name."""
    text = resources.files("loadtest").joinpath("data", "prompts.yaml").read_text(encoding="utf-8")
    sets: dict[str, list[str]] = yaml.safe_load(text)
    return sets


def _format(source: str, err: ValidationError) -> str:
    lines = error_lines(
        err,
        lambda loc: loc or "(top level)",
        missing="is required",
        unknown="is not a workload setting; see the README (Workload file) for the keys",
    )
    return f"invalid workload {source}:\n  " + "\n  ".join(lines)


def parse(data: Any, source: str = "(inline)") -> Workload:
    """Validate a workload document; ``WorkloadError`` lists every wrong key at once."""
    if not isinstance(data, dict):
        raise WorkloadError(f"invalid workload {source}: the top level must be a mapping of keys")
    try:
        return Workload.model_validate(data)
    except ValidationError as err:
        raise WorkloadError(_format(source, err)) from None


def _text_chars(data: Any, limit: int) -> int:
    """Characters of every key and string in ``data``, counted up to ``limit + 1``."""
    total = 0
    stack = [data]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return total


def load(path: Path | None) -> Workload:
    """Read a workload file, or the built-in default mix when ``path`` is None.

    The file is bounded (its size, UTF-8, how many values its aliases expand to: see
    ``domain.yaml_input``), and so is the text it stands for (``MAX_EXPANDED_CHARS``).
    """
    if path is None:
        text = resources.files("loadtest").joinpath("data", "workload.yaml").read_text("utf-8")
        return parse(yaml.safe_load(text), "(built-in default)")
    try:
        data = read_yaml_file(path, "workload file")
    except YamlInputError as err:
        raise WorkloadError(str(err)) from None
    if data is None:
        raise WorkloadError(
            f"workload file {path} is empty; see the README (Workload file) for the keys"
        )
    if _text_chars(data, MAX_EXPANDED_CHARS) > MAX_EXPANDED_CHARS:
        raise WorkloadError(
            f"workload file {path} stands for more than {MAX_EXPANDED_CHARS:,} characters of "
            f"text (its aliases repeat long values); the limit keeps every worker's copy small: "
            "write fewer or shorter prompts, or use synthetic prompts"
        )
    return parse(data, str(path))


@cache
def _words() -> list[str]:
    """Common short English words, each one token for Qwen's tokenizer (with a leading space).

    A synthetic prompt of N words is then close to N tokens; the server's ``usage`` is the truth.
    """
    text = resources.files("loadtest").joinpath("data", "synthetic_words.txt").read_text("utf-8")
    return text.split()


def synthetic_prompt(tokens: int, rng: random.Random) -> str:
    """About ``tokens`` tokens of random words, so no two prompts share a cached prefix."""
    words = rng.choices(_words(), k=max(tokens - 12, 1))
    return "Repeat the following words, then say what they have in common: " + " ".join(words)


class RequestBuilder:
    """Turns the workload into request bodies; one per request, drawn with its own RNG."""

    def __init__(self, workload: Workload, model: str, rng: random.Random) -> None:
        self.workload = workload
        self.model = model
        self.rng = rng
        tasks = workload.tasks
        # What rng.choices(range(n), weights) would rebuild on every call: same draws.
        self._range = range(len(tasks))
        self._cum_weights = list(accumulate(t.weight for t in tasks))
        self._prompts = [t.prompt_list() for t in tasks]
        # Never mutated: body() spreads each into a new dict.
        self._sampling = [t.sampling.body() for t in tasks]

    def next(self) -> tuple[str, bytes]:
        """Pick a task by weight and return ``(task name, JSON body)``."""
        rng = self.rng
        index = rng.choices(self._range, cum_weights=self._cum_weights)[0]
        task = self.workload.tasks[index]
        if task.synthetic is not None:
            prompt = synthetic_prompt(task.synthetic.prompt_tokens, rng)
        else:
            prompt = rng.choice(self._prompts[index])
        low, high = task.max_tokens
        max_tokens = rng.randint(low, high)
        return task.name, json.dumps(
            self.body(index, prompt, max_tokens), ensure_ascii=False
        ).encode()

    def body(self, index: int, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The JSON body of one request of task ``index`` in the endpoint's dialect."""
        task = self.workload.tasks[index]
        sampling = self._sampling[index]
        endpoint = self.workload.endpoint
        if endpoint == "generate":
            return {"prompt": prompt, "max_tokens": max_tokens, "stream": True, **sampling}
        body: dict[str, Any] = {"model": self.model}
        if endpoint == "chat":
            messages = [{"role": "system", "content": task.system}] if task.system else []
            body["messages"] = [*messages, {"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body.update(
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            **sampling,
        )
        return body
