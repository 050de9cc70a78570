"""Loading a YAML config file into a pydantic model, with errors that name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file and the line."""


def _node_at(node: yaml.Node, location: tuple[int | str, ...]) -> yaml.Node:
    # Walk as far down the error's location as the document goes: the deepest node
    # found is the line to show.
    for part in location:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                return node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def load_yaml_model(path: Path, model: type[M]) -> M:
    """``model`` validated from the YAML file at ``path``, or :class:`ConfigFileError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot read ({error.strerror})") from error
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else "?"
        raise ConfigFileError(f"{path}, line {line}: {error.problem}") from error
    if root is None:
        raise ConfigFileError(f"{path}, line 1: the file is empty")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        node = _node_at(root, tuple(first["loc"]))
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise ConfigFileError(
            f"{path}, line {node.start_mark.line + 1}: {where}: {first['msg']}"
        ) from error
