"""A rendered pod's containers as local commands: what the rehearsal and the tests run.

Each volume becomes a directory under a root (a ConfigMap's keys written into it, an emptyDir
left empty), every path under a mount point is rewritten to that directory, ``python`` becomes
this interpreter and a ``secretKeyRef`` is resolved from the secrets given. Nothing is started
here: the caller runs the commands, so it decides timeouts and cleanup.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Body = dict[str, Any]


@dataclass(frozen=True)
class LocalContainer:
    """One container as a local process: command line, environment and working directory."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def _write_config_map(volume: Body, config_map: Body, into: Path) -> None:
    files: dict[str, bytes] = {k: v.encode() for k, v in (config_map.get("data") or {}).items()}
    for key, value in (config_map.get("binaryData") or {}).items():
        files[key] = base64.b64decode(value)
    items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in files]
    for item in items:
        (into / item["path"]).write_bytes(files[item["key"]])


def _volumes(pod: Body, config_maps: Mapping[str, Body], root: Path) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        path = root / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            _write_config_map(volume, config_maps[volume["configMap"]["name"]], path)
        elif "emptyDir" not in volume:
            raise ValueError(f"volume {volume['name']}: only ConfigMaps and emptyDirs run locally")
        dirs[volume["name"]] = path
    return dirs


def _rewrite(value: str, mounts: list[tuple[str, Path]], replace: Mapping[str, str]) -> str:
    for mount, path in mounts:
        if value == mount or value.startswith(mount + "/"):
            value = str(path) + value[len(mount) :]
            break
    for old, new in replace.items():
        value = value.replace(old, new)
    return value


def _container(
    container: Body,
    volumes: dict[str, Path],
    secrets: Mapping[str, Mapping[str, str]],
    replace: Mapping[str, str],
    python: str,
) -> LocalContainer:
    mounts = sorted(
        ((m["mountPath"], volumes[m["name"]]) for m in container.get("volumeMounts", [])),
        key=lambda pair: -len(pair[0]),
    )
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = _rewrite(item["value"], mounts, replace)
    argv = [
        _rewrite(a, mounts, replace) for a in [*container["command"], *container.get("args", [])]
    ]
    if argv and argv[0] == "python":
        argv[0] = python
    cwd = Path(_rewrite(container.get("workingDir", "/"), mounts, replace))
    return LocalContainer(container["name"], argv, env, cwd if cwd.is_dir() else Path.cwd())


def materialise(
    pod: Body,
    config_maps: Mapping[str, Body],
    secrets: Mapping[str, Mapping[str, str]],
    root: Path,
    *,
    replace: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> tuple[list[LocalContainer], list[LocalContainer]]:
    """The pod spec's init containers and containers, in order, with volumes under ``root``.

    ``config_maps`` by name (the rendered bodies), ``secrets`` as ``{name: {key: value}}``,
    ``replace`` for further substitutions (a Service's DNS name by ``127.0.0.1``).
    """
    volumes = _volumes(pod, config_maps, root)
    extra = replace or {}
    init = [_container(c, volumes, secrets, extra, python) for c in pod.get("initContainers", [])]
    main = [_container(c, volumes, secrets, extra, python) for c in pod["containers"]]
    return init, main
