"""Shared helpers for the typed config dataclasses, and recipes: named configs stored as JSON files.

A recipe (``anyppg_edge/recipes/<name>.json``, installed with the package, or any ``.json`` path)
holds ``{"command": ..., "description": ..., "config": {...}}``; ``config`` is the nested dict of the
command's config dataclasses (e.g. ``{"model": ..., "train": {...}, "augment": {...}}``). The CLI
loads a recipe as its base and applies the flags given on the command line on top
(``anyppg-edge physiology --recipe physiology-headline --run-folds 5``)."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from anyppg_edge.errors import ConfigError, UnknownNameError

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, rejecting unknown keys with a message that lists the known ones."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return cls(**d)


RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def nested_from_dict(cls: type[T], d: dict[str, Any], base: T | None = None) -> T:
    """``cls`` from a (possibly nested) dict: a field whose type is a dataclass takes a dict; unknown
    keys are a :class:`~anyppg_edge.errors.ConfigError`. With ``base``, the dict overrides ``base``."""
    if not isinstance(d, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, v in d.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            values[name] = nested_from_dict(tp, v, getattr(base, name) if base is not None else None)
        elif isinstance(v, list):
            values[name] = tuple(v)
        else:
            values[name] = v
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from e


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def load_recipe(name_or_path: str | Path, command: str) -> dict[str, Any]:
    """The recipe ``name_or_path`` (a packaged name or a JSON file) for ``command``: its ``config`` dict."""
    path = Path(name_or_path)
    if not (path.suffix == ".json" and path.is_file()):
        path = RECIPES_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise UnknownNameError(f"no recipe {str(name_or_path)!r}: give a .json file or one of {list_recipes()}")
    try:
        recipe = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"recipe {path} is not valid JSON: {e}") from e
    if not isinstance(recipe, dict) or not isinstance(recipe.get("config"), dict):
        raise ConfigError(f"recipe {path} must be an object with a 'config' object")
    if recipe.get("command") not in (None, command):
        raise ConfigError(f"recipe {path} is for `{recipe['command']}`, not `{command}`")
    return recipe["config"]


def load_preprocess_config(path: str | Path | None):
    """The :class:`~anyppg_edge.preprocessing.PreprocessConfig` in a JSON file (``None``: the default
    chain) — the one reader behind every ``--config`` flag. A missing file, bad JSON or an invalid value
    is an :class:`~anyppg_edge.errors.AnyPPGError` naming the file."""
    from anyppg_edge.errors import MissingFileError
    from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

    if path is None:
        return DEFAULT_CONFIG
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"preprocessing config not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"preprocessing config {path} is not valid JSON: {e}") from e
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "config_hash" in data:
        data = data["config"]  # a shard folder's preprocess_config.json: {"config_hash", "config"}
    try:
        return PreprocessConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def model_preprocess_config(spec: Any, config: Any = None):
    """The preprocessing config of a model's input contract: ``config`` (a
    :class:`~anyppg_edge.preprocessing.PreprocessConfig`, or the path of a ``--config`` JSON read by
    :func:`load_preprocess_config`; ``None``: the default chain) at the model's input rate and window,
    ``spec.preprocess_config(base)`` (``spec``: the model's
    :class:`~anyppg_edge.models.registry.ModelSpec`, ``get_model_spec(name)``; ``None`` gives the base
    config unchanged).

    The one rule behind every command that picks a config for a named model: a 125 Hz model gets the
    base config itself, a native-rate model (``input_sample_rate_hz`` 25 or 50) the chain at its
    sensor's rate (band-pass and z-score there, nothing resampled). (It takes the spec, not the name:
    this base module sits below the model registry.)"""
    from anyppg_edge.preprocessing import PreprocessConfig

    base = config if isinstance(config, PreprocessConfig) else load_preprocess_config(config)
    return base if spec is None else spec.preprocess_config(base)
