"""Loading weights in the official AnyPPG ``state_dict`` layout, strictly and safely."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from anyppg_edge.errors import CheckpointError


def read_state_dict(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """``torch.load(..., weights_only=True)`` with clear errors for missing, truncated or odd files.

    Accepts a bare ``state_dict`` or a dict holding one under ``state_dict``/``model``; ``prefix``
    (e.g. ``"ppg_encoder."``) selects and strips a sub-module's keys.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors of truncated or corrupt files vary by torch version
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): truncated or corrupt? "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors (got {type(obj).__name__})")
    state = dict(obj)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"no keys with prefix {prefix!r} in {path}")
    return state


def load_state_dict(
    model: nn.Module, source: str | Path | Mapping[str, torch.Tensor], strict: bool = True, prefix: str = ""
) -> None:
    """Load weights; with ``strict`` (default) any missing/unexpected key or shape mismatch is an error."""
    state = dict(source) if isinstance(source, Mapping) else read_state_dict(source, prefix=prefix)
    where = "state_dict" if isinstance(source, Mapping) else str(source)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{where} does not match {type(model).__name__} "
            f"'{getattr(model, 'name', '')}': {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    if mismatched:
        raise CheckpointError(f"{where}: {len(mismatched)} shape mismatches, e.g. {mismatched[:3]}")
    model.load_state_dict(state, strict=strict)
