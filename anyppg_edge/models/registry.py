"""Registry of named model configs (JSON files in ``configs/``), in the spirit of open_clip/timm.

Teacher and students live in one registry so budgets, distillation and export address models by
name: ``list_models()``, ``get_model_spec(name)``, ``create_model(name, checkpoint=...)``.

**Derived names.** ``<name>-k<N>`` is config ``<name>`` with Net1D kernel size ``N`` and
``<name>-do<p>`` the same with block dropout ``p`` (both may follow each other, e.g.
``small-k15-do0.1``). They resolve on first lookup in any process, so a checkpoint that records a
derived name loads anywhere; a registered config of the same name always wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyppg_edge.errors import ConfigError, UnknownNameError
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

    def preprocess_config(self, base: Any = None) -> Any:
        """The preprocessing chain this model's input contract carries: ``base`` (a
        :class:`~anyppg_edge.preprocessing.PreprocessConfig`, default the official chain) at the
        model's input rate and window. A native-rate model (``input_sample_rate_hz`` 25 or 50) takes
        the sensor's samples: band-pass and z-score at that rate, nothing resampled."""
        import dataclasses

        from anyppg_edge.preprocessing import DEFAULT_CONFIG

        base = DEFAULT_CONFIG if base is None else base
        if (base.target_sample_rate_hz, base.window_s) == (self.input_sample_rate_hz, self.input_window_s):
            return base
        if self.input_sample_rate_hz != base.target_sample_rate_hz:
            from anyppg_edge.preprocessing import native_config

            base = native_config(base, self.input_sample_rate_hz)
        return dataclasses.replace(base, window_s=self.input_window_s)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        family = d.get("family", "net1d")
        if family != "net1d":
            raise ConfigError(f"unknown model family {family!r} in config {d.get('name')!r}")
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
        raise ConfigError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _scan() -> None:
    for path in sorted(_CONFIG_DIR.glob("*.json")):
        register_model(json.loads(path.read_text()), overwrite=True)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


_DERIVED_SUFFIX = re.compile(r"^(?P<base>.+)-(?:k(?P<kernel>[1-9][0-9]*)|do(?P<dropout>0(?:\.[0-9]+)?))$")


def derived_model_name(name: str, kernel_size: int | None = None, dropout_p: float | None = None) -> str:
    """The derived name of ``name`` with another kernel size and/or block dropout (see the module
    docstring); ``name`` itself when neither is given. Validates and resolves it."""
    if kernel_size is not None:
        if int(kernel_size) < 1:
            raise ConfigError(f"kernel_size must be >= 1, got {kernel_size}")
        name = f"{name}-k{int(kernel_size)}"
    if dropout_p is not None:
        if not 0.0 <= dropout_p < 1.0:
            raise ConfigError(f"dropout_p must be in [0, 1), got {dropout_p}")
        name = f"{name}-do{dropout_p:g}"
    get_model_spec(name)
    return name


def _derive(name: str) -> ModelSpec | None:
    m = _DERIVED_SUFFIX.match(name)
    if m is None:
        return None
    try:
        base = get_model_spec(m["base"])
    except KeyError:
        return None
    d = base.to_dict()
    if m["kernel"] is not None:
        d["net1d"]["kernel_size"] = int(m["kernel"])
        d["expected_params"] = None  # the kernel changes the parameter count
    else:
        d["net1d"]["dropout_p"] = float(m["dropout"])
    d["name"] = name
    d["description"] = f"{base.name} with {'kernel ' + m['kernel'] if m['kernel'] else 'dropout ' + m['dropout']}"
    return register_model(d)


def get_model_spec(name: str) -> ModelSpec:
    spec = _REGISTRY.get(name) or _derive(name)
    if spec is None:
        raise UnknownNameError(
            f"unknown model {name!r}; registered: {', '.join(list_models())} "
            "(and derived names <model>-k<kernel> / <model>-do<dropout>)"
        )
    return spec


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
