"""Shared helper for the typed config dataclasses."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from anyppg_edge.errors import ConfigError

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, rejecting unknown keys with a message that lists the known ones."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return cls(**d)
