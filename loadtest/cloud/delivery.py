"""How the load-test code reaches the pods: the released image, or this checkout's wheel.

A checkout whose ``HEAD`` is the release tag ``v<version>`` with no local changes (or an
installed release) runs the image ``.github/workflows/release-image.yml`` published for that
version, pinned to the digest the registry reports. Anything else (a branch, local edits, no
image found) ships the project's wheel, built here with ``pip wheel --no-deps``: the stack
carries it in a ConfigMap and an init container installs it, with the committed hashed lock, on
the pinned Python image (``loadtest.cloud.manifests.install_command``). Neither path needs
Docker on the user's machine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Protocol

from domain import versions
from loadtest.cloud.spec import CodeImage, CodeWheel

DIST = "qwen-stress"
LOCK_RESOURCE = "pod-requirements.txt"
BUILD_TIMEOUT_S = 180.0
REGISTRY_TIMEOUT_S = 10.0
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
RELEASE_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")
"""A public release: no ``.dev``, ``rc`` or ``+local`` part, which never get an image."""


class DeliveryError(RuntimeError):
    """The code could not be packaged for the pods; the message says why and what to do."""


def pod_lock() -> str:
    """The committed, hashed lock of every third-party package the pods import."""
    return resources.files("loadtest.cloud").joinpath("data", LOCK_RESOURCE).read_text("utf-8")


def project_version() -> str:
    """The installed project's version (what a released image is tagged with)."""
    return metadata.version(DIST)


def source_root() -> Path:
    """The directory holding ``pyproject.toml`` for an editable install or a checkout."""
    return Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False
    )


def released(version: str, root: Path) -> bool:
    """Whether the code here is exactly release ``version`` (so its image holds this code).

    In a git checkout: ``HEAD`` carries the tag ``v<version>`` and no tracked file differs from
    it. Outside one (an installed release): the version is a plain release number.
    """
    if RELEASE_VERSION.fullmatch(version) is None:
        return False
    if not (root / ".git").exists():
        return True
    tags = _git(root, "tag", "--points-at", "HEAD")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    if tags.returncode != 0 or dirty.returncode != 0:
        return False
    return f"v{version}" in tags.stdout.split() and not dirty.stdout.strip()


class Registry(Protocol):
    """Asks a container registry for an image's digest (a seam: tests use a loopback fake)."""

    def digest(self, repository: str, tag: str) -> str | None:
        """``sha256:...`` of ``repository:tag``, or ``None`` when the registry has no such tag."""
        ...


@dataclass(frozen=True)
class OciRegistry:
    """The OCI distribution API, with anonymous bearer tokens (GHCR and Docker Hub)."""

    timeout_s: float = REGISTRY_TIMEOUT_S
    scheme: str = "https"

    def digest(self, repository: str, tag: str) -> str | None:
        """HEAD the manifest; on 401 fetch the token the challenge names and ask again."""
        host, _, name = repository.partition("/")
        url = f"{self.scheme}://{host}/v2/{name}/manifests/{tag}"
        try:
            return self._head(url, None)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            if err.code != 401:
                raise
            token = self._token(err.headers.get("WWW-Authenticate", ""))
        try:
            return self._head(url, token)
        except urllib.error.HTTPError as err:
            if err.code in (401, 403, 404):  # private or missing: no image for us either way
                return None
            raise

    def _head(self, url: str, token: str | None) -> str | None:
        request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            digest = response.headers.get("Docker-Content-Digest")
        return str(digest) if digest and digest.startswith("sha256:") else None

    def _token(self, challenge: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = fields.pop("realm", "")
        if not challenge.lower().startswith("bearer") or not realm:
            raise DeliveryError(f"the registry asked for an unsupported login: {challenge!r}")
        url = f"{realm}?{urllib.parse.urlencode(fields)}"
        with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
            body = json.loads(response.read())
        return str(body.get("token") or body.get("access_token") or "")


@dataclass(frozen=True)
class Choice:
    """The code for the pods, and one line for the user saying which and why."""

    code: CodeImage | CodeWheel
    reason: str


def _copy_sources(root: Path, into: Path) -> Path:
    """The files a wheel is built from, copied: the build writes nothing into the checkout.

    setuptools keeps a ``build/`` directory next to ``pyproject.toml`` and reuses it, so a file
    deleted from the checkout would still ship; a fresh copy has only what is there now.
    """
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    src = into / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, src / name)
    for package in {pattern.rstrip("*") for pattern in include}:
        shutil.copytree(
            root / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return src


def build_wheel(root: Path, out_dir: Path, timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """Build the project's wheel from the checkout at ``root`` into ``out_dir``.

    No build isolation, so nothing is downloaded: this interpreter must have setuptools 77 or
    newer (``make venv`` installs it).
    """
    try:
        setuptools_version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        setuptools_version = "0"
    if int(setuptools_version.split(".")[0]) < 77:
        raise DeliveryError(
            f"building the pods' wheel needs setuptools 77 or newer here (found "
            f"{setuptools_version}); run `make venv`, or use a released version's image"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qwen-stress-wheel-") as scratch:
        src = _copy_sources(root, Path(scratch))
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--wheel-dir",
            str(out_dir),
            str(src),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise DeliveryError(f"building the wheel took over {timeout_s:.0f} s") from None
    wheels = sorted(out_dir.glob("qwen_stress-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise DeliveryError(f"could not build the project's wheel from {root}: {tail}")
    return wheels[0]


def choose(
    version: str,
    root: Path,
    out_dir: Path,
    *,
    registry: Registry,
    repository: str = versions.LOADTEST_IMAGE_REPOSITORY,
    build: Callable[[Path, Path], Path] = build_wheel,
) -> Choice:
    """The released image when this code is a release that has one, else this checkout's wheel."""
    why = f"{version} is not a clean checkout of its release tag"
    if released(version, root):
        try:
            digest = registry.digest(repository, version)
        except (OSError, DeliveryError, ValueError) as err:
            digest, why = None, f"could not ask {repository.split('/', 1)[0]} for the image ({err})"
        else:
            why = f"{repository}:{version} was not found"
        if digest is not None:
            return Choice(
                CodeImage(image=f"{repository}:{version}@{digest}"),
                f"pods run the released image {repository}:{version} ({digest[:19]})",
            )
    path = build(root, out_dir)
    return Choice(
        CodeWheel(filename=path.name, content=path.read_bytes()),
        f"pods install this checkout's wheel ({why}); their init container needs the package "
        "index on port 443",
    )
