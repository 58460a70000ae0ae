"""Reading a YAML file a user hands over, with bounds a hostile one cannot get past.

``yaml.safe_load`` constructs no objects, but it still expands aliases: a few hundred bytes of
nested ``*anchor`` references stand for billions of values, and whatever walks or prints the
result (validation, an error message) hangs on them. Here the document is measured as it would
expand before anything is built from it, and a file that is not a small regular UTF-8 text file
is refused with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_VALUES = 10_000
"""Scalars, sequences and mappings the document may expand to (a stack file has a few hundred)."""


class YamlInputError(ValueError):
    """The file cannot be read as the YAML asked for; the message names the file and why."""


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Values ``root`` stands for with every alias expanded, counted up to ``limit + 1``."""
    seen = 0
    stack: list[yaml.Node] = [root]
    while stack and seen <= limit:
        node = stack.pop()
        seen += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += (key, value)
    return seen


def read_yaml_file(path: Path, what: str) -> Any:
    """The document in ``path`` (``None`` when empty), or ``YamlInputError`` naming ``what``."""
    try:
        if not path.is_file():
            reason = "no such file" if not path.exists() else "not a regular file"
            raise YamlInputError(f"{what} {path}: {reason}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            limit = f"{MAX_FILE_BYTES:,}"
            raise YamlInputError(f"{what} {path} is {size:,} bytes; the limit is {limit}")
        raw = path.read_bytes()
    except OSError as err:
        raise YamlInputError(f"cannot read {what} {path}: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YamlInputError(
            f"{what} {path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
            f"{err.start}); save it as UTF-8"
        ) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_VALUES) > MAX_VALUES:
            raise YamlInputError(
                f"{what} {path} expands to more than {MAX_VALUES:,} values through YAML "
                "aliases (*name); write the values out"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise YamlInputError(f"{what} {path} is not valid YAML: {err}") from None
    except RecursionError:
        raise YamlInputError(f"{what} {path} nests values too deeply to be read") from None
    finally:
        loader.dispose()
