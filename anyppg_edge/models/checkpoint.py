"""Reading checkpoints, strictly and safely: the one place that opens a checkpoint file.

* :func:`torch_load` — ``torch.load(weights_only=True)`` with clear errors (never unpickles code);
* :func:`read_state_dict` / :func:`load_state_dict` — weights in the official AnyPPG layout;

:func:`anyppg_edge.models.loading.load_encoder` builds on these to read any checkpoint this project
writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyppg_edge.errors import CheckpointError, MissingFileError

# The trainer's checkpoint format (written by anyppg_edge.train.trainer, read here and there).
TRAINER_CHECKPOINT_FORMAT = "anyppg-edge-train/1"


def torch_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing, truncated, corrupt or
    code-carrying file is a :class:`CheckpointError` (:class:`MissingFileError` when absent)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors of truncated or corrupt files vary by torch version
        raise CheckpointError(
            f"cannot read {what} {path} ({path.stat().st_size} bytes): truncated or corrupt (or not a "
            f"weights-only torch file)? {type(exc).__name__}: {exc}"
        ) from exc


def read_state_dict(path: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """``torch.load(..., weights_only=True)`` with clear errors for missing, truncated or odd files.

    Accepts a bare ``state_dict`` or a dict holding one under ``state_dict``/``model``; ``prefix``
    (e.g. ``"ppg_encoder."``) selects and strips a sub-module's keys.
    """
    path = Path(path)
    state = state_of(torch_load(path), path)
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


def check_finite(module: nn.Module, where: str) -> None:
    """Refuse weights or buffers holding NaN/Inf (training on them silently produces NaN)."""
    bad = [k for k, v in module.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{where}: {len(bad)} tensors hold NaN/Inf, e.g. {bad[:3]}; the file is damaged or "
                              "comes from a diverged run: use an earlier checkpoint")


def state_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a bare ``state_dict`` or of one held under ``state_dict``/``model``."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors (got {type(obj).__name__})")
    return dict(obj)
