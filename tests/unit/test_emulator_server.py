"""Replicas built from one prebuilt spec and counter share those, and nothing stateful."""

from __future__ import annotations

from twin.emulator.replica_spec import replica_spec
from twin.emulator.server import ReplicaServer
from twin.emulator.tokens import token_counter

MODEL = "Qwen/Qwen2.5-7B-Instruct-AWQ"


def test_a_prebuilt_spec_and_counter_are_shared_and_every_replica_keeps_its_own_state() -> None:
    built = ReplicaServer(MODEL, "A10G", max_model_len=2048)
    spec = replica_spec(MODEL, "A10G", max_model_len=2048)
    counter = token_counter(MODEL)
    a = ReplicaServer(MODEL, "A10G", spec=spec, counter=counter)
    b = ReplicaServer(MODEL, "A10G", spec=spec, counter=counter)
    assert a.spec is b.spec is spec
    assert a.counter is b.counter is counter
    assert spec == built.spec
    assert type(counter) is type(built.counter) and counter.name == built.counter.name
    assert a.api.settings == b.api.settings
    assert (a.api.settings.served_model, a.api.settings.max_model_len) == (
        built.api.settings.served_model,
        built.api.settings.max_model_len,
    )
    assert a.driver is not b.driver
    assert a.driver.engine is not b.driver.engine
    assert a.metrics is not b.metrics and a.registry is not b.registry
    assert a.lag is not b.lag
    assert a.api is not b.api
