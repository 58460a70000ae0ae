"""Workload files: the built-in mix, request bodies per endpoint, errors that name the key."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from loadtest import workload
from loadtest.workload import RequestBuilder, WorkloadError


def test_default_mix_has_every_builtin_kind() -> None:
    mix = workload.load(None)
    assert mix.endpoint == "chat"
    sources = {t.prompts if isinstance(t.prompts, str) else "synthetic" for t in mix.tasks}
    assert sources == {"zh-poems", "zh-chat-ai", "en-chat", "synthetic"}
    assert all(t.max_tokens[0] <= t.max_tokens[1] for t in mix.tasks)


def test_chat_body_streams_with_usage_and_sampling() -> None:
    mix = workload.parse(
        {
            "tasks": [
                {
                    "name": "poems",
                    "prompts": "zh-poems",
                    "system": "你是诗人",
                    "max_tokens": [10, 20],
                    "sampling": {"temperature": 0.5, "top_p": 0.9, "frequency_penalty": 0.1},
                }
            ]
        }
    )
    name, raw = RequestBuilder(mix, "Qwen/Qwen2.5-7B-Instruct", random.Random(1)).next()
    body = json.loads(raw)
    assert name == "poems"
    assert body["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "你是诗人"}
    assert body["messages"][1]["content"] in workload.builtin_prompt_sets()["zh-poems"]
    assert 10 <= body["max_tokens"] <= 20
    assert (body["temperature"], body["top_p"], body["frequency_penalty"]) == (0.5, 0.9, 0.1)
    assert "你是诗人".encode() in raw


def test_completions_generate_and_overrides() -> None:
    mix = workload.parse({"tasks": [{"name": "s", "synthetic": {"prompt_tokens": 200}}]})
    completions = mix.with_endpoint("completions").with_max_tokens(7)
    body = json.loads(RequestBuilder(completions, "m", random.Random(2)).next()[1])
    assert body["max_tokens"] == 7 and "messages" not in body
    assert 180 <= len(body["prompt"].split()) <= 200
    legacy = json.loads(
        RequestBuilder(mix.with_endpoint("generate"), "m", random.Random(3)).next()[1]
    )
    assert set(legacy) == {"prompt", "max_tokens", "stream"}
    assert completions.path == "/v1/completions"


def test_weights_pick_tasks_in_proportion() -> None:
    mix = workload.parse(
        {"tasks": [{"name": "a", "prompts": ["x"], "weight": 3}, {"name": "b", "prompts": ["y"]}]}
    )
    builder = RequestBuilder(mix, "m", random.Random(4))
    names = [builder.next()[0] for _ in range(4000)]
    assert names.count("a") / len(names) == pytest.approx(0.75, abs=0.03)


def test_a_body_changed_by_its_caller_leaves_the_next_one_alone() -> None:
    mix = workload.parse(
        {"tasks": [{"name": "a", "prompts": ["x"], "sampling": {"temperature": 0.5}}]}
    )
    for endpoint in ("chat", "generate"):
        builder = RequestBuilder(mix.with_endpoint(endpoint), "m", random.Random(5))
        builder.body(0, "x", 4)["temperature"] = 2.0
        assert json.loads(builder.next()[1])["temperature"] == 0.5


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"tasks": [{"name": "a", "prompts": "zh-poem"}]},
            "tasks.0.prompts: unknown built-in prompt set 'zh-poem'",
        ),
        (
            {"tasks": [{"name": "a", "prompts": "en-chat", "max_tokens": [300, 100]}]},
            "tasks.0.max_tokens: min 300 is greater than max 100; write [100, 300]",
        ),
        ({"tasks": [{"name": "a"}]}, "needs exactly one of `prompts`"),
        (
            {"tasks": [{"name": "a", "prompts": "en-chat", "temprature": 1}]},
            "tasks.0.temprature: is not a workload setting",
        ),
        (
            {"tasks": [{"name": "a", "prompts": ["x"]}, {"name": "a", "prompts": ["y"]}]},
            "repeated: a",
        ),
        ({"tasks": []}, "tasks: List should have at least 1 item"),
        (
            {"endpoint": "embeddings", "tasks": [{"name": "a", "prompts": ["x"]}]},
            "endpoint: Input should be 'chat', 'completions' or 'generate'",
        ),
        (
            {"think_time_s": -1, "tasks": [{"name": "a", "prompts": ["x"]}]},
            "think_time_s: -1: the minimum is 0",
        ),
        (["not", "a", "mapping"], "the top level must be a mapping"),
        (
            # YAML's .inf: config.json stores the mix, and JSON has no infinity
            {"tasks": [{"name": "a", "prompts": ["x"], "weight": float("inf")}]},
            "tasks.0.weight: Input should be a finite number",
        ),
    ],
)
def test_workload_errors_name_the_key(document: object, expected: str) -> None:
    with pytest.raises(WorkloadError) as caught:
        workload.parse(document, "mix.yaml")
    assert "invalid workload mix.yaml" in str(caught.value)
    assert expected in str(caught.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"workload file .*missing\.yaml: no such file"):
        workload.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [\n", encoding="utf-8")
    with pytest.raises(WorkloadError, match=r"bad\.yaml is not valid YAML"):
        workload.load(bad)
