"""Registry of named model configs (JSON files in ``configs/``), in the spirit of open_clip/timm.

Teacher and students live in one registry so budgets, distillation and export address models by
name: ``list_models()``, ``get_model_spec(name)``, ``create_model(name, checkpoint=...)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyppg_edge.models.net1d import Net1D, Net1DConfig, count_params

_CONFIG_DIR = Path(__file__).parent / "configs"
_REGISTRY: dict[str, ModelSpec] = {}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    description: str
    net1d: Net1DConfig
    expected_params: int | None = None
    input_sample_rate_hz: int = 125
    input_window_s: float = 10.0

    @property
    def input_samples(self) -> int:
        return round(self.input_sample_rate_hz * self.input_window_s)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        family = d.get("family", "net1d")
        if family != "net1d":
            raise ValueError(f"unknown model family {family!r} in config {d.get('name')!r}")
        d["net1d"] = Net1DConfig.from_dict(d["net1d"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "net1d": self.net1d.to_dict(),
            "expected_params": self.expected_params,
            "input_sample_rate_hz": self.input_sample_rate_hz,
            "input_window_s": self.input_window_s,
        }


def register_model(spec: ModelSpec | dict[str, Any], overwrite: bool = False) -> ModelSpec:
    """Add a config to the registry (a :class:`ModelSpec` or its dict form)."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _scan() -> None:
    for path in sorted(_CONFIG_DIR.glob("*.json")):
        register_model(json.loads(path.read_text()), overwrite=True)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None


def create_model(name: str, checkpoint: str | Path | None = None, strict: bool = True) -> Net1D:
    """Build a registered model; optionally load an official-layout ``state_dict`` (strictly)."""
    spec = get_model_spec(name)
    model = Net1D(spec.net1d, name=spec.name)
    if spec.expected_params is not None and count_params(model) != spec.expected_params:
        raise AssertionError(
            f"{name}: built {count_params(model)} params, config says {spec.expected_params}"
        )
    if checkpoint is not None:
        from anyppg_edge.models.checkpoint import load_state_dict

        load_state_dict(model, checkpoint, strict=strict)
    return model


_scan()
