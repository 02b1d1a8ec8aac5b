"""Config base: frozen pydantic models that reject unknown keys, and YAML loading."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from trapsim.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class FrozenModel(BaseModel):
    """Immutable config model; a typo in a key is an error naming the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe(err: ValidationError, where: str) -> str:
    """One line naming the first offending key of a validation error."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {key}: {first['msg']}"


def validate(model: type[M], data: object, where: str) -> M:
    """Build ``model`` from ``data``; ConfigError naming the bad key on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe(err, where)) from None


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, not YAML, or not a mapping.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data
