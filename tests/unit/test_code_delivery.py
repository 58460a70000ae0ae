"""Which code the pods get: the release's image (by digest) or this checkout's wheel."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import pytest

from loadtest.cloud import delivery
from loadtest.cloud.spec import CodeImage, CodeWheel

DIGEST = "sha256:" + "e3" * 32
TOKEN = "anonymous-pull-token"


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "release")
    _git(tmp_path, "tag", "v0.1.0")
    return tmp_path


def test_only_a_clean_checkout_of_the_release_tag_counts_as_released(checkout: Path) -> None:
    assert delivery.released("0.1.0", checkout)
    assert not delivery.released("0.2.0", checkout)  # another version's tag
    (checkout / "pyproject.toml").write_text("[project]\nname = 'changed'\n")
    assert not delivery.released("0.1.0", checkout)  # local edits are not in the image
    _git(checkout, "commit", "-qam", "after the release")
    assert not delivery.released("0.1.0", checkout)  # HEAD moved past the tag


def test_outside_a_checkout_only_plain_release_numbers_count(tmp_path: Path) -> None:
    assert delivery.released("1.4.2", tmp_path)
    for version in ("1.4.2.dev3", "1.5.0rc1", "1.4.2+g1234"):
        assert not delivery.released(version, tmp_path)


class _Registry(BaseHTTPRequestHandler):
    """The OCI distribution API as GHCR answers anonymous pulls: a 401 challenge, a token."""

    tags: ClassVar[set[str]] = {"0.1.0"}
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path.startswith("/token?"):
            body = b'{"token": "' + TOKEN.encode() + b'"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def do_HEAD(self) -> None:
        self.requests.append(self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            host = self.headers["Host"]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="http://{host}/token",service="registry",'
                'scope="repository:o/qwen-stress:pull"',
            )
            self.end_headers()
            return
        tag = self.path.rsplit("/", 1)[1]
        if tag not in self.tags:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Docker-Content-Digest", DIGEST)
        self.end_headers()


@pytest.fixture
def registry() -> Iterator[str]:
    _Registry.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}/o/qwen-stress"
    server.shutdown()
    server.server_close()


def test_the_registry_is_asked_for_the_digest_with_an_anonymous_token(registry: str) -> None:
    oci = delivery.OciRegistry(timeout_s=5, scheme="http")
    assert oci.digest(registry, "0.1.0") == DIGEST
    assert oci.digest(registry, "9.9.9") is None
    assert "/token?service=registry&scope=repository%3Ao%2Fqwen-stress%3Apull" in _Registry.requests


def _no_build(root: Path, out: Path) -> Path:
    raise AssertionError("the released image needs no wheel")


def test_a_release_with_an_image_runs_it_pinned_by_digest(checkout: Path, registry: str) -> None:
    choice = delivery.choose(
        "0.1.0",
        checkout,
        checkout / "dist",
        registry=delivery.OciRegistry(5, "http"),
        repository=registry,
        build=_no_build,
    )
    assert choice.code == CodeImage(image=f"{registry}:0.1.0@{DIGEST}")
    assert "released image" in choice.reason


def _fake_wheel(root: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "qwen_stress-0.1.0-py3-none-any.whl"
    path.write_bytes(b"PK fake")
    return path


class _Unreachable:
    def digest(self, repository: str, tag: str) -> str | None:
        raise OSError("connection refused")


@pytest.mark.parametrize(
    ("version", "registry_", "why"),
    [
        ("0.1.0", _Unreachable(), "could not ask"),
        ("0.2.0", _Unreachable(), "not a clean checkout of its release tag"),
    ],
)
def test_otherwise_the_checkout_wheel_is_shipped_and_the_user_told_why(
    checkout: Path, version: str, registry_: delivery.Registry, why: str
) -> None:
    choice = delivery.choose(
        version,
        checkout,
        checkout / "dist",
        registry=registry_,
        repository="r.io/o/q",
        build=_fake_wheel,
    )
    assert isinstance(choice.code, CodeWheel)
    assert choice.code.content == b"PK fake"
    assert why in choice.reason and "port 443" in choice.reason


def test_a_release_missing_from_the_registry_ships_the_wheel(checkout: Path, registry: str) -> None:
    _Registry.tags = set()
    try:
        choice = delivery.choose(
            "0.1.0",
            checkout,
            checkout / "dist",
            registry=delivery.OciRegistry(5, "http"),
            repository=registry,
            build=_fake_wheel,
        )
    finally:
        _Registry.tags = {"0.1.0"}
    assert isinstance(choice.code, CodeWheel)
    assert "was not found" in choice.reason


def test_building_needs_a_recent_setuptools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: "65.5.0" if name == "setuptools" else real(name)
    )
    with pytest.raises(delivery.DeliveryError, match="setuptools 77 or newer"):
        delivery.build_wheel(tmp_path, tmp_path / "out")
