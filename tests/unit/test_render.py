"""What the rehearsal writes for a reviewer: secrets hidden, the names of what they hold kept."""

from __future__ import annotations

from loadtest.cloud.render import SECRET_SHOWN, SECRET_SIG, public, reveal


def _secret(value: object) -> dict[str, object]:
    return {SECRET_SIG[0]: SECRET_SIG[1], "value": value}


def test_a_secret_map_keeps_its_keys_and_hides_its_values() -> None:
    body = {"kind": "Secret", "stringData": _secret({"api-key": "sk-1234"}), "port": 8080.0}
    shown = public(body)
    assert shown == {"kind": "Secret", "stringData": {"api-key": SECRET_SHOWN}, "port": 8080}
    assert "sk-1234" not in repr(shown)


def test_a_secret_value_is_hidden_and_revealed_only_on_request() -> None:
    body = {"env": [{"name": "TOKEN", "value": _secret("t0k")}]}
    assert public(body) == {"env": [{"name": "TOKEN", "value": SECRET_SHOWN}]}
    assert reveal(body) == {"env": [{"name": "TOKEN", "value": "t0k"}]}
